"""Property tests (issue 8): generated and mutated traces fed to every importer (native, OTLP JSON, Langfuse,
OpenInference/Phoenix) and to the renderers. No exception escapes; tokens are never negative, costs are unknown or
at least 0, and the steps stored are the unique span IDs given."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from store.db import Store, StoredTrace
from store.importers import ingest_paths
from tests.fixtures.hostile.traces import TEXT, unsafe_in
from tui.render import build_step_tree, summary_line, trace_json
from tui.trace_text import findings_blocks, render_step, render_trace, step_label, totals_text

# Modest budgets, derandomized: the same examples on every run, in well under a minute on two cores.
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from([TEXT, "", " ", "[bold]", "\x1b[2J", "\ud800", "\u202e", "3", "v3", "gpt-4o", "GPT-4O-MINI",
                     "openai/gpt-4o", "12suffix", "null", "{", "I've issued the refund."]),
)
numbers = st.one_of(st.none(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["12", "-3", "1e3", "$0.5", "NaN", "", True]))
json_values = st.recursive(st.one_of(st.none(), st.booleans(), numbers, texts),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(texts, inner, max_size=3)), max_leaves=8)
times = st.one_of(st.none(), st.sampled_from(["2026-02-01T00:00:00Z", "2026-02-01T00:00:01", "9999-01-01T00:00:00Z",
                                              "nonsense", 0, 1_769_904_000, 1_769_904_000_000_000_000, -1]),
                  st.integers(-10**19, 10**19))


@st.composite
def step_ids(draw: st.DrawFn) -> list[str]:
    return draw(st.lists(st.text(alphabet="abcdef0123456789", min_size=1, max_size=6), min_size=0, max_size=8,
                         unique=True))


@st.composite
def native_traces(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    ids = draw(step_ids())
    steps = []
    for sid in ids:
        step: dict[str, Any] = {"id": sid, "type": draw(st.sampled_from(["llm", "tool", "agent", "bogus", 7]))}
        step["parent_id"] = draw(st.one_of(st.none(), st.sampled_from(ids), texts))
        step["model"] = draw(st.one_of(st.none(), texts))
        step["usage"] = draw(st.one_of(st.none(), json_values, st.fixed_dictionaries(
            {}, optional={"input_tokens": numbers, "output_tokens": numbers, "cache_read_tokens": numbers,
                          "reasoning_tokens": numbers})))
        step["cost"] = draw(numbers)
        step["started_at"], step["ended_at"] = draw(times), draw(times)
        step["arguments"], step["result"] = draw(json_values), draw(json_values)
        step["output"] = draw(st.one_of(json_values, st.fixed_dictionaries({"role": texts, "content": json_values})))
        step["messages"] = draw(st.one_of(json_values, st.lists(st.fixed_dictionaries(
            {"role": texts}, optional={"content": json_values}), max_size=3)))
        step["status"] = draw(st.one_of(st.none(), st.sampled_from(["ok", "error", "failed", "weird"]), json_values))
        for key in draw(st.lists(st.sampled_from(sorted(step)), max_size=3)):  # mutations: fields removed
            if key not in ("id", "type"):
                step.pop(key, None)
        steps.append(step)
    data = {"id": draw(st.text(alphabet="xyz0123456789", min_size=1, max_size=8)), "steps": steps,
            "prompt": draw(st.one_of(st.none(), texts, st.fixed_dictionaries({}, optional={
                "name": texts, "version": st.one_of(numbers, texts)}))),
            "input": draw(json_values), "output": draw(json_values), "started_at": draw(times)}
    return data, len(ids)


def _check_stored(store: Store, expected_steps: dict[str, int] | None) -> None:
    """The invariants over every trace in the store, and every renderer run over each."""
    total_steps = 0
    for row in store.iter_traces():
        stored = store.get_trace(row.id)
        total_steps += len(stored.trace.steps)
        if expected_steps is not None and row.id in expected_steps:
            assert len(stored.trace.steps) == expected_steps[row.id]
        t = stored.totals
        for value in (t.input_tokens, t.output_tokens, t.cache_read_tokens, t.reasoning_tokens, row.input_tokens,
                      row.output_tokens):
            assert value is None or value >= 0
        assert t.cost is None or t.cost >= 0
        for step in stored.trace.steps:
            if step.usage is not None:
                for n in (step.usage.input_tokens, step.usage.output_tokens, step.usage.cache_read_tokens):
                    assert n is None or n >= 0
            cost = stored.costs.get(step.id)
            if cost is not None:
                assert cost.computed is None or cost.computed >= 0
                assert cost.reported is None or cost.reported >= 0
        _render(stored, row)


def _render(stored: StoredTrace, row: Any) -> None:
    console = Console(file=io.StringIO(), width=100, color_system=None)
    pieces = [totals_text(stored), render_trace(stored), summary_line(row)]
    for step in stored.trace.steps:
        cost = stored.costs.get(step.id)
        pieces += [step_label(step, cost, evidence=True), render_step(step, cost, stored.findings, 0)]
    for piece in pieces:
        assert unsafe_in(piece.plain) == []
        console.print(piece)
    for block in findings_blocks(stored.findings, stored.rule_runs, 0):
        for text, _, _ in block:
            assert unsafe_in(text.plain) == []
    from rich.tree import Tree

    tree = Tree("steps")
    build_step_tree(stored, tree, set())
    console.print(tree)
    json.dumps(trace_json(stored), ensure_ascii=True)


def _ingest(files: dict[str, Any], fmt: str = "auto") -> Iterator[Store]:
    """The files written to a temporary folder and ingested into a fresh store, as `loupe ingest` does."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, content in files.items():
            path = Path(tmp) / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8", errors="surrogatepass")
            paths.append(path)
        store = Store(Path(tmp) / "p.db")
        try:
            ingest_paths(store, paths, fmt)  # problems are reported, never raised
            yield store
        finally:
            store.close()


@PROPERTY
@given(st.lists(native_traces(), min_size=1, max_size=3))
def test_native_import_and_renderers(traces: list[tuple[dict[str, Any], int]]) -> None:
    lines = "\n".join(json.dumps(t) for t, _ in traces) + "\n"
    expected = {t["id"]: n for t, n in traces}  # the last line of an ID wins: it replaces the trace
    for store in _ingest({"traces.jsonl": lines}, "native"):
        assert {r.id for r in store.iter_traces()} == set(expected)
        _check_stored(store, expected)


@PROPERTY
@given(native_traces(), st.integers(0, 400), st.binary(max_size=20))
def test_native_files_cut_or_corrupted_anywhere(trace: tuple[dict[str, Any], int], cut: int, junk: bytes) -> None:
    text = json.dumps([trace[0], trace[0]]).encode("utf-8", errors="surrogatepass")
    broken = text[: len(text) * cut // 400] + junk
    for store in _ingest({"cut.json": broken, "ok.jsonl": json.dumps(trace[0]) + "\n"}):
        assert trace[0]["id"] in {r.id for r in store.iter_traces()}  # the readable file is imported
        _check_stored(store, {trace[0]["id"]: trace[1]})


def _any_value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v if v == v and abs(v) != float("inf") else str(v)}
    if isinstance(v, list):
        return {"arrayValue": {"values": [_any_value(x) for x in v]}}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": [{"key": str(k), "value": _any_value(x)} for k, x in v.items()]}}
    return {"stringValue": "" if v is None else str(v)}


ATTRIBUTE_KEYS = ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.request.model",
                  "gen_ai.response.model", "gen_ai.system", "gen_ai.operation.name", "gen_ai.prompt.version",
                  "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.name", "llm.token_count.prompt",
                  "llm.token_count.completion", "llm.model_name", "openinference.span.kind", "input.value",
                  "output.value", "gen_ai.usage.cache_read.input_tokens", "gen_ai.prompt.0.content"]


@st.composite
def otlp_requests(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, int]]:
    spans = []
    expected: dict[str, int] = {}
    for trace_no in range(draw(st.integers(1, 2))):
        trace_id = f"{trace_no + 1:032x}"
        ids = draw(st.lists(st.integers(1, 2**63), max_size=6, unique=True))
        expected[trace_id] = len(ids)
        span_ids = [f"{i:016x}" for i in ids]
        for sid in span_ids:
            attrs = draw(st.dictionaries(st.sampled_from(ATTRIBUTE_KEYS), json_values, max_size=5))
            span: dict[str, Any] = {
                "traceId": trace_id, "spanId": sid, "name": draw(texts),
                "parentSpanId": draw(st.one_of(st.just(""), st.sampled_from(span_ids), st.just("ffffffffffffffff"))),
                "startTimeUnixNano": str(draw(st.integers(0, 2 * 10**18))),
                "endTimeUnixNano": draw(st.one_of(st.integers(0, 2 * 10**18).map(str), texts)),
                "attributes": [{"key": k, "value": _any_value(v)} for k, v in attrs.items()],
                "status": draw(st.one_of(st.just({}), st.fixed_dictionaries({"code": st.sampled_from([0, 1, 2, 9])}))),
            }
            spans.append(span)
    request = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"scope": {}, "spans": spans}]}]}
    return request, expected


@PROPERTY
@given(otlp_requests())
def test_otlp_json_import_and_renderers(case: tuple[dict[str, Any], dict[str, int]]) -> None:
    request, expected = case
    for store in _ingest({"spans.json": json.dumps(request)}, "otlp"):
        _check_stored(store, None)
        stored = {r.id: r.steps for r in store.iter_traces()}
        # Every span given is one step, in whichever trace the importer keyed it by.
        assert sum(stored.values()) == sum(expected.values())


@st.composite
def phoenix_spans(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int]:
    ids = draw(st.lists(st.integers(1, 2**63), max_size=6, unique=True))
    hex_ids = [f"{i:016x}" for i in ids]
    records = []
    for sid in hex_ids:
        records.append({
            "name": draw(texts), "span_kind": draw(st.sampled_from(["LLM", "TOOL", "CHAIN", "AGENT", "??"])),
            "context": {"trace_id": "ab" * 16, "span_id": sid},
            "parent_id": draw(st.one_of(st.none(), st.sampled_from(hex_ids), st.just("0" * 16))),
            "start_time": draw(times), "end_time": draw(times),
            "status_code": draw(st.sampled_from(["OK", "ERROR", "UNSET", ""])),
            "attributes": draw(st.dictionaries(st.sampled_from(ATTRIBUTE_KEYS), json_values, max_size=5)),
        })
    return records, len(ids)


@PROPERTY
@given(phoenix_spans())
def test_openinference_import_and_renderers(case: tuple[list[dict[str, Any]], int]) -> None:
    records, n = case
    for store in _ingest({"phoenix.json": json.dumps(records)}, "openinference"):
        _check_stored(store, None)
        assert sum(r.steps for r in store.iter_traces()) == n


@st.composite
def langfuse_exports(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    ids = draw(st.lists(st.text(alphabet="0123456789abcdef", min_size=4, max_size=8), max_size=6, unique=True))
    observations = []
    for oid in ids:
        obs: dict[str, Any] = {
            "id": oid, "traceId": "t-1", "type": draw(st.sampled_from(["GENERATION", "SPAN", "EVENT", "TOOL", "x"])),
            "name": draw(texts), "parentObservationId": draw(st.one_of(st.none(), st.sampled_from(ids), texts)),
            "startTime": draw(times), "endTime": draw(times), "model": draw(st.one_of(st.none(), texts)),
            "input": draw(json_values), "output": draw(json_values), "level": draw(st.sampled_from(
                ["DEFAULT", "ERROR", "WARNING", None])),
            "usageDetails": draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(
                ["input", "output", "total", "input_cached_tokens", "output_reasoning_tokens"]), numbers,
                max_size=4))),
            "costDetails": draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(["input", "output", "total"]),
                                                                      numbers, max_size=3))),
        }
        observations.append(obs)
    export = {"trace": {"id": "t-1", "name": draw(texts), "timestamp": draw(times), "input": draw(json_values),
                        "metadata": draw(st.one_of(st.none(), json_values))},
              "observations": observations}
    return export, len(ids)


@PROPERTY
@given(langfuse_exports())
def test_langfuse_import_and_renderers(case: tuple[dict[str, Any], int]) -> None:
    export, n = case
    for store in _ingest({"langfuse.json": json.dumps(export)}, "langfuse"):
        _check_stored(store, None)
        rows = list(store.iter_traces())
        assert len(rows) == 1
        assert rows[0].steps >= n  # each observation a step (an EVENT may add none, a trace-level one may add one)
