"""The TUI driven with Pilot: the paged list, the version filter, the trace view, promotion and hostile text."""

from __future__ import annotations

import contextlib
import copy
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.style import Style
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import OptionList, Static
from textual.worker import WorkerFailed

from store.db import Store, TraceFilter
from store.models import Trace
from tui.app import LoupeApp, make_app
from tui.render import summary_line
from tui.screens.raw_view import RawJsonScreen
from tui.screens.rule_picker import RulePicker, rule_label, rule_trace_counts
from tui.screens.trace_list import TraceListScreen
from tui.screens.trace_view import MAX_TREE_DEPTH, StepTree, TraceViewScreen, tree_width
from tui.screens.version_picker import VersionPicker, version_name_text
from tui.trace_text import (
    VALUE_LIMIT,
    findings_text,
    not_run_line,
    render_step,
    render_trace,
    step_label,
    totals_text,
)
from tui.widgets.findings_panel import FindingsPanel, hanging_wrap
from tui.widgets.text_view import TextView
from tui.widgets.trace_table import (
    COLUMNS,
    SEVERITY_STYLE,
    TraceTable,
    cell_values,
    findings_cell,
    follow,
    layout_columns,
    row_index,
)

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


# Terminal escapes (clear the screen, write the clipboard with OSC 52, BEL, NUL, an 8-bit CSI) and markup.
ALL = "\x1b[2J\x1b]52;c;aGk=\x07\x00[bold]x[/bold]\x9b2J"
# What must never reach the terminal from a trace: C0 controls but the newline and tab, DEL, C1 controls.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def assert_inert(text: str, *, shown: bool = True) -> None:
    """No control character of the trace got through, and (when `shown`) its markup is there as text."""
    bad = sorted({f"U+{ord(c):04X}" for c in UNSAFE.findall(text)})
    assert not bad, f"control characters reached the output: {bad}"
    if shown:
        assert "[bold]x[/bold]" in text


def hostile_everywhere() -> dict[str, Any]:
    """A trace whose every string, dict key included, holds ALL: the trace's own fields, prompt, tags, metadata,
    unknown fields, every kind of step with its messages (roles, names, tool call IDs), params, usage extras,
    errors, and a finding that quotes it all back."""
    a = ALL
    return {
        "id": "trc_all" + a, "name": a, "prompt": {"name": a, "version": a},
        "started_at": "2026-01-21T00:00:00Z", "ended_at": "2026-01-21T00:00:09Z",
        "user_id": a, "session_id": a, "tags": [a, "billing"], "metadata": {a: {a: [a]}}, "x_" + a: a,
        "input": {a: a}, "output": a, "partial": True, "problems": [a], "source": a,
        "steps": [
            {"id": "s1" + a, "type": "llm", "name": a, "model": a, "provider": a, "params": {a: a},
             "started_at": "2026-01-21T00:00:00Z", "ended_at": "2026-01-21T00:00:02Z",
             "messages": [{"role": a, "content": a, "name": a, "tool_call_id": a,
                           "tool_calls": [{"id": a, "name": a, "arguments": {a: a}}]},
                          {"role": a, "content": [{"type": "text", "text": a}]},
                          {"role": a, "content": {a: a}}],
             "output": {"role": a, "content": None,
                        "tool_calls": [{"id": a, "name": "issue_refund", "arguments": {a: [a]}}]},
             "usage": {"input_tokens": 10, "output_tokens": 5, a: a}, "cost": 0.01, a: a},
            {"id": "s2" + a, "parent_id": "s1" + a, "type": "tool", "name": "issue_refund", "tool_call_id": a,
             "arguments": {a: a}, "result": {a: a}, "status": "error", "error": {"type": a, "message": a},
             "is_error": a, "metadata": {a: a}},
            # Failed by the exit code in its result, which is quoted as the reason: whitespace controls around 7.
            {"id": "s3" + a, "parent_id": "s2" + a, "type": "tool", "name": a,
             "result": {"exit_code": "\x0b\x1c7\x1f", a: a}},
            {"id": "s4" + a, "parent_id": "s1" + a, "type": "retrieval", "name": a, "model": a, "arguments": a,
             "result": [a], "output": {a: a}, "usage": {"input_tokens": 1, a: a}},
            {"id": "s5" + a, "type": "llm", "name": a, "model": "gpt-4o-mini", "provider": a,
             "messages": [{"role": "user", "content": a}],
             "output": {"role": "assistant", "content": "Done: I've issued the refund " + a},
             "usage": {"input_tokens": 20, "output_tokens": 7}},
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


@pytest.fixture(autouse=True)
def _working_directory_stays_empty(tmp_path_factory: pytest.TempPathFactory,
                                   monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test runs in an empty working directory that must stay empty: every app is given its own evals_dir,
    so pressing `e` never writes an eval case into the checkout."""
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    yield
    left = sorted(p.name for p in cwd.iterdir())
    assert not left, f"the test wrote into the working directory: {left}"


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


async def test_list_shows_newest_first_and_counts(store: Store, tmp_path: Path) -> None:
    app = make_app(store, page_size=10, evals_dir=tmp_path / "evals")
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


async def test_list_fetches_only_the_pages_it_shows(store: Store, tmp_path: Path) -> None:
    app = make_app(store, page_size=5, evals_dir=tmp_path / "evals")
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


async def test_version_filter_counts_only_that_version(store: Store, tmp_path: Path) -> None:
    app = make_app(store, page_size=4, evals_dir=tmp_path / "evals")
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


async def test_findings_only_and_search(store: Store, tmp_path: Path) -> None:
    app = make_app(store, evals_dir=tmp_path / "evals")
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
    app = make_app(empty, evals_dir=tmp_path / "evals")
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


async def test_mouse_and_search_escape(store: Store, tmp_path: Path) -> None:
    app = make_app(store, evals_dir=tmp_path / "evals")
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


async def test_enter_opens_the_trace_with_its_finding(store: Store, tmp_path: Path) -> None:
    app = make_app(store, evals_dir=tmp_path / "evals")
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


async def test_open_straight_at_a_trace_by_prefix(store: Store, tmp_path: Path) -> None:
    app = make_app(store, trace_id="trc_7J4", evals_dir=tmp_path / "evals")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, TraceViewScreen)
        assert app.screen.stored is not None and app.screen.stored.trace.id == "trc_7J4k9"
        await pilot.press("y")
        assert app.clipboard == "trc_7J4k9"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, TraceListScreen)


async def test_unknown_trace_id_goes_back_to_the_list(store: Store, tmp_path: Path) -> None:
    app = make_app(store, trace_id="trc_nope", evals_dir=tmp_path / "evals")
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
    app = make_app(store, trace_id="trc_deep", evals_dir=tmp_path / "evals")
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
    app = make_app(store, evals_dir=tmp_path / "evals")
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


def test_list_snapshot(snap_compare: Any, store: Store, tmp_path: Path) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.sub_title = "loupe.db"  # the real path differs on every run

    assert snap_compare(make_app(store, evals_dir=tmp_path / "evals"), terminal_size=(120, 30), run_before=ready)


# --------------------------------------------------------------------------- every field of a trace, inert


def plain(renderable: Any) -> str:
    """A Rich renderable as the plain text a terminal would get (no colour codes of Rich's own)."""
    if isinstance(renderable, Text):
        return renderable.plain
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None, force_terminal=False).print(renderable)
    return buffer.getvalue()


def test_every_trace_field_is_inert_in_the_trace_view_text(tmp_path: Path) -> None:
    store = build_store(tmp_path / "all.db", hostile_everywhere(), n=0)
    stored = store.get_trace("trc_all")
    assert stored.findings and ALL in stored.findings[0].message  # the finding quotes the hostile text back
    assert stored.trace.steps[2].metadata == {} and "exit_code" in stored.trace.steps[2].result
    outputs = {
        "totals": plain(totals_text(stored)),
        "trace": plain(render_trace(stored)),
        "findings": plain(findings_text(stored.findings, stored.rule_runs, 0)),
    }
    for step in stored.trace.steps:
        cost = stored.costs.get(step.id)
        outputs[f"label {step.id!r}"] = plain(step_label(step, cost, evidence=True))
        outputs[f"detail {step.id!r}"] = plain(render_step(step, cost, stored.findings))
    row = next(r for r in store.list_traces() if r.id == stored.trace.id)
    outputs["ls"] = plain(summary_line(row))
    outputs["list row"] = " ".join(cell_values(row, col, 40)[0] for col in COLUMNS)
    outputs["version"] = plain(version_name_text(row.prompt_name, row.prompt_version))
    for where, text in outputs.items():
        try:
            # Some steps are named "issue_refund"; `ls` cuts its columns short of the markup.
            assert_inert(text, shown=not where.startswith(("label", "ls")))
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from None
    assert "[bold]x[/bold]" in outputs[f"label {stored.trace.steps[0].id!r}"] and "trc_all␛[2J␛]52" in outputs["ls"]
    # Keys are shown too: metadata, params, usage extras, the unknown top-level field.
    assert '"x_\\u001b[2J' in outputs["trace"] and "billing" in outputs["trace"]
    assert "exit code ␋␜7␟ in result" in outputs[f"detail {stored.trace.steps[2].id!r}"]
    store.close()


async def test_every_trace_field_is_inert_on_screen(tmp_path: Path) -> None:
    store = build_store(tmp_path / "all.db", hostile_everywhere(), n=2)
    app = make_app(store, evals_dir=tmp_path / "evals")
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot)
        assert table(app).selected_trace_id == "trc_all" + ALL
        assert_inert(screen_text(app))  # the list rows
        await pilot.press("v")
        await settle(pilot)
        assert_inert(screen_text(app))  # the version picker
        await pilot.press("escape", "enter")
        await settle(pilot)
        view = app.screen
        assert isinstance(view, TraceViewScreen) and view.stored is not None
        assert_inert(screen_text(app))
        tree = view.query_one(StepTree)
        for index in [-1, *view.nodes]:
            if index == -1:
                tree.move_cursor(tree.root)
            else:
                view._move_to_step(index)
            await pilot.pause()
            assert_inert(view.query_one("#step-detail", TextView).plain)
            assert_inert(screen_text(app), shown=False)
        for node in view.nodes.values():
            assert_inert(str(node.label), shown=False)
        await pilot.press("r")
        await pilot.pause()
        assert_inert(screen_text(app))
        await pilot.press("escape", "y", "e")
        await settle(pilot)
        messages = [n.message for n in app._notifications]
        assert any(m.startswith("Copied trace ID") for m in messages), messages
        for m in messages:
            assert_inert(m, shown=False)
    store.close()


# --------------------------------------------------------------------------- token sums, versions, tree, cursor


def _token_traces() -> list[dict[str, Any]]:
    when = "2026-01-22T00:00:{:02d}Z"
    return [
        {"id": "trc_tools_only", "started_at": when.format(1),
         "steps": [{"id": "t", "type": "tool", "name": "search", "result": "ok", "status": "ok"}]},
        {"id": "trc_half_usage", "started_at": when.format(2),
         "steps": [{"id": "a", "type": "llm", "model": "gpt-4o-mini", "usage": {"input_tokens": 1200, "output_tokens": 30}},
                   {"id": "b", "type": "llm", "model": "gpt-4o-mini"}]},
        {"id": "trc_no_usage", "started_at": when.format(3),
         "steps": [{"id": "a", "type": "llm", "model": "gpt-4o-mini"}]},
    ]


def test_token_sums_that_leave_steps_out_are_marked(tmp_path: Path) -> None:
    store = build_store(tmp_path / "tok.db", *_token_traces(), n=0)
    rows = {r.id: r for r in store.list_traces()}
    tokens = next(c for c in COLUMNS if c.key == "tokens")
    cost = next(c for c in COLUMNS if c.key == "cost")

    def cells(tid: str) -> tuple[str, str]:
        return cell_values(rows[tid], tokens, 15)[0], cell_values(rows[tid], cost, 11)[0]

    assert cells("trc_tools_only") == ("-", "-")  # no model call: nothing is unknown
    half_tokens, half_cost = cells("trc_half_usage")
    assert half_tokens == "1,200+/30+" and half_cost.endswith("+") and half_cost.startswith("$")
    assert cells("trc_no_usage") == ("?/?", "?")  # unknown stays unknown
    assert cells("trc_7J4k9") == ("5,962/202", cells("trc_7J4k9")[1]) and "+" not in cells("trc_7J4k9")[1]
    line = plain(summary_line(rows["trc_tools_only"]))
    assert re.search(r" -/- +- ", line) and " 1 step " in line, line
    assert "1,200+/30+" in plain(summary_line(rows["trc_half_usage"]))
    assert "?/?" in plain(summary_line(rows["trc_no_usage"]))
    store.close()


async def test_token_marks_in_the_list(tmp_path: Path) -> None:
    store = build_store(tmp_path / "tok.db", *_token_traces(), n=0)
    app = make_app(store, evals_dir=tmp_path / "evals")
    async with app.run_test(size=(160, 20)) as pilot:
        await settle(pilot)
        lines = {line.split()[2]: line for line in screen_text(app).splitlines() if "trc_" in line}
        assert "1,200+/30+" in lines["trc_half_usage"]
        assert re.search(r" - +- ", lines["trc_tools_only"]), lines["trc_tools_only"]
        assert "?/?" in lines["trc_no_usage"]
    store.close()


def test_totals_say_one_call_not_one_calls(tmp_path: Path) -> None:
    one = {"id": "trc_one", "started_at": "2026-02-03T00:00:00Z",
           "steps": [{"id": "a", "type": "llm", "model": "gpt-4o-mini", "usage": {"input_tokens": 1, "output_tokens": 1}},
                     {"id": "b", "type": "tool", "name": "x", "status": "error"}]}
    tools = {"id": "trc_tools", "started_at": "2026-02-03T00:00:01Z",
             "steps": [{"id": "t", "type": "tool", "name": "search", "status": "ok"}]}
    store = build_store(tmp_path / "one.db", one, tools, n=0)
    text = totals_text(store.get_trace("trc_one")).plain
    assert "2 steps (1 LLM call, 1 tool call, 1 failed) · " in text and "1 finding" in text
    text = totals_text(store.get_trace("trc_tools")).plain
    assert "1 step (0 LLM calls, 1 tool call) · tokens - · cost - ·" in text
    store.close()


async def test_version_picker_selects_exactly_the_row_picked(tmp_path: Path) -> None:
    extra = [
        make_trace(100, id="trc_team", prompt={"name": "team@acme", "version": "v9"}),
        make_trace(101, id="trc_anon_v9", prompt={"version": "v9"}),
        make_trace(102, id="trc_no_prompt", prompt=None),
        make_trace(103, id="trc_other", prompt={"name": "other"}),
    ]
    store = build_store(tmp_path / "v.db", *extra, n=3)
    app = make_app(store, evals_dir=tmp_path / "evals")
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        cases = [
            ("team@acme@v9", "team@acme@v9", ["trc_team"]),
            ("(no prompt)@v9", "(no prompt)@v9", ["trc_anon_v9"]),
            ("(no prompt)@(no version)", "(no prompt)@(no version)", ["trc_no_prompt"]),
            ("other@(no version)", "other@(no version)", ["trc_other"]),
        ]
        for value, label, ids in cases:
            await pilot.press("v")
            await settle(pilot)
            picker = app.screen
            assert isinstance(picker, VersionPicker)
            assert [value] in picker.values, picker.values
            assert label in screen_text(app)
            picker.query_one(OptionList).highlighted = picker.values.index([value])
            await pilot.press("enter")
            await settle(pilot)
            t = table(app)
            assert t.filter.prompt_versions == [value]
            assert t.row_count == len(ids), value
            assert [r.id for r in (t.row(i) for i in range(t.row_count)) if r is not None] == ids
    store.close()


async def test_tree_pane_shows_whole_step_lines(tmp_path: Path) -> None:
    wide = {"id": "trc_wide", "started_at": "2026-02-04T00:00:00Z", "steps": [
        {"id": "a", "type": "agent", "name": "support_agent", "status": "ok"},
        {"id": "b", "parent_id": "a", "type": "llm", "model": "gpt-4.1-mini", "status": "ok",
         "started_at": "2026-02-04T00:00:00Z", "ended_at": "2026-02-04T00:00:01.710Z",
         "usage": {"input_tokens": 2904, "output_tokens": 49, "cache_read_tokens": 2560}},
        {"id": "c", "parent_id": "a", "type": "tool", "name": "issue_refund", "status": "error",
         "started_at": "2026-02-04T00:00:02Z", "ended_at": "2026-02-04T00:00:10Z"},
    ]}
    store = build_store(tmp_path / "w.db", wide, n=0)
    app = make_app(store, trace_id="trc_wide", evals_dir=tmp_path / "evals")
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        view = app.screen
        assert isinstance(view, TraceViewScreen)
        text = screen_text(app)
        for node in view.nodes.values():
            line = str(node.label).strip()
            assert line in text, line  # not cut at the pane's edge: "$0.000370  1", "erro"
        assert view.query_one(StepTree).outer_size.width <= 140 * 0.6
        assert view.query_one("#step-detail").size.width >= 50
        await pilot.resize_terminal(80, 40)  # no room for whole lines: the detail keeps 40 columns
        await pilot.pause()
        assert view.query_one(StepTree).outer_size.width == 40
    # As wide as its lines, within 40 columns and 60% of the screen, and the detail keeps at least 40.
    assert [tree_width(content, 140) for content in (10, 66, 200)] == [40, 68, 84]
    assert tree_width(66, 80) == 40 and tree_width(66, 100) == 60
    store.close()


async def test_a_deep_chain_stays_on_screen(tmp_path: Path) -> None:
    steps: list[dict[str, Any]] = [{"id": "d0", "type": "agent", "name": "root"}]
    steps += [{"id": f"d{i}", "parent_id": f"d{i - 1}", "type": "chain", "name": f"n{i}"} for i in range(1, 3000)]
    store = build_store(tmp_path / "deep.db", {"id": "trc_deep", "steps": steps}, n=0)
    app = make_app(store, trace_id="trc_deep", evals_dir=tmp_path / "evals")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        view = app.screen
        assert isinstance(view, TraceViewScreen)

        def depth(index: int) -> int:
            node, n = view.nodes[index], 0
            while node.parent is not None:
                node, n = node.parent, n + 1
            return n

        assert max(depth(i) for i in view.nodes) == MAX_TREE_DEPTH
        assert not str(view.nodes[MAX_TREE_DEPTH - 1].label).startswith("…")  # shown at its real depth
        assert str(view.nodes[MAX_TREE_DEPTH].label).startswith(f"…{MAX_TREE_DEPTH + 1} ")
        await pilot.press("end")
        await pilot.pause()
        tree = view.query_one(StepTree)
        assert tree.cursor_node is view.nodes[2999]
        text = screen_text(app)
        assert "…3000   chain n2999" in text and "…2990   chain n2989" in text  # not blank: the labels are there
        assert "chain step d2999" in view.query_one("#step-detail", TextView).plain
    store.close()


def test_row_index_is_the_row_in_the_list(tmp_path: Path) -> None:
    tie = "2026-01-01T05:00:00Z"  # trc_t0005 starts then too
    extra = [make_trace(200 + i, id=f"trc_tie_{c}", started_at=tie, version="v7") for i, c in enumerate("abc")]
    extra.append({"id": "trc_no_time", "steps": []})
    store = build_store(tmp_path / "r.db", *extra, n=12)
    filters = [
        TraceFilter(), TraceFilter(prompt_versions=["v7"]), TraceFilter(since=tie),
        TraceFilter(until="2026-01-01T05:00:00.000001Z"), TraceFilter(search="tie"),
        TraceFilter(since="2026-01-01T03:00:00Z", until="2026-01-01T08:00:00Z", prompt_versions=["support_agent@v7"]),
    ]
    every = [r.id for r in store.iter_traces()]
    assert every[-1] == "trc_no_time" and every.index("trc_tie_c") < every.index("trc_t0005")
    for flt in filters:
        listed = [r.id for r in store.iter_traces(flt)]
        for tid in every:
            expected = listed.index(tid) if tid in listed and tid != "trc_no_time" else None
            assert row_index(store, flt, tid) == expected, (flt, tid)
    assert row_index(store, TraceFilter(), "trc_nope") is None
    store.close()


async def test_back_from_a_trace_opened_by_id_puts_the_cursor_on_it(store: Store, tmp_path: Path) -> None:
    app = make_app(store, trace_id="trc_t0005", page_size=5, evals_dir=tmp_path / "evals")
    async with app.run_test(size=(120, 20)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, TraceViewScreen)
        await pilot.press("escape")
        await settle(pilot)
        t = table(app)
        assert t.selected_trace_id == "trc_t0005" and t.cursor_row == 25  # far past the first page
        assert "trc_t0005" in screen_text(app)
    # A trace the list's filter leaves out: the cursor stays where it was.
    app = make_app(store, trace_id="trc_t0004", flt=TraceFilter(prompt_versions=["v7"]), evals_dir=tmp_path / "evals")
    async with app.run_test(size=(120, 20)) as pilot:
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert table(app).cursor_row == 0 and table(app).selected_trace_id == "trc_7J4k9"


async def test_footer_shows_reload_where_it_fits(store: Store, tmp_path: Path) -> None:
    for width, shown in ((80, False), (99, False), (100, True), (160, True)):
        app = make_app(store, evals_dir=tmp_path / "evals")
        async with app.run_test(size=(width, 20)) as pilot:
            await settle(pilot)
            footer = screen_text(app).splitlines()[-1]
            assert "q Quit" in footer and ("r Reload" in footer) == shown, (width, footer)
            assert "r" in app.screen.active_bindings  # the key works at any width
            await pilot.resize_terminal(180 if not shown else 80, 20)
            await settle(pilot)
            footer = screen_text(app).splitlines()[-1]
            assert ("r Reload" in footer) != shown, (width, footer)


# --------------------------------------------------------------------------- traces written by another process


def newer_trace(i: int, version: str = "v7") -> Trace:
    """A trace newer than every one `build_store` writes (those end on 2026-01-14)."""
    t = make_trace(i, version=version)
    t["id"] = f"trc_live{i:02d}"
    t["started_at"] = t["steps"][0]["started_at"] = f"2026-02-01T00:00:{i:02d}Z"
    t["steps"][0]["ended_at"] = f"2026-02-01T00:00:{i:02d}.500Z"
    return Trace.model_validate(t)


def write_elsewhere(path: Path, *traces: Trace) -> None:
    """Traces written through a connection of their own, as another process (`loupe serve`, an app) would."""
    with Store(path) as other:
        other.insert_traces(traces)


async def wait_for(pilot: Pilot[Any], done: Any, what: str) -> None:
    """Let the app poll the store until `done()` holds; a few seconds at most."""
    for _ in range(100):
        await pilot.pause(0.05)
        if done():
            await settle(pilot)
            return
    raise AssertionError(f"the list never showed {what}")


async def test_new_traces_appear_and_the_selection_stays(store: Store, tmp_path: Path) -> None:
    app = make_app(store, page_size=10, evals_dir=tmp_path / "evals", poll_interval=0.05)
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot)
        await pilot.press("j", "j")
        t = table(app)
        assert t.selected_trace_id == "trc_t0028" and t.cursor_row == 2
        write_elsewhere(store.path, newer_trace(1), newer_trace(2))
        await wait_for(pilot, lambda: t.row_count == 33, "the two new traces")
        assert t.selected_trace_id == "trc_t0028" and t.cursor_row == 4  # the same trace, two rows down
        assert t.scroll_y == 0  # a list at the top stays there, so the new traces show
        assert [t.row(i).id for i in range(2)] == ["trc_live02", "trc_live01"]  # type: ignore[union-attr]
        assert "33 traces" in summary(app)
        text = screen_text(app)
        assert "trc_live02" in text and "trc_live01" in text
        # Nothing new: no refresh, nothing moves.
        await pilot.pause(0.2)
        await settle(pilot)
        assert t.row_count == 33 and t.selected_trace_id == "trc_t0028"


async def test_new_traces_leave_a_scrolled_view_where_it_was(store: Store, tmp_path: Path) -> None:
    app = make_app(store, page_size=5, evals_dir=tmp_path / "evals", poll_interval=0.05)
    async with app.run_test(size=(120, 16)) as pilot:
        await settle(pilot)
        await pilot.press("end", "k", "k")
        await settle(pilot)
        t = table(app)
        assert t.selected_trace_id == "trc_t0002" and t.cursor_row == 28
        before_scroll = int(t.scroll_y)
        assert before_scroll > 0
        def rows_in_view() -> list[str]:
            # The table's rows, without the header, count and footer lines and the scrollbar column.
            return [line[:-1] for line in screen_text(app).splitlines()[3:-1]]

        rows_before = rows_in_view()
        write_elsewhere(store.path, *(newer_trace(i) for i in range(3)))
        await wait_for(pilot, lambda: t.row_count == 34, "the three new traces")
        assert t.selected_trace_id == "trc_t0002" and t.cursor_row == 31
        assert int(t.scroll_y) == before_scroll + 3
        assert rows_in_view() == rows_before  # the rows in view did not move
        assert "34 traces" in summary(app)
        await pilot.press("k")  # the list goes on working from the new place
        assert t.selected_trace_id == "trc_t0003"


async def test_new_traces_outside_the_filter_only_change_the_total(store: Store, tmp_path: Path) -> None:
    flt = TraceFilter(prompt_versions=["v7"])
    app = make_app(store, flt=flt, evals_dir=tmp_path / "evals", poll_interval=0.05)
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot)
        t = table(app)
        assert t.row_count == 11 and "11 of 31 traces match" in summary(app)
        write_elsewhere(store.path, newer_trace(1, version="v5"))
        await wait_for(pilot, lambda: "of 32 traces" in summary(app), "the new total")
        assert t.row_count == 11 and t.selected_trace_id == "trc_7J4k9"
        write_elsewhere(store.path, newer_trace(2, version="v7"))
        await wait_for(pilot, lambda: t.row_count == 12, "the new v7 trace")
        assert "12 of 33 traces match" in summary(app) and t.selected_trace_id == "trc_7J4k9"


async def test_traces_written_while_a_trace_is_open_show_on_return(store: Store, tmp_path: Path) -> None:
    app = make_app(store, evals_dir=tmp_path / "evals", poll_interval=0.05)
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot)
        await pilot.press("j", "enter")
        await settle(pilot)
        assert isinstance(app.screen, TraceViewScreen)
        write_elsewhere(store.path, newer_trace(1))
        await pilot.pause(0.2)
        await pilot.press("escape")
        t = table(app)
        await wait_for(pilot, lambda: t.row_count == 32, "the new trace")
        assert t.selected_trace_id == "trc_t0029" and t.cursor_row == 2


def test_follow_keeps_the_trace_and_the_view() -> None:
    # (cursor, scroll, new index of the selected trace, count, height) -> (cursor, scroll)
    assert follow(2, 0, 4, 33, 20) == (4, 0)  # at the top: stay at the top
    assert follow(28, 10, 31, 34, 20) == (31, 13)  # scrolled: the view moves with the trace
    assert follow(0, 0, 30, 40, 11) == (30, 21)  # pushed out of view: brought back in
    assert follow(5, 3, None, 4, 20) == (3, 0)  # the trace left the list: the nearest row
    assert follow(5, 3, None, 0, 20) == (0, 0)


# --------------------------------------------------------------------------- rules: filter, severity, findings


def _failed_tool_trace(i: int) -> dict[str, Any]:
    """An honest answer after a tool that failed: only `tool-error` (a warning) fires."""
    t = make_trace(i, id=f"trc_warn{i}", output="Sorry, I could not look that up.")
    t["steps"].insert(0, {"id": "t", "type": "tool", "name": "lookup_order", "arguments": {"id": 1},
                          "status": "error", "error": {"type": "timeout", "message": "timed out"}})
    t["steps"][1]["output"] = {"role": "assistant", "content": "Sorry, I could not look that up."}
    return t


def _no_usage_trace(i: int) -> dict[str, Any]:
    """A model call without usage: only `usage-missing` (info) fires."""
    t = make_trace(i, id=f"trc_info{i}")
    del t["steps"][0]["usage"]
    return t


def six_findings_trace() -> dict[str, Any]:
    """The seed with three more failed tools and a last answer without usage: seven findings, and steps that are
    evidence of several of them (s4: three, s3: two)."""
    t = copy.deepcopy(SEED)
    t["id"] = "trc_six"
    last = t["steps"].pop()
    for k, name in enumerate(("lookup_order", "open_ticket", "send_email")):
        t["steps"].append({"id": f"f{k}", "type": "tool", "name": name, "arguments": {"x": k}, "status": "error",
                           "error": {"type": "timeout", "message": f"{name} timed out"},
                           "started_at": f"2026-01-14T10:02:13.{300 + k}Z",
                           "ended_at": f"2026-01-14T10:02:13.{400 + k}Z"})
    del last["usage"]
    t["steps"].append(last)
    return t


def rules_store(path: Path) -> Store:
    return build_store(path, _failed_tool_trace(40), _failed_tool_trace(41), _no_usage_trace(42),
                       six_findings_trace(), n=6)


async def test_rule_filter_picks_one_rule_and_combines_with_findings_only(tmp_path: Path) -> None:
    store = rules_store(tmp_path / "rules.db")
    app = make_app(store, evals_dir=tmp_path / "evals")
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        assert table(app).row_count == 11
        # The key is in the footer, in `?` and in the palette.
        assert "R Rule" in screen_text(app).splitlines()[-1]
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "list: filter by rule" in titles
        await pilot.press("question_mark")
        await pilot.pause()
        assert screen_text(app).count("R Rule") == 2  # the footer and the keys panel
        await pilot.press("question_mark")
        await pilot.press("R")
        await settle(pilot)
        picker = app.screen
        assert isinstance(picker, RulePicker)
        assert picker.values[0] is None  # "All rules"
        options = picker.query_one(OptionList)
        labels = [options.get_option_at_index(i).prompt for i in range(options.option_count)]
        assert all(isinstance(label, Text) for label in labels)  # never markup strings
        shown = {v: labels[i].plain for i, v in enumerate(picker.values)}
        assert set(picker.values) == {None, "success-after-tool-error", "unbacked-action-claim", "tool-error",
                                      "usage-missing"}  # only rules that found something
        assert "4 traces" in shown["tool-error"] and "a tool call failed" in shown["tool-error"]
        assert "2 traces" in shown["unbacked-action-claim"] and "2 traces" in shown["usage-missing"]
        assert picker.values[1] == "tool-error"  # the most traces first
        options.highlighted = picker.values.index("unbacked-action-claim")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TraceListScreen)
        t = table(app)
        assert t.filter.rule == "unbacked-action-claim"
        assert sorted(r.id for r in (t.row(i) for i in range(t.row_count)) if r is not None) == ["trc_7J4k9",
                                                                                                  "trc_six"]
        assert "2 of 11 traces match: rule unbacked-action-claim" in summary(app)
        # `x` still works, and combines.
        await pilot.press("x")
        await settle(pilot)
        assert t.filter.violations and t.filter.rule == "unbacked-action-claim" and t.row_count == 2
        assert "2 of 11 traces match: rule unbacked-action-claim; with findings" in summary(app)
        # The picker opens on the rule in use; escape keeps it.
        await pilot.press("R")
        await settle(pilot)
        picker = app.screen
        assert isinstance(picker, RulePicker)
        assert picker.query_one(OptionList).highlighted == picker.values.index("unbacked-action-claim")
        await pilot.press("escape")
        await settle(pilot)
        assert table(app).filter.rule == "unbacked-action-claim"
        # "All rules" drops it; findings-only stays.
        await pilot.press("R")
        await settle(pilot)
        app.screen.query_one(OptionList).highlighted = 0
        await pilot.press("enter")
        await settle(pilot)
        assert t.filter.rule is None and t.filter.violations and t.row_count == 5
        assert "5 of 11 traces match: with findings" in summary(app)
    store.close()


def test_rule_counts_and_labels_from_the_store(tmp_path: Path) -> None:
    store = rules_store(tmp_path / "rules.db")
    assert rule_trace_counts(store) == [("tool-error", 4), ("success-after-tool-error", 2),
                                        ("unbacked-action-claim", 2), ("usage-missing", 2)]
    label = rule_label("tool-error", 4, 24)
    assert label.plain.startswith("tool-error") and "4 traces" in label.plain and "a tool call failed" in label.plain
    stranger = rule_label(EVIL, 1, 24)  # a rule ID from another version of loupe, as stored
    assert_inert(stranger.plain, shown=False)
    assert "1 trace " in stranger.plain and "does not know" in stranger.plain
    empty = Store(tmp_path / "empty.db")
    assert rule_trace_counts(empty) == []
    empty.close()
    store.close()


async def test_footer_shows_rule_where_it_fits(store: Store, tmp_path: Path) -> None:
    for width, shown in ((80, False), (89, False), (90, True), (100, True)):
        app = make_app(store, evals_dir=tmp_path / "evals")
        async with app.run_test(size=(width, 20)) as pilot:
            await settle(pilot)
            footer = screen_text(app).splitlines()[-1]
            assert "q Quit" in footer and ("R Rule" in footer) == shown, (width, footer)
            assert "R" in app.screen.active_bindings


def test_findings_cell_shows_the_worst_severity() -> None:
    assert findings_cell(2, "error", 8) == ("2 E", SEVERITY_STYLE["error"])
    assert findings_cell(1, "warning", 4) == ("1 W", SEVERITY_STYLE["warning"])
    assert findings_cell(1, "info", 4) == ("1 I", SEVERITY_STYLE["info"])
    assert findings_cell(0, None, 4)[0].strip() == "0" and findings_cell(0, None, 4)[1] == Style(dim=True)
    assert findings_cell(12, "error", 4)[0] == "12 E"
    assert findings_cell(123, "error", 4)[0] == "123E"  # the space goes first, then the letter
    assert findings_cell(12345, "error", 4)[0] == "12345"
    assert findings_cell(1234, "error", 8)[0] == "1,234 E"
    assert SEVERITY_STYLE["error"].color is not None and SEVERITY_STYLE["error"].color.name == "red"
    assert SEVERITY_STYLE["warning"].color is not None and SEVERITY_STYLE["warning"].color.name == "yellow"
    assert SEVERITY_STYLE["info"].color is not None and SEVERITY_STYLE["info"].color.name == "cyan"
    # Up to 99 findings the count and the letter fit at every terminal width.
    for width in range(78, 202):
        col = dict((c.key, w) for c, w in layout_columns(width))["findings"]
        assert findings_cell(99, "warning", col)[0] == "99 W", width


async def test_rows_show_their_worst_severity(tmp_path: Path) -> None:
    store = rules_store(tmp_path / "rules.db")
    for size in ((80, 24), (160, 40)):
        app = make_app(store, evals_dir=tmp_path / "evals")
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            # The last cell of each row (the scrollbar's column left off).
            rows = [(re.search(r"trc_\w+", line), line) for line in screen_text(app).splitlines()]
            cells = {m.group(0): line.rstrip(" ▁▂▃▄▅▆▇█") for m, line in rows if m is not None}
            assert cells["trc_six"].endswith("7 E"), size
            assert cells["trc_7J4k9"].endswith("3 E"), size
            assert cells["trc_warn40"].endswith("1 W"), size
            assert cells["trc_info42"].endswith("1 I"), size
            assert cells["trc_t0005"].endswith(" 0"), size
    store.close()


def _marks(view: TraceViewScreen) -> dict[str, str]:
    """The mark each step's label starts with in the tree ("●", "▶" or " "), by step ID."""
    assert view.stored is not None
    return {view.stored.trace.steps[i].id: str(node.label)[:1] for i, node in view.nodes.items()}


def _cursor_step(view: TraceViewScreen) -> str:
    node = view.query_one(StepTree).cursor_node
    assert node is not None and view.stored is not None
    return "trace" if node.data == -1 else view.stored.trace.steps[node.data].id


async def test_n_walks_every_finding_even_where_they_share_evidence(store: Store, tmp_path: Path) -> None:
    app = make_app(store, trace_id="trc_7J4k9", evals_dir=tmp_path / "evals")
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        view = app.screen
        assert isinstance(view, TraceViewScreen) and view.stored is not None
        rules = [f.rule_id for f in view.stored.findings]
        assert rules == ["success-after-tool-error", "unbacked-action-claim", "tool-error"]
        panel = view.query_one(FindingsPanel)
        text = panel.plain
        for title in ("success claimed after a tool error", "action claimed with no tool call behind it",
                      "a tool call failed"):
            assert title in screen_text(app)
        assert "● error  success claimed after a tool error  (success-after-tool-error)" in text
        assert "● warning  a tool call failed  (tool-error)" in text
        assert "evidence s3, s4  “I've canceled your subscription and processed the refund.”" in text
        assert "evidence s3  “agent role may not issue refunds”" in text
        assert "▶" not in text and view.current is None
        assert _marks(view) == {"s1": " ", "s2": " ", "s3": "●", "s4": "●"}
        # Each n is the next finding: the cursor on its first evidence step, its steps marked ▶ in the tree.
        walk = []
        for _ in range(4):
            await pilot.press("n")
            await pilot.pause()
            current = [line for line in panel.plain.splitlines() if line.startswith("▶")]
            assert len(current) == 1
            walk.append((view.current, _cursor_step(view), current[0], _marks(view)))
        assert walk[0][:2] == (0, "s3") and "success-after-tool-error" in walk[0][2]
        assert walk[0][3] == {"s1": " ", "s2": " ", "s3": "▶", "s4": "▶"}
        assert walk[1][:2] == (1, "s4") and "unbacked-action-claim" in walk[1][2]
        assert walk[1][3] == {"s1": " ", "s2": " ", "s3": "●", "s4": "▶"}
        assert walk[2][:2] == (2, "s3") and "tool-error" in walk[2][2]
        assert walk[2][3] == {"s1": " ", "s2": " ", "s3": "▶", "s4": "●"}
        assert walk[3][:2] == (0, "s3")  # round again
        # The detail of a step cited by two findings says which one is current.
        detail = view.query_one("#step-detail", TextView).plain
        assert "▶ evidence: success claimed after a tool error" in detail
        assert "● evidence: a tool call failed" in detail
        await pilot.press("N")
        await pilot.pause()
        assert (view.current, _cursor_step(view)) == (2, "s3")
        detail = view.query_one("#step-detail", TextView).plain
        assert "● evidence: success claimed after a tool error" in detail
        assert "▶ evidence: a tool call failed" in detail
        # From one finding to another on the same step: the cursor stays, the marks follow.
        await pilot.press("N", "N")
        await pilot.pause()
        assert (view.current, _cursor_step(view)) == (0, "s3")
        await pilot.press("n")
        await pilot.pause()
        assert (view.current, _cursor_step(view)) == (1, "s4")
        assert "▶ evidence: action claimed with no tool call behind it" in view.query_one("#step-detail",
                                                                                             TextView).plain


async def test_rules_that_did_not_run_are_shown_dim_and_not_counted(store: Store, tmp_path: Path) -> None:
    app = make_app(store, trace_id="trc_7J4k9", evals_dir=tmp_path / "evals")
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        view = app.screen
        assert isinstance(view, TraceViewScreen) and view.stored is not None
        text = view.query_one(FindingsPanel).plain
        assert "○ unknown-tool: not run — the trace records no tool definitions" in text
        assert "○ budget-exceeded: not run — no budget configured for prompt support_agent" in text
        assert "3 findings" in str(view.query_one("#trace-totals", Static).render())
        not_run = [r for r in view.stored.rule_runs if not r.ran]
        assert len(not_run) == 4
        line = not_run_line(not_run[0])
        assert line.style == "dim" and not line.spans  # dimmed as a whole
        await pilot.press("n", "n", "n", "n")  # n walks the findings, never the rules that did not run
        assert view.current == 0


@pytest.mark.parametrize("size", [(140, 40), (80, 24)])
async def test_six_findings_are_all_reachable(size: tuple[int, int], tmp_path: Path) -> None:
    store = rules_store(tmp_path / "rules.db")
    app = make_app(store, trace_id="trc_six", evals_dir=tmp_path / "evals")
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        view = app.screen
        assert isinstance(view, TraceViewScreen) and view.stored is not None
        findings = view.stored.findings
        assert len(findings) == 7
        panel = view.query_one(FindingsPanel)
        assert panel.size.height <= max(9, size[1] // 3) - 1  # capped; the rest scrolls
        assert panel.virtual_size.height > panel.size.height
        tree = view.query_one(StepTree)
        assert tree.size.height >= 5  # the steps keep room
        for i, f in enumerate(findings):
            await pilot.press("n")
            await pilot.pause()
            assert view.current == i
            first, _ = panel.block_lines(i)
            top = int(panel.scroll_y)
            assert top <= first < top + panel.size.height, (i, first, top)
            screen = screen_text(app)
            assert re.search(r"▶ ● " + f.severity, screen), (i, screen)
            assert _cursor_step(view) == f.evidence[0]
            assert _marks(view)[f.evidence[0]] == "▶"
        # The panel scrolls on its own too: focused, it takes the arrow keys; a click picks a finding.
        panel.focus()
        await pilot.press("home")
        await pilot.pause()
        assert panel.scroll_y == 0
        await pilot.press("end")
        await pilot.pause()
        assert panel.scroll_y == panel.max_scroll_y > 0
        assert "not run" in screen_text(app)
        await pilot.press("home")
        await pilot.pause()
        await pilot.click(FindingsPanel, offset=(10, panel.block_lines(1)[0]))
        await pilot.pause()
        assert view.current == 1 and _cursor_step(view) == "s4"
        assert app.focused is tree
    store.close()


def test_findings_panel_wraps_with_a_hanging_indent() -> None:
    console = Console(width=200)
    line = Text("  ○ budget-exceeded: not run — no budget configured for prompt support_agent", style="dim")
    lines = hanging_wrap(line, console, 40, 0, 4)
    assert [x.plain.rstrip() for x in lines] == ["  ○ budget-exceeded: not run — no budget",
                                                 "    configured for prompt support_agent"]
    assert all(x.style == "dim" for x in lines)  # the wrapped lines stay dimmed
    body = Text("one two three\nevidence s3")
    body.stylize("bold", 0, 3)
    lines = hanging_wrap(body, console, 12, 4, 4)
    assert [x.plain.rstrip() for x in lines] == ["    one two", "    three", "    evidence", "    s3"]
    assert lines[0].spans[0].start == 4 and lines[0].spans[0].end == 7


async def test_rule_picker_options_stay_one_line_on_a_narrow_screen(tmp_path: Path) -> None:
    store = rules_store(tmp_path / "rules.db")
    app = make_app(store, evals_dir=tmp_path / "evals")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("R")
        await settle(pilot)
        await pilot.pause()
        options = app.screen.query_one(OptionList)
        assert options.option_count == 5
        assert options.virtual_size.height == options.option_count  # no option wrapped onto a second line
        text = screen_text(app)
        assert "success-after-tool-error      2 traces  success claimed after a tool" in text
        await pilot.resize_terminal(140, 24)
        await settle(pilot)
        await pilot.pause()
        assert "success-after-tool-error      2 traces  success claimed after a tool error" in screen_text(app)
    store.close()
