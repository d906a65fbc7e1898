"""The prompt versions screen (`p`): the version table, each version's plots over time, and a compare view of two."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Header, Static

from store.db import Store
from store.gate import duration, pct
from store.versions import Bucket, Rate, VersionKey, VersionStats, compare, time_series, version_table
from tui.format import fmt_cost, fmt_time, one_line, scrub
from tui.screens.palette import PaletteCommand, PaletteScreen
from tui.widgets.footer import WideFooter
from tui.workers import ReportsWorkerFailures

# Sparklines, not plotext (textual-plotext): three small trends per version need no axes, and textual-plotext
# (last release 1.0.1, 2024-11) would add two dependencies that are not kept in step with Textual 8. They are drawn
# by Trend below rather than Textual's Sparkline, which scales every series to its own min..max: a constant series
# came out as the lowest bars (or, with one value, full ones), so 100% and 0% could look alike. The numbers a plot
# leaves out (range, last value) are printed beside it.
MARK_COLUMN = "A/B"  # the compare marks: a fixed width, so a mark shows the moment it is set
COLUMNS = (MARK_COLUMN, "Prompt", "Version", "Traces", "Findings", "Err find.", "Tool err", "Evals", "Cost/trace",
           "Cost p95", "Lat p50", "Lat p95", "First seen", "Last seen")
MARKS = ("A", "B")
BARS = "▁▂▃▄▅▆▇█"


def spark_text(values: list[float | None], width: int, height: int = 1,
               scale: tuple[float, float] | None = None) -> list[Text]:
    """Bars for `values` in `width` cells and `height` lines (top line first); None is a gap. More values than
    cells: each cell shows the largest of its share. The scale is `scale` (a rate's 0..1) or the values' own
    min..max; a constant series on its own scale draws every bar at half height, so no value looks like a
    minimum or a maximum it is not."""
    width, height = max(width, 0), max(height, 1)
    if width == 0:
        return [Text() for _ in range(height)]
    if len(values) > width:
        cells: list[float | None] = []
        for i in range(width):
            part = [v for v in values[i * len(values) // width:(i + 1) * len(values) // width] if v is not None]
            cells.append(max(part) if part else None)
    else:
        cells = list(values)
    known = [v for v in cells if v is not None]
    lo, hi = scale if scale is not None else ((min(known), max(known)) if known else (0.0, 1.0))
    levels = len(BARS) * height

    def level(v: float) -> int:
        if hi <= lo:
            return levels // 2  # constant on its own scale: the middle
        # 1..levels: the lowest value still shows a sliver of a bar, a gap shows none.
        return 1 + round(min(max((v - lo) / (hi - lo), 0.0), 1.0) * (levels - 1))

    lines = []
    for row in reversed(range(height)):
        line = Text(no_wrap=True)
        for v in cells:
            if v is None:
                line.append(" ")
                continue
            n = level(v) - row * len(BARS)
            line.append(" " if n <= 0 else BARS[min(n, len(BARS)) - 1], style="cyan")
        lines.append(line)
    return lines


class Trend(Widget):
    """One series as a sparkline on a stated scale (see spark_text)."""

    DEFAULT_CSS = "Trend { height: 1; }"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002 (Textual's name)
        super().__init__(id=id, classes=classes)
        self.values: list[float | None] = []
        self.scale: tuple[float, float] | None = None

    def show(self, values: list[float | None], scale: tuple[float, float] | None) -> None:
        self.values, self.scale = values, scale
        self.refresh()

    def render(self) -> Text:
        return Text("\n").join(spark_text(self.values, self.size.width, self.size.height, self.scale))


def rate_text(rate: Rate | None) -> Text:
    """A rate as a cell: "?" when nothing was counted, "-" when there is nothing to count (no eval run)."""
    if rate is None:
        return Text("-", style="dim", justify="right")
    if rate.rate is None:
        return Text("?", style="dim", justify="right")
    return Text(pct(rate.rate), justify="right")


def version_row(v: VersionStats, mark: str = "") -> list[Text]:
    """The cells of one version's row; every string from a trace goes in as Text, never as markup."""
    def num(s: str, known: bool = True) -> Text:
        return Text(s, style="" if known else "dim", justify="right")

    cost = fmt_cost(v.cost.mean.value)
    if v.cost.partial and v.cost.mean.value is not None:
        cost += "*"  # some traces' cost unknown: the mean is over the others
    return [
        Text(mark, style="bold reverse magenta" if mark else "", justify="center"),
        Text(one_line(v.key.prompt if v.key.prompt is not None else "(no prompt)", 28),
             style="" if v.key.prompt is not None else "dim"),
        Text(one_line(v.key.version if v.key.version is not None else "(no version)", 20),
             style="bold cyan" if v.key.version is not None else "dim"),
        num(f"{v.traces:,}"),
        rate_text(v.findings),
        rate_text(v.error_findings),
        rate_text(v.tool_errors),
        rate_text(v.evals),
        num(cost, v.cost.mean.value is not None),
        num(fmt_cost(v.cost.p95.value), v.cost.p95.value is not None),
        num(duration(v.latency.p50.value), v.latency.p50.value is not None),
        num(duration(v.latency.p95.value), v.latency.p95.value is not None),
        Text(fmt_time(v.first_seen)[:10]),
        Text(fmt_time(v.last_seen)[:10]),
    ]


@dataclass(frozen=True)
class Series:
    """One metric of a version over time, as a plot wants it."""

    label: str
    points: list[float | None]  # one per bucket in time order; None: no traces, or nothing known
    fmt: Callable[[float], str]
    scale: tuple[float, float] | None = None  # fixed ends (rates: 0..1); None: the values' own min..max

    @property
    def values(self) -> list[float]:
        """The buckets that have a value."""
        return [v for v in self.points if v is not None]

    @property
    def missing(self) -> int:
        return len(self.points) - len(self.values)

    def summary(self) -> Text:
        if not self.values:
            return Text("no data", style="dim")
        text = Text(f"{self.fmt(min(self.values))} … {self.fmt(max(self.values))}")
        text.append(f"  last {self.fmt(self.values[-1])}", style="bold")
        if self.missing:
            text.append(f"  ({self.missing} empty)", style="dim")
        return text


def series_of(buckets: list[Bucket]) -> list[Series]:
    """Cost per trace, p95 latency and finding rate per bucket, gaps kept so that time runs evenly. The finding
    rate is drawn on 0%..100%, so 0% is always the lowest bar and 100% the full one."""
    return [
        Series("cost per trace", [b.cost_per_trace for b in buckets], lambda x: fmt_cost(x)),
        Series("p95 latency", [b.p95_latency_ms for b in buckets], lambda x: duration(x)),
        Series("finding rate", [b.finding_rate for b in buckets], lambda x: pct(x), (0.0, 1.0)),
    ]


class VersionsScreen(ReportsWorkerFailures, PaletteScreen, Screen[list[str] | None]):
    """Every prompt version side by side. Dismisses with the version filter to apply (enter), or None (escape)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "mark", "Mark A/B", id="versions.mark"),
        Binding("C", "clear_marks", "Clear marks", id="versions.clear_marks"),
        Binding("r", "reload", "Reload", id="versions.reload"),
        Binding("escape", "back", "Back", id="versions.back"),
        # j and k move as in the trace list.
        Binding("j", "down", "Down", show=False, id="versions.down"),
        Binding("k", "up", "Up", show=False, id="versions.up"),
    ]

    PALETTE: ClassVar[tuple[PaletteCommand, ...]] = (
        PaletteCommand("versions: show in the trace list", "Filter the trace list to the highlighted version",
                       "select"),
        PaletteCommand("versions: mark for compare", "Mark the highlighted version A, then another B: the comparison "
                       "opens", "mark"),
        PaletteCommand("versions: clear the compare marks", "Unmark A", "clear_marks"),
        PaletteCommand("versions: reload", "Read the store again", "reload"),
        PaletteCommand("versions: back", "Back to the trace list", "back"),
    )

    @dataclass
    class _Loaded(Message):
        rows: list[VersionStats]

    @dataclass
    class _Series(Message):
        key: VersionKey
        buckets: list[Bucket]

    def __init__(self, store: Store, current: list[str] | None = None) -> None:
        super().__init__()
        self.store = store
        self.current = list(current or [])  # the list's version filter: its row gets the cursor
        self.rows: list[VersionStats] = []
        self.marked: list[VersionKey] = []
        self.series_key: VersionKey | None = None
        self.buckets: list[Bucket] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text("reading prompt versions…", style="dim"), id="versions-summary")
        table: DataTable[Text] = DataTable(id="versions-table", cursor_type="row", zebra_stripes=True)
        yield table
        with Vertical(id="version-detail"):
            yield Static(id="version-detail-title")
            for i in range(3):
                with Horizontal(classes="version-plot"):
                    yield Static(classes="version-plot-label", id=f"version-plot-label-{i}")
                    yield Trend(id=f"version-plot-{i}", classes="version-plot-line")
                    yield Static(classes="version-plot-range", id=f"version-plot-range-{i}")
        yield WideFooter()

    def on_mount(self) -> None:
        table = self.query_one("#versions-table", DataTable)
        table.add_column(MARK_COLUMN, key="mark", width=len(MARK_COLUMN))
        for label in COLUMNS[1:]:
            table.add_column(label, key=label)
        self._load()

    # ------------------------------------------------------------------ loading (thread workers)

    @work(thread=True, exclusive=True, group="versions-table", exit_on_error=False,
          description="reading the prompt versions")
    def _load(self) -> None:
        self.post_message(self._Loaded(version_table(self.store)))

    @work(thread=True, exclusive=True, group="versions-series", exit_on_error=False,
          description="reading a prompt version over time")
    def _load_series(self, key: VersionKey) -> None:
        self.post_message(self._Series(key, time_series(self.store, key)))

    def on_versions_screen__loaded(self, message: _Loaded) -> None:
        self.rows = message.rows
        self.marked = [k for k in self.marked if any(r.key == k for r in self.rows)]
        table = self.query_one("#versions-table", DataTable)
        table.clear()
        cursor = 0
        for i, v in enumerate(self.rows):
            # Row keys by position: two versions may spell the same label ("a@b" + "c" and "a" + "b@c").
            table.add_row(*(scrub(c) for c in version_row(v, self._mark(v.key))), key=str(i))
            if self.current == [v.key.ref]:
                cursor = i
        self._update_summary()
        if self.rows:
            table.move_cursor(row=cursor)
            table.focus()
            self._show(cursor)
        self.refresh_bindings()

    def _update_summary(self) -> None:
        """The line above the table: how many versions, the keys, and what is marked for the comparison."""
        summary = self.query_one("#versions-summary", Static)
        if not self.rows:
            summary.update(Text("No traces yet: nothing to compare.", style="dim"))
            return
        text = Text.assemble((f"{len(self.rows):,}", "bold"), f" prompt version{'s' if len(self.rows) != 1 else ''}")
        if self.marked:
            text.append("   marked A: ", style="bold magenta")
            text.append(one_line(self.marked[0].label, 40), style="bold")
            text.append(" · c on another version compares it as B · C clears", style="dim")
        else:
            text.append("   enter shows its traces · c marks A, then c on another compares it as B · escape back",
                        style="dim")
        if any(v.cost.partial for v in self.rows):
            text.append("   * some costs unknown, left out of the mean", style="dim")
        summary.update(scrub(text))

    def on_versions_screen__series(self, message: _Series) -> None:
        if message.key != self.series_key:
            return  # the cursor moved on while it loaded
        self.buckets = message.buckets
        self._draw_series()

    # ------------------------------------------------------------------ detail: the plots over time

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show(event.cursor_row)

    def _show(self, row: int) -> None:
        if not 0 <= row < len(self.rows):
            return
        key = self.rows[row].key
        if key == self.series_key:
            return
        self.series_key = key
        self.buckets = []
        self._draw_series(loading=True)
        self._load_series(key)

    def _draw_series(self, *, loading: bool = False) -> None:
        key = self.series_key
        title = Text()
        if key is not None:
            title.append(one_line(key.label, 60), style="bold")
        if loading:
            title.append("  reading…", style="dim")
        elif self.buckets:
            unit = self.buckets[0].unit
            title.append(f"  per {unit} (UTC), {self.buckets[0].start} … {self.buckets[-1].start}, "
                         f"{len(self.buckets)} {unit}{'s' if len(self.buckets) != 1 else ''}", style="dim")
        else:
            title.append("  no traces with a start time", style="dim")
        self.query_one("#version-detail-title", Static).update(scrub(title))
        for i, s in enumerate(series_of(self.buckets)):
            self.query_one(f"#version-plot-label-{i}", Static).update(Text(s.label, style="bold"))
            self.query_one(f"#version-plot-{i}", Trend).show(s.points, s.scale)
            self.query_one(f"#version-plot-range-{i}", Static).update(
                Text("") if loading else s.summary())

    # ------------------------------------------------------------------ actions

    def _mark(self, key: VersionKey) -> str:
        return MARKS[self.marked.index(key)] if key in self.marked else ""

    def highlighted(self) -> VersionStats | None:
        row = self.query_one("#versions-table", DataTable).cursor_row
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("select", "mark"):
            return self.highlighted() is not None
        if action == "clear_marks":
            return bool(self.marked)
        return True

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_select()

    def action_select(self) -> None:
        v = self.highlighted()
        if v is not None:
            # The exact (name, version): its label would be split again at the last "@", and a version that
            # holds one ("[@click=app.quit]x") would then match nothing.
            self.dismiss([v.key.ref])

    def action_mark(self) -> None:
        """Mark the highlighted version A; on another version, B, and the comparison opens. `c` never unmarks
        (a cursor that did not move would silently undo the mark): C clears."""
        v = self.highlighted()
        if v is None:
            return
        if v.key in self.marked:
            self.notify(f"Already marked A: {one_line(v.key.label, 60)}. Move to another version and press c, or "
                        "C to clear.", severity="warning", markup=False)
            return
        self.marked.append(v.key)
        if len(self.marked) == 2:
            a, b = (next(r for r in self.rows if r.key == k) for k in self.marked)
            self.marked = []
            self.app.push_screen(VersionCompareScreen(a, b))
        self._refresh_marks()

    def action_clear_marks(self) -> None:
        self.marked = []
        self._refresh_marks()

    def _refresh_marks(self) -> None:
        table = self.query_one("#versions-table", DataTable)
        for i, v in enumerate(self.rows):
            mark = self._mark(v.key)
            table.update_cell(str(i), "mark", Text(mark, style="bold reverse magenta" if mark else "",
                                                   justify="center"))
        self._update_summary()
        self.refresh_bindings()

    def action_down(self) -> None:
        self.query_one("#versions-table", DataTable).action_cursor_down()

    def action_up(self) -> None:
        self.query_one("#versions-table", DataTable).action_cursor_up()

    def action_reload(self) -> None:
        self.series_key = None
        self._load()

    def action_back(self) -> None:
        self.dismiss(None)


class VersionCompareScreen(Screen[None]):
    """Two versions side by side: B against A, with deltas, the better side and where the samples cannot tell."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="compare.back"),
    ]

    def __init__(self, a: VersionStats, b: VersionStats) -> None:
        super().__init__()
        self.comparison = compare(a, b)

    def compose(self) -> ComposeResult:
        from tui.versions_cmd import COMPARE_NOTE, comparison_head, comparison_table

        yield Header()
        yield Static(comparison_head(self.comparison), id="compare-title")
        with VerticalScroll(id="compare-body"):
            yield Static(comparison_table(self.comparison), id="compare-table")
            yield Static(Text(COMPARE_NOTE, style="dim"), id="compare-note")
        yield WideFooter()

    def on_mount(self) -> None:
        self.query_one("#compare-body", VerticalScroll).focus()

    def action_back(self) -> None:
        self.dismiss(None)
