"""Hostile sizes (issue 8): a 5 MB tool result, very long lines, 10,000 steps, a 3,000-deep chain of parents. Ingest
works, the trace opens with a bounded preview, the full value is in `r` and in $PAGER (`o`), nothing recurses."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.app import SuspendNotSupported

from store.db import Store, TraceFilter
from store.evals import build_case
from store.importers.base import validate_trace
from store.rules import run_rules
from tests.fixtures.hostile.traces import TEXT, llm, show_json, show_text, store_traces, tool, trace
from tui.app import make_app
from tui.format import inert
from tui.screens.raw_view import RawJsonScreen, open_in_pager
from tui.screens.trace_view import TraceViewScreen
from tui.trace_text import VALUE_LIMIT, raw_json
from tui.widgets.text_view import TextView

BIG = 5 * 1024 * 1024
# A base64-looking image with the hostile text and a needle at its far end.
IMAGE = "data:image/png;base64," + "iVBORw0KGgoAAAANSUhEUg" * (BIG // 22) + TEXT + " NEEDLE-END"


def big_trace() -> dict[str, Any]:
    return trace("trc_big", [llm("m"), tool("t", name="fetch_image", result=IMAGE)],
                 input="Describe the image. NEEDLE-INPUT " + "z" * 100_000)


@pytest.fixture(scope="module")
def big_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("big") / "big.db"
    store, problems = store_traces(db, big_trace())
    store.close()
    assert problems == []
    return db


def test_a_5mb_value_is_stored_whole_and_exported_whole(big_db: Path) -> None:
    data = show_json(big_db, "trc_big")
    assert data["steps"][1]["result"] == IMAGE.replace("\ud800", "\ufffd")


def test_show_prints_a_bounded_preview_of_a_5mb_value(big_db: Path) -> None:
    out = show_text(big_db, "trc_big")
    assert "more chars, r for raw" in out and "NEEDLE-END" not in out
    assert len(out) < 10 * VALUE_LIMIT  # the preview, not the value


def test_search_finds_a_trace_with_huge_fields(big_db: Path) -> None:
    store = Store(big_db)
    assert [r.id for r in store.list_traces(TraceFilter(search="NEEDLE-INPUT"))] == ["trc_big"]
    store.close()


async def _open(app: Any, pilot: Any) -> TraceViewScreen:
    for _ in range(200):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if isinstance(app.screen, TraceViewScreen) and app.screen.stored is not None:
            return app.screen
    raise AssertionError("the trace did not open")


async def test_the_tui_opens_a_5mb_value_bounded_and_r_shows_all_of_it(big_db: Path, tmp_path: Path) -> None:
    store = Store(big_db)
    app = make_app(store, trace_id="trc_big", evals_dir=tmp_path / "evals")
    async with app.run_test(size=(120, 40)) as pilot:
        view = await _open(app, pilot)
        view._move_to_step(1)
        await pilot.pause()
        detail = view.query_one("#step-detail", TextView)
        assert len(detail.plain) < VALUE_LIMIT + 5_000 and "more chars, r for raw" in detail.plain
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, RawJsonScreen)
        raw = app.screen.query_one(TextView)
        assert "NEEDLE-END" in raw.plain and len(raw.plain) > BIG
        await pilot.press("end")
        await pilot.pause()
        # Only what is on screen was rendered: a handful of strips, each one screen wide, not 5 MB of line.
        assert 0 < len(raw._strips) <= 40
        assert all(len(raw._strips[key].text) <= 120 for key in list(raw._strips.keys()))
        assert app.is_running
    store.close()


class _Suspended:
    """Stands in for App.suspend in a headless test: counts the hand-overs of the terminal."""

    def __init__(self) -> None:
        self.times = 0

    def __call__(self) -> _Suspended:
        return self

    def __enter__(self) -> None:
        self.times += 1

    def __exit__(self, *exc: object) -> None:
        return None


async def test_o_hands_the_whole_value_to_the_pager(big_db: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "paged.txt"
    pager = tmp_path / "pager.py"
    pager.write_text(f"import shutil, sys\nshutil.copy(sys.argv[1], {str(copy)!r})\n")
    monkeypatch.setenv("PAGER", f"{sys.executable} {pager}")
    store = Store(big_db)
    app = make_app(store, trace_id="trc_big", evals_dir=tmp_path / "evals")
    async with app.run_test(size=(120, 40)) as pilot:
        view = await _open(app, pilot)
        suspended = _Suspended()
        monkeypatch.setattr(app, "suspend", suspended)
        view._move_to_step(1)
        await pilot.pause()
        await pilot.press("o")
        await pilot.pause()
        assert suspended.times == 1 and app.is_running
        step = view.stored.trace.steps[1] if view.stored else None
        assert step is not None
        paged = copy.read_text(encoding="utf-8")
        assert paged == inert(raw_json(step)) + "\n"
        assert "NEEDLE-END" in paged and "\x1b" not in paged and "\u202e" not in paged
    store.close()


async def test_o_without_a_terminal_says_where_the_value_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = store_traces(tmp_path / "s.db", trace("trc_s", [tool("t", result=TEXT)]))
    app = make_app(store, trace_id="trc_s", evals_dir=tmp_path / "evals")
    async with app.run_test(size=(120, 40)) as pilot:
        await _open(app, pilot)

        def refuse() -> Any:
            raise SuspendNotSupported("headless")

        monkeypatch.setattr(app, "suspend", refuse)
        await pilot.press("down", "o")
        await pilot.pause()
        [note] = [n.message for n in app._notifications if "Cannot hand the terminal" in n.message]
        path = Path(note.rsplit(" is in ", 1)[1])
        paged = path.read_text(encoding="utf-8")
        # JSON escapes C0 controls itself; the pager file makes the rest (C1, bidi) visible too.
        assert paged.startswith("{") and "\\u001b[31mred" in paged and "<U+202E>" in paged
        assert "\x1b" not in paged and "\u202e" not in paged and "\x9b" not in paged
        path.unlink()
        assert app.is_running
    store.close()


def test_the_pager_falls_back_to_a_message_without_a_pager(monkeypatch: pytest.MonkeyPatch) -> None:
    notes: list[str] = []

    class FakeApp:
        def notify(self, message: str, **_: Any) -> None:
            notes.append(message)

    monkeypatch.setenv("PAGER", "")
    monkeypatch.setenv("PATH", "")
    open_in_pager(FakeApp(), "step s1", '{"a": 1}')  # type: ignore[arg-type]
    assert len(notes) == 1 and notes[0].startswith("No pager found")
    Path(notes[0].rsplit(" is in ", 1)[1]).unlink()


def test_very_long_lines_are_wrapped_and_cut_not_rendered_whole(tmp_path: Path) -> None:
    line = "w" * 2_000_000  # one word, no break
    db = tmp_path / "l.db"
    store, _ = store_traces(db, trace("trc_l", [llm("m", messages=[{"role": "user", "content": line}],
                                                   output={"role": "assistant", "content": line})],
                                      name=line, user_id=line))
    store.close()
    out = show_text(db, "trc_l")
    assert len(out) < 20 * VALUE_LIMIT and "more chars" in out


def test_a_claim_after_megabytes_of_text_is_still_found() -> None:
    answer = "Checking.\n" * 300_000 + "I've issued the refund."
    t = validate_trace(trace("trc_c", [tool("r", name="issue_refund", status="error", error="denied"),
                                       llm("m", output={"role": "assistant", "content": answer})],
                             output=None), "f", 1, [])
    assert t is not None
    found = [f for f in run_rules(t).findings if f.rule_id == "success-after-tool-error"]
    assert found and found[0].quote == "I've issued the refund."


def chain(n: int, tid: str = "trc_deep") -> dict[str, Any]:
    steps = [llm("d0", parent_id=None)]
    steps += [(llm if i % 3 == 0 else tool)(f"d{i}", parent_id=f"d{i - 1}") for i in range(1, n)]
    return trace(tid, steps)


def test_a_3000_deep_chain_everywhere(tmp_path: Path) -> None:
    """Ingest (merged in two parts), totals, rules, show, show --json and the eval case: no recursion limit."""
    db = tmp_path / "deep.db"
    data = chain(3000)
    store = Store(db)
    for part in (data["steps"][1500:], data["steps"][:1500]):  # children first: relinked when the parents come
        t = validate_trace({**data, "steps": part}, "f", 1, [])
        assert t is not None
        t.merge = True
        assert not store.insert_traces([t]).failed
    stored = store.get_trace("trc_deep")
    assert len(stored.trace.steps) == 3000
    assert stored.totals.llm_calls == 1000 and stored.totals.input_tokens == 1000 * 1000
    assert {s.id: s.parent_id for s in stored.trace.steps}["d1500"] == "d1499"
    case = build_case(stored)
    assert case.id.startswith("evc_")
    store.close()
    out = show_text(db, "trc_deep")
    assert out.count("lookup_order") >= 2000
    assert len(show_json(db, "trc_deep")["steps"]) == 3000
    assert sys.getrecursionlimit() <= 10_000  # nothing raised it to get here


def test_10000_steps_ingest_and_export(tmp_path: Path) -> None:
    steps = [llm("root")] + [(llm if i % 2 else tool)(f"s{i}", parent_id="root") for i in range(1, 10_000)]
    db = tmp_path / "many.db"
    store, problems = store_traces(db, trace("trc_many", steps))
    stored = store.get_trace("trc_many")
    store.close()
    assert problems == [] and stored.totals.steps == 10_000
    assert stored.totals.llm_calls == 5001 and stored.totals.tool_calls == 4999
    assert len(show_json(db, "trc_many")["steps"]) == 10_000


async def test_10000_steps_and_a_3000_deep_chain_open_in_the_tui(tmp_path: Path) -> None:
    steps = [llm("root")] + [tool(f"s{i}", parent_id="root") for i in range(1, 10_000)]
    store, _ = store_traces(tmp_path / "t.db", trace("trc_many", steps), chain(3000))
    for tid, n in (("trc_many", 10_000), ("trc_deep", 3000)):
        app = make_app(store, trace_id=tid, evals_dir=tmp_path / "evals")
        async with app.run_test(size=(120, 40)) as pilot:
            view = await _open(app, pilot)
            assert len(view.nodes) == n
            await pilot.press("end")
            await pilot.pause()
            await pilot.press("r")
            await pilot.pause()
            assert isinstance(app.screen, RawJsonScreen) and app.is_running
    store.close()


def test_raw_json_of_a_huge_step_is_one_json_document() -> None:
    t = validate_trace(big_trace(), "f", 1, [])
    assert t is not None
    assert json.loads(raw_json(t.steps[1]))["result"].endswith("NEEDLE-END")
