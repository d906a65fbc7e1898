"""Hostile structure (issue 8): orphans, cycles, duplicate span IDs, one span ID in two traces, no root, tool results
of every JSON type, arguments that are not JSON or not an object. Every step kept and shown; nothing loops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from store.db import Store
from store.importers.base import validate_trace
from tests.fixtures.hostile.traces import llm, show_json, show_text, store_traces, tool, trace


def _ids(db: Path, tid: str) -> list[str]:
    return [s["id"] for s in show_json(db, tid)["steps"]]


STRUCTURES: dict[str, tuple[list[dict[str, Any]], list[str]]] = {
    "orphans": ([tool("a", parent_id="gone"), tool("b", parent_id="a"), tool("c", parent_id="also-gone")],
                ["a", "b", "c"]),
    "two-step cycle": ([tool("a", parent_id="b"), tool("b", parent_id="a")], ["a", "b"]),
    "three-step cycle": ([tool("a", parent_id="c"), tool("b", parent_id="a"), tool("c", parent_id="b")],
                         ["a", "b", "c"]),
    "own parent": ([tool("a", parent_id="a"), tool("b", parent_id="a")], ["a", "b"]),
    "no root": ([tool("a", parent_id="x"), tool("b", parent_id="y")], ["a", "b"]),
    "duplicate IDs": ([tool("a", result=1), tool("a", result=2), tool("a", result=3, parent_id="a")],
                      ["a", "a#1", "a#2"]),
}


@pytest.mark.parametrize("case", list(STRUCTURES))
def test_every_step_is_kept_and_shown_once(tmp_path: Path, case: str) -> None:
    steps, ids = STRUCTURES[case]
    db = tmp_path / "s.db"
    store, _ = store_traces(db, trace("trc_s", steps))
    stored = store.get_trace("trc_s")
    store.close()
    assert [s.id for s in stored.trace.steps] == ids
    assert stored.totals.steps == len(ids)
    assert _ids(db, "trc_s") == ids
    out = show_text(db, "trc_s")
    tree = out.split("steps\n", 1)[1].split("─ step ", 1)[0]  # the step tree, before the per-step details
    assert tree.count("tool lookup_order") == len(ids), tree
    if case in ("orphans", "no root"):
        assert "[missing parent gone]" in out or "[missing parent x]" in out


def test_duplicate_ids_are_renamed_and_noted_not_dropped(tmp_path: Path) -> None:
    steps, _ = STRUCTURES["duplicate IDs"]
    store, problems = store_traces(tmp_path / "d.db", trace("trc_d", steps))
    stored = store.get_trace("trc_d")
    store.close()
    assert [s.result for s in stored.trace.steps] == [1, 2, 3]
    assert [s.metadata.get("original_id") for s in stored.trace.steps] == [None, "a", "a"]
    assert [p.field for p in problems] == ["steps.1.id", "steps.2.id"]


def test_the_same_span_id_in_two_traces_stays_in_each(tmp_path: Path) -> None:
    db = tmp_path / "two.db"
    store, _ = store_traces(db, trace("trc_one", [tool("s1", result="first")]),
                            trace("trc_two", [tool("s1", result="second")]))
    assert store.get_trace("trc_one").trace.steps[0].result == "first"
    assert store.get_trace("trc_two").trace.steps[0].result == "second"
    store.close()


def test_a_cycle_split_over_two_parts_merges_and_terminates(tmp_path: Path) -> None:
    """Span-based sources merge parts span by span; a cycle across the parts must not loop the merge or totals."""
    store = Store(tmp_path / "m.db")
    parts = []
    for steps in ([llm("a", parent_id="b")], [llm("b", parent_id="a"), tool("c", parent_id="zzz")]):
        t = validate_trace(trace("trc_m", steps), "f", 1, [])
        assert t is not None
        t.merge = True
        parts.append(t)
    store.insert_traces(parts[:1])
    store.insert_traces(parts[1:])
    stored = store.get_trace("trc_m")
    store.close()
    assert sorted(s.id for s in stored.trace.steps) == ["a", "b", "c"]
    assert stored.totals.input_tokens == 2000  # both model calls counted once, the cycle notwithstanding


TOOL_RESULTS: list[Any] = [{"k": [1, {"x": None}]}, [1, "two", None], 42, 3.5, None, True, "", "text", []]


@pytest.mark.parametrize("result", TOOL_RESULTS, ids=[repr(r) for r in TOOL_RESULTS])
def test_tool_results_of_every_json_type_are_kept_as_given(tmp_path: Path, result: Any) -> None:
    db = tmp_path / "r.db"
    store, problems = store_traces(db, trace("trc_r", [tool("a", result=result)]))
    store.close()
    assert problems == []
    step = show_json(db, "trc_r")["steps"][0]
    assert step.get("result") == result
    out = show_text(db, "trc_r")
    assert "── result" in out
    if result is None:
        assert "(none recorded)" in out.split("── result", 1)[1]


ARGUMENTS: dict[str, tuple[Any, bool]] = {
    "object": ({"order": "A1"}, False),
    "JSON text of an object": ('{"order": "A1"}', False),
    "not JSON": ('{"order": "A1"', True),
    "JSON list": ("[1, 2]", True),
    "list": ([1, 2], True),
    "number": (42, True),
    "string": ("A1", True),
}


@pytest.mark.parametrize("case", list(ARGUMENTS))
def test_arguments_that_are_not_an_object_are_kept_and_flagged(tmp_path: Path, case: str) -> None:
    args, malformed = ARGUMENTS[case]
    call = {"id": "call_1", "name": "lookup_order", "arguments": args}
    steps = [llm("m", output={"role": "assistant", "content": None, "tool_calls": [call]}),
             tool("t", arguments=args, tool_call_id="call_1")]
    db = tmp_path / "a.db"
    store, problems = store_traces(db, trace("trc_a", steps))
    stored = store.get_trace("trc_a")
    store.close()
    assert problems == [] and len(stored.trace.steps) == 2
    assert stored.trace.steps[1].arguments == args
    rules = [f.rule_id for f in stored.findings]
    assert ("malformed-tool-arguments" in rules) == malformed, rules
    assert show_json(db, "trc_a")["steps"][1]["arguments"] == args


def test_native_parent_loops_are_cut_and_marked(tmp_path: Path) -> None:
    from store.models import Trace
    from tui.trace_text import step_label

    data = {"id": "cyc", "steps": [
        {"id": "s1", "parent_id": "s2", "type": "llm", "name": "a"},
        {"id": "s2", "parent_id": "s1", "type": "tool", "name": "b"},
        {"id": "s3", "parent_id": "s3", "type": "tool", "name": "self"},
        {"id": "s4", "parent_id": "s1", "type": "tool", "name": "child"}]}
    trace = validate_trace(data, "cyc.jsonl", 1, [])
    by_id = {s.id: s for s in trace.steps}
    assert by_id["s1"].parent_id is None and by_id["s1"].metadata["cyclic_parent_id"] == "s2"
    assert by_id["s2"].parent_id == "s1"  # one cut per loop: the rest hangs from the cut step
    assert by_id["s3"].parent_id is None and by_id["s3"].metadata["cyclic_parent_id"] == "s3"
    assert by_id["s4"].parent_id == "s1"  # not in the loop: its link stays
    assert any("lead back to it" in p for p in trace.problems) and not trace.partial
    assert "parent loop via s2" in step_label(by_id["s1"], None, evidence=False).plain
    with Store(tmp_path / "c.db") as store:
        store.insert_traces([Trace.model_validate(trace.model_dump())])
        assert len(store.get_trace("cyc").trace.steps) == 4
