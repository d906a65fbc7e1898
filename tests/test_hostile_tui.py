"""A Pilot test per hostile trace (issue 8): the TUI opens it, stays running, shows the literal text, and no escape
sequence reaches the screen; the version picker counts hostile versions without dropping a trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import OptionList

from tests.fixtures.hostile.traces import TEXT_SHOWN, llm, store_traces, text_trace, tool, trace, unsafe_in
from tui.app import LoupeApp, make_app
from tui.screens.trace_view import TraceViewScreen
from tui.screens.version_picker import VersionPicker
from tui.widgets.text_view import TextView

# Each hostile trace with the text that must be on screen when it is open (its tree, totals or a step's detail).
HOSTILE: dict[str, tuple[dict[str, Any], list[str]]] = {
    "text": (text_trace("trc_text"), list(TEXT_SHOWN)),
    "zero usage": (trace("trc_zero", [llm("a", usage={"input_tokens": 0, "output_tokens": 0})]),
                   ["(usage-missing)", "0 output tokens reported"]),
    "negative usage, string cost": (trace("trc_neg", [llm("a", usage={"input_tokens": -5, "output_tokens": 3},
                                                          cost="0.5")]), ["PARTIAL TRACE", "$0.500"]),
    "unknown model": (trace("trc_model", [llm("a", model="prod-deployment-7", provider="azure")]),
                      ["no price for model prod-deployment-7", "cost ?"]),
    "cycle and orphan": (trace("trc_cycle", [tool("a", parent_id="b"), tool("b", parent_id="a"),
                                             tool("c", parent_id="gone")]), ["[missing parent gone]"]),
    "duplicate IDs": (trace("trc_dup", [tool("a"), tool("a")]), ["a#1"]),
    "odd results": (trace("trc_res", [tool("a", result=None), tool("b", result=[1, None]), tool("c", result=7),
                                      tool("d", arguments="{not json", result={"k": "v"})]),
                    ["malformed-tool-arguments", "{not json"]),
    "bad times": (trace("trc_time", [tool("a", started_at="2026-02-01T00:00:05Z", ended_at="2026-02-01T00:00:01Z"),
                                     tool("b", started_at=0, ended_at="9999-01-01T00:00:00Z")]), ["clock skew"]),
    "odd version": (trace("trc_ver", [tool("a")], prompt={"name": "agent", "version": "12suffix"}),
                    ["agent@12suffix"]),
}


def screen_text(app: LoupeApp) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def _open(app: LoupeApp, pilot: Any) -> TraceViewScreen:
    for _ in range(200):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if isinstance(app.screen, TraceViewScreen) and app.screen.stored is not None:
            return app.screen
    raise AssertionError("the trace did not open")


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_each_hostile_trace_opens_and_shows_its_literal_text(tmp_path: Path, case: str) -> None:
    data, expected = HOSTILE[case]
    store, _ = store_traces(tmp_path / "h.db", data)
    app = make_app(store, trace_id=data["id"], evals_dir=tmp_path / "evals")
    async with app.run_test(size=(200, 50)) as pilot:
        view = await _open(app, pilot)
        seen = [screen_text(app)]
        tree = view.step_tree
        for index in [-1, *view.nodes]:  # the trace itself, then every step
            if index == -1:
                tree.move_cursor(tree.root)
            else:
                view._move_to_step(index)
            await pilot.pause()
            detail = view.query_one("#step-detail", TextView).plain
            assert unsafe_in(detail) == [], (index, unsafe_in(detail))
            seen += [detail, screen_text(app)]
        shown = "\n".join(seen)
        assert unsafe_in(shown) == []
        for piece in expected:
            assert piece in shown, piece
        await pilot.press("r")  # the raw JSON of the last step, then back, then the keys a user would try
        await pilot.pause()
        assert unsafe_in(screen_text(app)) == []
        await pilot.press("escape", "n", "e", "y", "escape")
        for _ in range(5):
            await app.workers.wait_for_complete()
            await pilot.pause()
        assert app.is_running and app.return_code is None
        for note in app._notifications:
            assert unsafe_in(note.message) == []
    store.close()


async def test_the_version_picker_counts_every_hostile_version(tmp_path: Path) -> None:
    traces = [trace(f"trc_{i}", [tool("a")], prompt={"name": "agent", "version": v},
                    started_at=f"2026-02-01T00:00:{i:02d}Z")
              for i, v in enumerate([3, "3", "3.0", "v3", "12suffix", None, ""])]
    store, _ = store_traces(tmp_path / "v.db", *traces)
    app = make_app(store, evals_dir=tmp_path / "evals")
    async with app.run_test(size=(160, 40)) as pilot:
        for _ in range(5):
            await app.workers.wait_for_complete()
            await pilot.pause()
        await pilot.press("v")
        for _ in range(5):
            await app.workers.wait_for_complete()
            await pilot.pause()
        assert isinstance(app.screen, VersionPicker)
        options = app.screen.query_one(OptionList)
        labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        text = "\n".join(labels)
        counts = {label.rsplit(None, 2)[0]: label.rsplit(None, 2)[1] for label in labels
                  if label.startswith("agent@")}
        assert counts == {"agent@3": "2", "agent@3.0": "1", "agent@v3": "1", "agent@12suffix": "1",
                          "agent@(no version)": "2"}, labels
        assert sum(int(c) for c in counts.values()) == len(traces)
        assert "\x1b" not in text
    store.close()
