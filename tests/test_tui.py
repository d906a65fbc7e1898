"""The TUI driven with Pilot: the paged list, the version filter, the trace view, promotion and hostile text."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import OptionList, Static
from textual.worker import WorkerFailed

from store.db import Store
from store.models import Trace
from tui.app import LoupeApp, make_app
from tui.screens.raw_view import RawJsonScreen
from tui.screens.trace_list import TraceListScreen
from tui.screens.trace_view import StepTree, TraceViewScreen
from tui.screens.version_picker import VersionPicker
from tui.trace_text import VALUE_LIMIT, render_step, totals_text
from tui.widgets.text_view import TextView
from tui.widgets.trace_table import TraceTable, layout_columns

from .conftest import SEED, make_trace

PAYLOADS = [
    "[/]",
    "[bold]x[/bold]",
    "[link=x]y[/link]",
    "[@click=app.quit]",
    "\x1b[31mred\x1b[0m",
    "\x1b]8;;http://e\x07link\x1b]8;;\x07",
    '["a", {"b": 1}]',
]
EVIL = " ".join(PAYLOADS)
EVIL_ID = "trc_\x1b[31m_[bold]x[/bold]_[@click=app.quit]"


def evil_trace() -> dict[str, Any]:
    """A trace whose every text field holds markup, ANSI and OSC sequences and a JSON array."""
    return {
        "id": EVIL_ID, "name": EVIL, "prompt": {"name": EVIL, "version": EVIL},
        "started_at": "2026-01-20T00:00:00Z", "ended_at": "2026-01-20T00:00:05Z",
        "user_id": EVIL, "session_id": EVIL, "tags": [EVIL], "metadata": {EVIL: EVIL}, EVIL: EVIL,
        "input": EVIL, "output": EVIL,
        "steps": [
            {"id": "e1" + EVIL, "type": "llm", "name": EVIL, "model": EVIL, "provider": EVIL, "params": {EVIL: EVIL},
             "started_at": "2026-01-20T00:00:00Z", "ended_at": "2026-01-20T00:00:02Z",
             "messages": [{"role": EVIL, "content": EVIL, "name": EVIL}, {"role": "user", "content": [{"text": EVIL}]}],
             "output": {"role": "assistant", "content": EVIL,
                        "tool_calls": [{"id": EVIL, "name": EVIL, "arguments": {EVIL: [EVIL]}}]},
             "usage": {"input_tokens": 10, "output_tokens": 5, EVIL: 1}, EVIL: EVIL},
            {"id": "e2" + EVIL, "parent_id": "e1" + EVIL, "type": "tool", "name": EVIL, "tool_call_id": EVIL,
             "arguments": [EVIL, {EVIL: EVIL}], "result": EVIL, "status": "error",
             "error": {"type": EVIL, "message": EVIL}},
            {"id": "e3", "type": "retrieval", "name": EVIL, "arguments": EVIL, "result": [EVIL], "output": EVIL},
        ],
    }


def build_store(path: Path, *extra: dict[str, Any], n: int = 30) -> Store:
    """The seed trace (trc_7J4k9, v7) and `n` honest traces spread over v5, v6 and v7."""
    store = Store(path)
    traces = [Trace.model_validate(copy.deepcopy(SEED))]
    traces += [Trace.model_validate(make_trace(i, version=("v5", "v6", "v7")[i % 3])) for i in range(n)]
    traces += [Trace.model_validate(t) for t in extra]
    store.insert_traces(traces)
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = build_store(tmp_path / "loupe.db")
    yield s
    s.close()


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until no worker is running and the messages they posted have been handled."""
    for _ in range(50):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if not any(w.is_running for w in pilot.app.workers):
            await pilot.pause()
            if not any(w.is_running for w in pilot.app.workers):
                return
    raise AssertionError("workers did not settle")


def screen_text(app: LoupeApp) -> str:
    """What the terminal shows, as plain text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def table(app: LoupeApp) -> TraceTable:
    return app.screen.query_one(TraceTable)


def summary(app: LoupeApp) -> str:
    widget = app.screen.query_one("#list-summary", Static)
    return str(widget.render())


# --------------------------------------------------------------------------- the list


async def test_list_shows_newest_first_and_counts(store: Store) -> None:
    app = make_app(store, page_size=10)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, TraceListScreen)
        assert app.title == "loupe" and app.sub_title == str(store.path)
        t = table(app)
        assert t.row_count == 31
        ids = [r.id if r is not None else None for r in (t.row(0), t.row(1))]
        assert ids == ["trc_7J4k9", "trc_t0029"]  # the seed (2026-01-14) is newer than all the others
        assert t.selected_trace_id == "trc_7J4k9"
        assert "31 traces" in summary(app)
        text = screen_text(app)
        assert "trc_7J4k9" in text and "support_agent@v7" in text and "gpt-4.1-mini" in text


async def test_list_fetches_only_the_pages_it_shows(store: Store) -> None:
    app = make_app(store, page_size=5)
    async with app.run_test(size=(120, 15)) as pilot:
        await settle(pilot)
        t = table(app)
        first = set(t.cached_pages)
        assert 0 in first and 6 not in first
        await pilot.press("end")
        await settle(pilot)
        assert t.cursor_row == 30
        assert t.selected_trace_id == "trc_t0000"  # the oldest
        assert 6 in t.cached_pages
        assert 3 not in t.cached_pages  # never on screen, never fetched
        await pilot.press("home", "j", "j")
        await settle(pilot)
        assert t.selected_trace_id == "trc_t0028"
        await pilot.press("k")
        assert t.selected_trace_id == "trc_t0029"


async def test_version_filter_counts_only_that_version(store: Store) -> None:
    app = make_app(store, page_size=4)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        picker = app.screen
        assert isinstance(picker, VersionPicker)
        assert picker.values[0] == []  # "All versions"
        index = picker.values.index(["support_agent@v7"])
        labels = screen_text(app)
        assert "All versions" in labels and "support_agent@v7" in labels and "11 traces" in labels
        picker.query_one(OptionList).highlighted = index
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TraceListScreen)
        t = table(app)
        assert t.row_count == 11
        assert t.filter.prompt_versions == ["support_agent@v7"]
        rows = [t.row(i) for i in range(t.row_count)]
        assert all(r is not None and r.prompt_version == "v7" for r in rows)
        assert "11 of 31 traces match: version support_agent@v7" in summary(app)
        # Back to all versions.
        await pilot.press("v")
        await settle(pilot)
        app.screen.query_one(OptionList).highlighted = 0
        await pilot.press("enter")
        await settle(pilot)
        assert table(app).row_count == 31
        assert "31 traces" in summary(app)


async def test_findings_only_and_search(store: Store) -> None:
    app = make_app(store)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        assert table(app).row_count == 1
        assert "1 of 31 traces match: with findings" in summary(app)
        await pilot.press("x")
        await settle(pilot)
        assert table(app).row_count == 31
        await pilot.press("slash")
        await pilot.press(*"t0012")
        await pilot.press("enter")
        await settle(pilot)
        assert table(app).row_count == 1
        assert table(app).selected_trace_id == "trc_t0012"
        assert "search t0012" in summary(app)


async def test_promote_and_open_need_a_selected_trace(tmp_path: Path) -> None:
    empty = Store(tmp_path / "empty.db")
    app = make_app(empty)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert table(app).row_count == 0
        assert table(app).selected_trace_id is None
        assert app.screen.check_action("promote", ()) is False
        keys = app.screen.active_bindings
        assert "e" not in keys and "enter" not in keys
        assert "v" in keys and "q" in keys
        assert "no traces match" in screen_text(app)
        await pilot.press("e", "enter")  # nothing happens, nothing breaks
        await settle(pilot)
        assert isinstance(app.screen, TraceListScreen)
    empty.close()


async def test_mouse_and_search_escape(store: Store) -> None:
    app = make_app(store)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        t = table(app)
        await pilot.click(TraceTable, offset=(5, 3))  # line 0 is the column header
        assert t.cursor_row == 2 and t.selected_trace_id == "trc_t0028"
        await pilot.double_click(TraceTable, offset=(5, 3))
        await settle(pilot)
        assert isinstance(app.screen, TraceViewScreen)
        assert app.screen.stored is not None and app.screen.stored.trace.id == "trc_t0028"
        await pilot.press("escape")
        await pilot.press("slash")
        assert app.focused is not None and app.focused.id == "search"
        await pilot.press("escape")
        assert app.focused is table(app)
        assert table(app).row_count == 31


async def test_a_failing_worker_is_notified(store: Store, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the evals folder should be")
    app = make_app(store, evals_dir=blocker / "evals")
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await pilot.press("e")
        with contextlib.suppress(WorkerFailed):  # waiting re-raises the error if the worker is still listed
            await settle(pilot)
        await pilot.pause()
        assert app.is_running
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors and errors[0].message.startswith("promoting the trace failed:")


def test_columns_fit_every_terminal_width() -> None:
    for width in range(78, 202):
        cols = layout_columns(width)
        used = sum(w for _, w in cols) + len(cols) - 1
        assert used <= width, width
        keys = [c.key for c, _ in cols]
        assert {"time", "id", "prompt", "tokens", "cost", "findings"} <= set(keys)
    assert len(layout_columns(200)) == 10


# --------------------------------------------------------------------------- the trace view


async def test_enter_opens_the_trace_with_its_finding(store: Store) -> None:
    app = make_app(store)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        assert table(app).selected_trace_id == "trc_7J4k9"
        await pilot.press("enter")
        await settle(pilot)
        view = app.screen
        assert isinstance(view, TraceViewScreen)
        assert view.stored is not None and view.stored.trace.id == "trc_7J4k9"
        text = screen_text(app)
        assert "success claimed after a tool error" in text
        assert "I've canceled your subscription and processed the refund." in text
        assert "evidence s3, s4" in text
        assert "4 steps" in text and "2 LLM calls" in text and "2 tool calls" in text
        # The evidence steps are marked in the tree, the others are not.
        tree = view.query_one(StepTree)
        labels = {view.stored.trace.steps[i].id: str(node.label) for i, node in view.nodes.items()}
        assert labels["s3"].startswith("●") and labels["s4"].startswith("●")
        assert not labels["s1"].startswith("●") and not labels["s2"].startswith("●")
        assert "issue_refund" in labels["s3"] and "error" in labels["s3"]
        # n and N walk the evidence steps.
        assert tree.cursor_node is not None and tree.cursor_node.data == 0
        await pilot.press("n")
        assert view.stored.trace.steps[tree.cursor_node.data].id == "s3"
        detail = view.query_one("#step-detail", TextView).plain
        assert "permission_denied" in detail and "agent role may not issue refunds" in detail
        await pilot.press("n")
        assert view.stored.trace.steps[tree.cursor_node.data].id == "s4"
        await pilot.press("N")
        assert view.stored.trace.steps[tree.cursor_node.data].id == "s3"
        # The detail of an LLM step: messages by role, the output and its tool calls as JSON.
        # The root stands for the trace: its input, output and rules.
        await pilot.press("home")
        await pilot.pause()
        detail = view.query_one("#step-detail", TextView).plain
        assert "Cancel my subscription and refund the last charge." in detail and "usr_1" in detail
        assert "success claimed after a tool error: ran" in detail
        await pilot.press("down")
        await pilot.pause()
        detail = view.query_one("#step-detail", TextView).plain
        assert "gpt-4.1-mini" in detail and "openai" in detail and "temperature" in detail
        assert "▍system" in detail and "You are a support agent." in detail
        assert "get_subscription_plan" in detail and '"customer_id": "cus_8129"' in detail
        # Raw JSON of the step, then back.
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, RawJsonScreen)
        assert '"id": "s1"' in app.screen.query_one(TextView).plain
        await pilot.press("escape")
        await pilot.press("escape")
        assert isinstance(app.screen, TraceListScreen)


async def test_open_straight_at_a_trace_by_prefix(store: Store) -> None:
    app = make_app(store, trace_id="trc_7J4")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, TraceViewScreen)
        assert app.screen.stored is not None and app.screen.stored.trace.id == "trc_7J4k9"
        await pilot.press("y")
        assert app.clipboard == "trc_7J4k9"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, TraceListScreen)


async def test_unknown_trace_id_goes_back_to_the_list(store: Store) -> None:
    app = make_app(store, trace_id="trc_nope")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, TraceListScreen)
        assert any("trc_nope" in n.message for n in app._notifications)


async def test_deep_and_cyclic_step_parents_open(tmp_path: Path) -> None:
    steps: list[dict[str, Any]] = [{"id": "d0", "type": "agent", "name": "root"}]
    steps += [{"id": f"d{i}", "parent_id": f"d{i - 1}", "type": "chain", "name": f"n{i}"} for i in range(1, 3000)]
    steps += [{"id": "c1", "parent_id": "c2", "type": "tool", "name": "a"},
              {"id": "c2", "parent_id": "c1", "type": "tool", "name": "b"},
              {"id": "o1", "parent_id": "missing", "type": "other", "name": "orphan"}]
    deep = {"id": "trc_deep", "started_at": "2026-02-01T00:00:00Z", "steps": steps}
    store = build_store(tmp_path / "deep.db", deep, n=0)
    app = make_app(store, trace_id="trc_deep")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        view = app.screen
        assert isinstance(view, TraceViewScreen)
        assert len(view.nodes) == len(steps)  # every step placed once, none lost to the cycle
        await pilot.press("end")
        await pilot.pause()
        assert app.is_running
    store.close()


# --------------------------------------------------------------------------- promotion


async def test_promote_from_list_and_view_writes_one_case(store: Store, tmp_path: Path) -> None:
    evals = tmp_path / "evals"
    app = make_app(store, evals_dir=evals)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        assert table(app).selected_trace_id == "trc_7J4k9"
        await pilot.press("e")
        await settle(pilot)
        files = list(evals.rglob("*.yaml"))
        assert len(files) == 1
        messages = [n.message for n in app._notifications]
        assert any(m.startswith("Eval case evc_") and "saved" in m for m in messages), messages
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TraceViewScreen)
        await pilot.press("e")
        await settle(pilot)
        assert list(evals.rglob("*.yaml")) == files
        messages = [n.message for n in app._notifications]
        assert any(m.startswith("Already a case: evc_") for m in messages), messages


# --------------------------------------------------------------------------- untrusted text


async def test_hostile_trace_text_stays_inert(tmp_path: Path) -> None:
    store = build_store(tmp_path / "evil.db", evil_trace(), n=3)
    app = make_app(store)
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot)
        assert table(app).selected_trace_id == EVIL_ID  # the newest
        text = screen_text(app)
        assert "[bold]x[/bold]" in text and "␛" in text and "\x1b" not in text
        # The version picker lists the hostile prompt name and version as text.
        await pilot.press("v")
        await settle(pilot)
        assert "[bold]x[/bold]" in screen_text(app)
        await pilot.press("escape")
        await pilot.press("enter")
        await settle(pilot)
        view = app.screen
        assert isinstance(view, TraceViewScreen)
        assert view.stored is not None and view.stored.trace.id == EVIL_ID
        for _ in range(4):  # every step's detail, the tool and the retrieval step, then the trace itself
            text = screen_text(app)
            assert "[bold]x[/bold]" in text and "[link=x]y[/link]" in text and "[@click=app.quit]" in text
            assert "␛" in text and "\x1b" not in text and "\x07" not in text
            await pilot.press("down")
            await pilot.pause()
            if _ == 2:
                await pilot.press("home")
                await pilot.pause()
        assert "metadata (fields loupe does not know)" in view.query_one(TextView).plain
        await pilot.press("r")
        await pilot.pause()
        raw = app.screen.query_one(TextView).plain
        assert "[bold]x[/bold]" in raw and "\x1b" not in raw
        await pilot.press("escape")
        # Clicking over the text must not run the action hidden in it.
        await pilot.click(offset=(40, 10))
        await pilot.click(offset=(100, 12))
        await pilot.press("e", "y")
        await settle(pilot)
        assert app.is_running and app.return_code is None
        assert all("\x1b" not in n.message for n in app._notifications)
    store.close()


def test_totals_mark_partial_traces_and_unknown_cost(tmp_path: Path) -> None:
    partial = {
        "id": "trc_part", "partial": True, "problems": ["line 7: truncated JSON"], "started_at": "2026-02-02T00:00:00Z",
        "steps": [{"id": "m", "type": "llm", "model": "no-such-model-xyz", "usage": {"input_tokens": 5}},
                  {"id": "n", "type": "llm", "model": "gpt-4o-mini"}],
    }
    store = build_store(tmp_path / "p.db", partial, n=0)
    stored = store.get_trace("trc_part")
    totals = totals_text(stored).plain
    assert "PARTIAL TRACE" in totals and "truncated JSON" in totals
    assert "cost ?" in totals and "$0" not in totals
    assert "2 LLM calls" in totals and "usage unknown for 1" in totals
    detail = render_step(stored.trace.steps[0], stored.costs["m"]).plain
    assert "cost ? unknown:" in detail
    assert "out ?" in detail  # output tokens were not recorded: unknown, not 0
    store.close()


def test_long_values_are_cut_with_a_marker() -> None:
    step = Trace.model_validate(
        {"id": "t", "steps": [{"id": "s", "type": "tool", "name": "dump", "result": "x" * (VALUE_LIMIT + 500)}]}
    ).steps[0]
    text = render_step(step, None).plain
    assert "… (500 more chars, r for raw)" in text
    assert "x" * (VALUE_LIMIT + 1) not in text


# --------------------------------------------------------------------------- appearance


def test_list_snapshot(snap_compare: Any, store: Store) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.sub_title = "loupe.db"  # the real path differs on every run

    assert snap_compare(make_app(store), terminal_size=(120, 30), run_before=ready)
