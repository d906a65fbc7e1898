"""The versions screen driven with Pilot: `p` from the list, the table, the plots, enter to filter, `c` to compare."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.widgets import DataTable, Static

from store.db import Store, VersionRef
from store.versions import VersionKey
from tests.test_tui import settle
from tests.test_versions import store_with, trace
from tui.app import make_app
from tui.screens.trace_list import TraceListScreen
from tui.screens.versions import BARS, Trend, VersionCompareScreen, VersionsScreen, spark_text

EVIL = "[bold]x[/bold] [@click=app.quit]q \x1b[31mred"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    traces = [trace(i, "v1", day=3 + i % 3, hour=i % 24, cost=0.01, seconds=1 + i % 4) for i in range(12)]
    traces += [trace(100 + i, "v2", day=6 + i % 3, hour=i, cost=0.02, seconds=2, tools=1, tool_error=i < 3)
               for i in range(8)]
    traces += [trace(200, EVIL, prompt=EVIL, cost=None)]
    s = store_with(tmp_path / "t.db", traces)
    yield s
    s.close()




async def open_versions(app: Any, pilot: Any) -> VersionsScreen:
    """Press p and wait: the versions screen, loaded."""
    await pilot.press("p")
    await settle(pilot)
    screen = app.screen
    assert isinstance(screen, VersionsScreen)
    return screen


def cells(table: DataTable[Any], row: int) -> list[str]:
    return [c.plain if isinstance(c, Text) else str(c) for c in table.get_row_at(row)]


async def test_p_shows_every_version_and_enter_filters_the_list(store: Store, tmp_path: Path) -> None:
    app = make_app(store, evals_dir=tmp_path / "evals", poll_interval=None)
    async with app.run_test(size=(150, 40)) as pilot:
        await settle(pilot)
        screen = await open_versions(app, pilot)
        table = screen.query_one("#versions-table", DataTable)
        assert table.row_count == 3
        rows = {cells(table, i)[2]: cells(table, i) for i in range(3)}
        assert rows["v1"][1:9] == ["support_agent", "v1", "12", "0.0%", "0.0%", "0.0%", "-", "$0.0100"]
        assert rows["v2"][6] == "37.5%"  # 3 of 8 traces with a failed tool
        # A version from a trace: its name shown as it is, never run as markup or escapes.
        evil = next(r for r in rows.values() if r[1].startswith("[bold]"))
        assert evil[1] == "[bold]x[/bold] [@click=app.…" and evil[2] == "[bold]x[/bold] [@cl…"
        assert "\x1b" not in "".join(evil)
        assert evil[8] == "?"  # its cost is unknown, not $0
        # The highlighted version's plots over time.
        table.move_cursor(row=[cells(table, i)[2] for i in range(3)].index("v2"))
        await settle(pilot)
        assert screen.series_key is not None and screen.series_key.version == "v2"
        assert [b.start for b in screen.buckets] == ["2026-01-06", "2026-01-07", "2026-01-08"]
        assert screen.query_one("#version-plot-0", Trend).values == pytest.approx([0.02] * 3)
        finding_range = screen.query_one("#version-plot-range-2", Static).render()
        assert "33.3% … 50.0%  last 50.0%" in str(finding_range)
        title = str(screen.query_one("#version-detail-title", Static).render())
        assert "support_agent@v2" in title and "per day (UTC), 2026-01-06 … 2026-01-08, 3 days" in title
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TraceListScreen)
        assert app.screen.table.filter.prompt_versions == ["support_agent@v2"]
        assert app.screen.matching == 8


async def test_c_marks_two_versions_and_shows_them_compared(store: Store, tmp_path: Path) -> None:
    app = make_app(store, evals_dir=tmp_path / "evals", poll_interval=None)
    async with app.run_test(size=(150, 40)) as pilot:
        await settle(pilot)
        screen = await open_versions(app, pilot)
        versions = [r.key.version for r in screen.rows]
        table = screen.query_one("#versions-table", DataTable)
        table.move_cursor(row=versions.index("v1"))
        await pilot.press("c")
        assert cells(table, versions.index("v1"))[0] == "A"
        # The mark is seen: its column has a width of its own (an empty-labelled one stayed 0 wide).
        assert table.columns[table.coordinate_to_cell_key((0, 0)).column_key].get_render_width(table) >= 3
        assert "marked A: support_agent@v1" in str(screen.query_one("#versions-summary", Static).render())
        await pilot.press("c")  # again on the same row: still marked, never silently undone
        assert cells(table, versions.index("v1"))[0] == "A" and len(screen.marked) == 1
        await pilot.press("C")  # C clears
        assert cells(table, versions.index("v1"))[0] == "" and screen.marked == []
        await pilot.press("c")
        table.move_cursor(row=versions.index("v2"))
        await pilot.press("c")
        await pilot.pause()
        compare = app.screen
        assert isinstance(compare, VersionCompareScreen)
        assert (compare.comparison.a.key.version, compare.comparison.b.key.version) == ("v1", "v2")
        tool = next(m for m in compare.comparison.metrics if m.metric == "tool_errors")
        assert (tool.a, tool.b, tool.better) == (0.0, 0.375, "a")
        assert tool.note == "too small to tell: fewer than 30 (12 vs 8)"
        title = str(compare.query_one("#compare-title", Static).render())
        assert "Comparing support_agent@v1 (A) with support_agent@v2 (B)" in title
        await pilot.press("escape")
        assert app.screen is screen and screen.marked == []
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, TraceListScreen)
        assert app.screen.table.filter.prompt_versions == []  # escape changes nothing


async def test_the_versions_screen_is_in_the_palette_and_j_k_move(store: Store, tmp_path: Path) -> None:
    app = make_app(store, evals_dir=tmp_path / "evals", poll_interval=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        list_screen = app.screen
        assert isinstance(list_screen, TraceListScreen)
        assert "list: prompt versions" in [c.title for c in list_screen.palette_commands()]
        list_screen.action_versions()
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, VersionsScreen)
        assert {c.title for c in screen.palette_commands()} >= {"versions: show in the trace list",
                                                                 "versions: mark for compare"}
        table = screen.query_one("#versions-table", DataTable)
        start = table.cursor_row
        await pilot.press("j")
        assert table.cursor_row == start + 1
        await pilot.press("k")
        assert table.cursor_row == start


async def test_an_empty_store_says_so(tmp_path: Path) -> None:
    s = Store(tmp_path / "empty.db")
    app = make_app(s, evals_dir=tmp_path / "evals", poll_interval=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = await open_versions(app, pilot)
        assert "No traces yet" in str(screen.query_one("#versions-summary", Static).render())
        assert not screen.check_action("mark", ())
        await pilot.press("enter", "c")  # nothing to pick: nothing happens
        assert app.screen is screen
    s.close()


async def test_a_version_holding_at_signs_is_filtered_exactly(tmp_path: Path) -> None:
    """enter on a version whose name and version hold "@" and markup: the list shows its traces, not 0."""
    evil_name, evil_version = "[bold]evil[/bold]", "[@click=app.quit]x"
    traces = [trace(i, evil_version, prompt=evil_name) for i in range(3)]
    traces += [trace(10 + i, "c@d", prompt="a@b") for i in range(2)] + [trace(20, "v1")]
    s = store_with(tmp_path / "at.db", traces)
    app = make_app(s, evals_dir=tmp_path / "evals", poll_interval=None)
    async with app.run_test(size=(150, 40)) as pilot:
        await settle(pilot)
        for (name, version), count in (((evil_name, evil_version), 3), (("a@b", "c@d"), 2)):
            screen = await open_versions(app, pilot)
            table = screen.query_one("#versions-table", DataTable)
            table.move_cursor(row=[(r.key.prompt, r.key.version) for r in screen.rows].index((name, version)))
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, TraceListScreen)
            [chosen] = app.screen.table.filter.prompt_versions
            assert isinstance(chosen, VersionRef) and (chosen.name, chosen.version) == (name, version)
            assert app.screen.matching == count
            # And p again puts the cursor back on it.
            assert (await open_versions(app, pilot)).highlighted() is not None
            highlighted = app.screen.highlighted()
            assert highlighted is not None and highlighted.key == VersionKey(name, version)
            await pilot.press("escape")
            await settle(pilot)
    s.close()


def test_sparklines_draw_a_constant_series_consistently() -> None:
    def bars(values: list[float | None], scale: tuple[float, float] | None = None, width: int = 6) -> str:
        return spark_text(values, width, 1, scale)[0].plain

    # On its own scale a constant series is mid-height, whatever its length (one value drew full, two the lowest).
    assert bars([0.02]) == bars([0.02, 0.02]).strip()[:1] == BARS[3]
    assert set(bars([0.02, 0.02, 0.02]).strip()) == {BARS[3]}
    # Rates on 0..100%: 0% is always the lowest bar, 100% always the full one, constant or not.
    assert set(bars([0.0, 0.0], (0.0, 1.0)).strip()) == {BARS[0]}
    assert bars([0.0], (0.0, 1.0)).strip() == BARS[0]
    assert set(bars([1.0, 1.0], (0.0, 1.0)).strip()) == {BARS[-1]}
    assert bars([0.0, 0.5, 1.0], (0.0, 1.0)).strip() == BARS[0] + BARS[4] + BARS[-1]
    # A bucket with nothing known is a gap, so time runs evenly.
    assert bars([1.0, None, 2.0]) == BARS[0] + " " + BARS[-1]
    # Two lines high: the full bar fills both, the lowest only the bottom.
    top, bottom = spark_text([0.0, 1.0], 2, 2, (0.0, 1.0))
    assert (top.plain, bottom.plain) == (" " + BARS[-1], BARS[0] + BARS[-1])


async def test_the_compare_view_keeps_one_line_a_metric_at_80_columns(store: Store, tmp_path: Path) -> None:
    app = make_app(store, evals_dir=tmp_path / "evals", poll_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = await open_versions(app, pilot)
        versions = [r.key.version for r in screen.rows]
        table = screen.query_one("#versions-table", DataTable)
        table.move_cursor(row=versions.index("v1"))
        await pilot.press("c")
        table.move_cursor(row=versions.index("v2"))
        await pilot.press("c")
        await pilot.pause()
        compare = app.screen
        assert isinstance(compare, VersionCompareScreen)
        shown = compare.query_one("#compare-table", Static)
        height = shown.size.height
        assert height == len(compare.comparison.metrics) + 1  # a header and one line per metric
        legend = str(compare.query_one("#compare-note", Static).render())
        assert "n<30 = fewer than 30" in legend and "CIs overlap" in legend
