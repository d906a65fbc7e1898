"""The OTLP/JSON importer: real exports from three instrumentations, a Collector dump, and broken input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from store.db import Store
from store.importers import ingest_paths
from store.importers.base import ImportResult
from store.importers.otlp import map_attributes, read_otlp, step_from_attributes
from store.models import Trace
from tests.conftest import REAL, needs_real

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def read(path: Path) -> tuple[list[Trace], ImportResult]:
    result = ImportResult()
    return list(read_otlp(path, result)), result


def attr(key: str, value: Any) -> dict[str, Any]:
    """An OTLP key/value pair, with integers as strings the way protobuf JSON writes them."""
    if isinstance(value, bool):
        v: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    else:
        v = {"stringValue": value}
    return {"key": key, "value": v}


def span(span_id: str | None, name: str, attrs: dict[str, Any] | None = None, *, parent: str = "",
         start: int = 1_788_789_263_000_000_000, trace_id: str = TRACE_ID, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": trace_id, "parentSpanId": parent, "name": name, "kind": 3,
        "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 5_000_000),
        "attributes": [attr(k, v) for k, v in (attrs or {}).items()], "status": {},
    }
    if span_id is not None:
        out["spanId"] = span_id
    out.update(extra)
    return out


def request(*spans: dict[str, Any], service: str = "app") -> dict[str, Any]:
    return {"resourceSpans": [{
        "resource": {"attributes": [attr("service.name", service)]},
        "scopeSpans": [{"scope": {"name": "test.scope", "version": "1.0"}, "spans": list(spans)}],
    }]}


def write_lines(path: Path, *docs: Any) -> Path:
    path.write_text("".join((d if isinstance(d, str) else json.dumps(d)) + "\n" for d in docs), encoding="utf-8")
    return path


# --- real files ------------------------------------------------------------------------------------------------


@needs_real
def test_openllmetry_export_maps_workflow_and_chat_span() -> None:
    traces, result = read(REAL / "genai-interlingua" / "openllmetry" / "in.json")
    assert result.problems == []
    assert len(traces) == 1
    trace = traces[0]
    assert trace.id == "77d66be22a4ffc8149309684b3a319f7"
    assert trace.name == "support_triage.workflow"
    assert [s.name for s in trace.steps] == ["support_triage.workflow", "openai.chat"]
    root, chat = trace.steps
    assert (root.type, root.parent_id) == ("chain", None)
    assert chat.type == "llm" and chat.parent_id == root.id == "aaa24d5a6cca68bf"
    assert chat.model == "gpt-4o-mini-2024-07-18" and chat.provider == "openai"
    assert chat.usage is not None
    assert (chat.usage.input_tokens, chat.usage.cache_read_tokens, chat.usage.output_tokens,
            chat.usage.reasoning_tokens) == (412, 256, 27, 8)
    assert chat.usage.extra == {"total_tokens": 439}
    assert [(m.role, m.text()) for m in chat.messages] == [
        ("system", "You are a support agent. Use the tools you are given."), ("user", "Where is order A-1187?")]
    out = chat.output_message
    assert out is not None and out.role == "assistant"
    assert [(c.name, c.arguments) for c in out.tool_calls] == [("lookup_order", {"order_id": "A-1187"})]
    assert chat.params["temperature"] == 0.7 and chat.params["max_tokens"] == 1024
    assert [t["name"] for t in chat.metadata["tool_definitions"]] == ["lookup_order"]
    # What no native field holds is kept, not dropped.
    assert chat.metadata["attributes"]["gen_ai.response.id"] == "chatcmpl-CD8yqQ2y3kZs1o0Wm7bT"
    assert chat.metadata["span_kind"] == "client"
    assert chat.metadata["scope"] == {"name": "opentelemetry.instrumentation.openai.v1", "version": "0.62.3"}
    assert "traceloop.entity.output" in root.metadata["attributes"]
    assert trace.metadata["resource"]["service.name"] == "capture"
    assert trace.input == "Where is order A-1187?"
    assert trace.output is None  # the model answered with a tool call, not text
    assert trace.started_at == root.started_at and trace.source.endswith("in.json")


@needs_real
def test_openinference_export_maps_flattened_messages() -> None:
    traces, result = read(REAL / "genai-interlingua" / "openinference" / "in.json")
    assert result.problems == []
    assert [t.id for t in traces] == ["9ed94f9bdc36b397e11c51f77d49e01a"]
    (step,) = traces[0].steps
    assert step.type == "llm" and step.status == "ok"
    assert step.model == "gpt-4o-mini-2024-07-18" and step.provider == "openai"
    assert step.usage is not None
    assert (step.usage.input_tokens, step.usage.cache_read_tokens, step.usage.output_tokens,
            step.usage.reasoning_tokens) == (412, 256, 27, 8)
    assert step.usage.extra["total"] == 439
    assert [m.role for m in step.messages] == ["system", "user"]
    out = step.output_message
    assert out is not None
    assert [(c.id, c.name, c.arguments) for c in out.tool_calls] == [
        ("call_9RtYbK2mXqLp", "lookup_order", {"order_id": "A-1187"})]
    assert step.params["temperature"] == 0.7
    assert step.metadata["tool_definitions"][0]["function"]["name"] == "lookup_order"
    assert "input.value" in step.metadata["attributes"]


@needs_real
def test_collector_dump_imports_plain_spans_and_skips_logs_and_metrics() -> None:
    traces, result = read(REAL / "otel-tui" / "test_data.excerpt.jsonl")
    assert result.problems == []
    assert len(traces) == 21
    steps = [s for t in traces for s in t.steps]
    assert len(steps) == 56
    assert sum(s.status == "error" for s in steps) == 8
    assert result.skipped["logs, not traces"] == 1 and result.skipped["metrics, not traces"] == 1
    assert {s.type for s in steps} == {"other"}
    assert all(s.metadata["attributes"] for s in steps)
    # Spans of one trace arrive on different lines and end up in one trace, parents before children.
    ads = next(t for t in traces if t.id.startswith("ee130ea9"))
    assert len(ads.steps) == 7
    seen: set[str] = set()
    for s in ads.steps:
        assert s.parent_id is None or s.parent_id in seen
        seen.add(s.id)
    # An exception event says what went wrong.
    failed = [s for s in steps if s.error is not None]
    assert failed and all(s.error.message for s in failed)


@needs_real
def test_flat_attribute_maps_of_both_conventions_give_the_same_llm_step() -> None:
    folder = REAL / "openinference-genai"
    for name in ("otel_genai_client_span_tool_calls.json", "openinference_client_span_tool_calls.json"):
        attributes = json.loads((folder / name).read_text(encoding="utf-8"))
        step = step_from_attributes(attributes, id="s1", name="chat")
        assert step.type == "llm", name
        assert step.model == "gpt-4-0613" and step.provider == "openai", name
        assert step.usage is not None and (step.usage.input_tokens, step.usage.output_tokens) == (97, 52), name
        assert [m.role for m in step.messages] == ["user", "assistant", "tool"], name
        call = step.messages[1].tool_calls[0]
        assert (call.id, call.name, call.arguments) == ("1234", "get_weather", {"location": "Paris"}), name
        assert step.messages[1].text() == "Absolutely! Let me check the weather for you.", name
        assert (step.messages[2].tool_call_id, step.messages[2].text()) == ("1234", "rainy, 57°F"), name
        out = step.output_message
        assert out is not None and out.text().startswith("The weather in Paris is currently rainy"), name
        assert step.params["temperature"] == 0.5, name


@needs_real
def test_flat_tool_execution_span() -> None:
    attributes = json.loads((REAL / "openinference-genai" / "otel_genai_tool_execution_span.json").read_text())
    step = step_from_attributes(attributes, id="t1", name="execute_tool get_weather")
    assert (step.type, step.name, step.tool_call_id) == ("tool", "get_weather", "1234")
    assert step.metadata["span_name"] == "execute_tool get_weather"
    assert step.metadata["attributes"]["gen_ai.tool.description"].startswith("Retrieves")


@needs_real
def test_end_to_end_through_the_store_prices_cached_tokens(tmp_path: Path) -> None:
    store = Store(tmp_path / "x.db")
    report = ingest_paths(store, [REAL / "genai-interlingua" / "openllmetry" / "in.json"])
    assert report.problems == [] and report.counts.traces == 1
    stored = store.get_trace("77d66be2")
    chat = next(s for s in stored.trace.steps if s.name == "openai.chat")
    cost = stored.costs[chat.id]
    assert cost.computed is not None
    rate = store.pricer.rate(chat.model, chat.provider)
    assert rate is not None and rate.input is not None and rate.output is not None
    # The same tokens all billed at the input rate: the cached ones must have been cheaper.
    uncached = (412 * rate.input + 27 * rate.output) / 1_000_000
    assert cost.computed < uncached
    assert stored.totals.input_tokens == 412
    assert stored.totals.cache_read_tokens == 256


# --- synthetic input -------------------------------------------------------------------------------------------


def test_deprecated_usage_names_map_to_input_and_output(tmp_path: Path) -> None:
    doc = request(span("a1", "chat gpt-4o", {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.system": "openai",
        "gen_ai.usage.prompt_tokens": 120, "gen_ai.usage.completion_tokens": 30, "gen_ai.usage.audio_tokens": 4,
    }))
    (trace,), result = read(write_lines(tmp_path / "t.json", doc))
    (step,) = trace.steps
    assert step.type == "llm" and step.model == "gpt-4o" and step.provider == "openai"
    assert step.usage is not None
    assert (step.usage.input_tokens, step.usage.output_tokens) == (120, 30)
    assert step.usage.extra == {"audio_tokens": 4}


def test_no_usage_attributes_means_usage_unknown(tmp_path: Path) -> None:
    doc = request(span("a1", "chat", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}))
    (trace,), _ = read(write_lines(tmp_path / "t.json", doc))
    assert trace.steps[0].type == "llm"
    assert trace.steps[0].usage is None


def test_execute_tool_span_becomes_a_tool_step(tmp_path: Path) -> None:
    doc = request(
        span("a1", "invoke_agent support", {"gen_ai.operation.name": "invoke_agent"}),
        span("t1", "execute_tool issue_refund", {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "issue_refund",
            "gen_ai.tool.call.id": "call_2", "gen_ai.tool.call.arguments": '{"customer_id": "cus_8129"}',
            "gen_ai.tool.call.result": '{"error": "permission_denied"}', "error.type": "PermissionError",
        }, parent="a1", start=1_788_789_263_100_000_000,
            status={"code": "STATUS_CODE_ERROR", "message": "refunds need approval"}),
    )
    (trace,), result = read(write_lines(tmp_path / "t.json", doc))
    assert result.problems == []
    agent, tool = trace.steps
    assert agent.type == "agent" and trace.name == "invoke_agent support"
    assert (tool.type, tool.name, tool.tool_call_id, tool.parent_id) == ("tool", "issue_refund", "call_2", "a1")
    assert tool.arguments == {"customer_id": "cus_8129"}
    assert tool.result == {"error": "permission_denied"}
    assert tool.status == "error"
    assert tool.error is not None
    assert (tool.error.type, tool.error.message) == ("PermissionError", "refunds need approval")
    assert tool.metadata["span_name"] == "execute_tool issue_refund"


def test_arguments_that_are_not_json_stay_text(tmp_path: Path) -> None:
    doc = request(span("t1", "execute_tool grep", {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "grep", "gen_ai.tool.call.arguments": "-r foo",
    }))
    (trace,), _ = read(write_lines(tmp_path / "t.json", doc))
    assert trace.steps[0].arguments == "-r foo"


def test_bad_json_line_is_reported_and_other_lines_import(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "dump.jsonl",
        request(span("a1", "first")),
        '{"resourceSpans": [ this is not json',
        {"resourceLogs": []},
        request(span("b1", "second", trace_id="1" * 32)),
    )
    traces, result = read(path)
    assert sorted(t.name or "" for t in traces) == ["first", "second"]
    assert len(result.problems) == 1
    assert result.problems[0].line == 2 and "invalid JSON" in result.problems[0].message
    assert result.skipped["logs, not traces"] == 1


def test_spans_of_one_trace_on_several_lines_make_one_trace(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "dump.jsonl",
        request(span("c1", "child", parent="r1", start=1_788_789_263_200_000_000), service="worker"),
        request(span("r1", "root", start=1_788_789_263_100_000_000), service="api"),
    )
    (trace,), _ = read(path)
    assert [s.id for s in trace.steps] == ["r1", "c1"]
    assert trace.name == "root"
    assert trace.metadata["resource"] == {"service.name": "worker"}  # the first seen
    assert [s.metadata["service"] for s in trace.steps] == ["api", "worker"]


def test_gzip_file_imports(tmp_path: Path) -> None:
    path = tmp_path / "dump.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"resourceMetrics": []}) + "\n")
        fh.write(json.dumps(request(span("a1", "compressed"))) + "\n")
    traces, result = read(path)
    assert [t.name for t in traces] == ["compressed"]
    assert result.skipped["metrics, not traces"] == 1
    report = ingest_paths(Store(tmp_path / "x.db"), [path])
    assert report.counts.traces == 1 and report.skipped == {"metrics, not traces": 1}


def test_damaged_gzip_is_reported_not_raised(tmp_path: Path) -> None:
    data = gzip.compress((json.dumps(request(span("a1", "x"))) + "\n").encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    traces, result = read(path)
    assert traces == [] or all(t.id == TRACE_ID for t in traces)
    assert any("damaged" in p.message for p in result.problems)


def test_the_same_span_sent_twice_is_one_step(tmp_path: Path) -> None:
    doc = request(span("a1", "retried"))
    (trace,), result = read(write_lines(tmp_path / "dump.jsonl", doc, doc))
    assert len(trace.steps) == 1 and result.skipped["duplicate span"] == 1


def test_span_without_span_id_is_reported_and_trace_marked_partial(tmp_path: Path) -> None:
    doc = request(span("r1", "root"), span(None, "broken", parent="r1"), span("c2", "fine", parent="r1"))
    (trace,), result = read(write_lines(tmp_path / "t.json", doc))
    assert [s.id for s in trace.steps] == ["r1", "c2"]
    assert trace.partial
    (problem,) = result.problems
    assert problem.field == "resourceSpans.0.scopeSpans.0.spans.1.spanId"
    assert problem.line == 1
    assert any("spans.1.spanId" in p for p in trace.problems)


def test_orphan_span_is_kept_as_a_root(tmp_path: Path) -> None:
    doc = request(span("c1", "lonely", parent="ffffffffffffffff"))
    (trace,), result = read(write_lines(tmp_path / "t.json", doc))
    (step,) = trace.steps
    assert step.parent_id is None and step.metadata["missing_parent_id"] == "ffffffffffffffff"
    assert trace.name == "lonely" and not trace.partial and result.problems == []


def test_pretty_printed_snake_case_request(tmp_path: Path) -> None:
    doc = {"resource_spans": [{"scope_spans": [{"spans": [{
        "trace_id": TRACE_ID, "span_id": "a1", "parent_span_id": "", "name": "snake",
        "kind": "SPAN_KIND_INTERNAL", "start_time_unix_nano": 1_788_789_263_000_000_000,
        "attributes": [{"key": "openinference.span.kind", "value": {"string_value": "RETRIEVER"}},
                       {"key": "k", "value": {"kvlist_value": {"values": [
                           {"key": "n", "value": {"int_value": "3"}},
                           {"key": "xs", "value": {"array_value": {"values": [{"bool_value": True}]}}}]}}}],
        "status": {"code": 1},
    }]}]}]}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    (trace,), result = read(path)
    (step,) = trace.steps
    assert result.problems == []
    assert (step.type, step.status, step.metadata["span_kind"]) == ("retrieval", "ok", "internal")
    assert step.metadata["attributes"] == {"k": {"n": 3, "xs": [True]}}
    assert step.started_at is not None and step.started_at.year == 2026


def test_prompt_reference_and_trace_output(tmp_path: Path) -> None:
    messages = [{"role": "user", "parts": [{"type": "text", "content": "Cancel my plan"}]}]
    answer = [{"role": "assistant", "parts": [{"type": "text", "content": "Done."}], "finish_reason": "stop"}]
    doc = request(span("a1", "chat", {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.prompt.name": "support",
        "gen_ai.prompt.version": "v7", "gen_ai.input.messages": json.dumps(messages),
        "gen_ai.output.messages": json.dumps(answer), "session.id": "sess-1",
    }))
    (trace,), _ = read(write_lines(tmp_path / "t.json", doc))
    assert trace.prompt is not None and (trace.prompt.name, trace.prompt.version) == ("support", "v7")
    assert (trace.input, trace.output, trace.session_id) == ("Cancel my plan", "Done.", "sess-1")


def test_openinference_span_records_jsonl(tmp_path: Path) -> None:
    record = {
        "name": "ChatCompletion", "context": {"trace_id": TRACE_ID, "span_id": "b1"}, "span_kind": "LLM",
        "parent_id": None, "start_time": "2026-01-14T10:02:11.204Z", "end_time": "2026-01-14T10:02:12.000Z",
        "status_code": "ERROR", "status_message": "rate limited",
        "attributes": {"llm": {"model_name": "gpt-4o", "token_count": {"prompt": 10, "completion": 2},
                               "input_messages": [{"message": {"role": "user", "content": "hi"}}]}},
        "events": [],
    }
    (trace,), result = read(write_lines(tmp_path / "spans.jsonl", record))
    (step,) = trace.steps
    assert result.problems == []
    assert (step.type, step.model, step.status) == ("llm", "gpt-4o", "error")
    assert step.usage is not None and (step.usage.input_tokens, step.usage.output_tokens) == (10, 2)
    assert step.messages[0].text() == "hi"
    assert step.error is not None and step.error.message == "rate limited"


def test_map_attributes_keeps_what_it_does_not_read() -> None:
    fields = map_attributes({"http.method": "GET", "http.status_code": 500})
    assert fields["type"] == "other"
    assert fields["metadata"]["attributes"] == {"http.method": "GET", "http.status_code": 500}
    assert "usage" not in fields


def test_traceloop_indexed_prompt_and_completion() -> None:
    step = step_from_attributes({
        "llm.request.type": "chat", "gen_ai.system": "Anthropic", "gen_ai.request.model": "claude-3-5-sonnet",
        "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "What is 2+2?",
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.finish_reason": "tool_use",
        "gen_ai.completion.0.tool_calls.0.id": "tu_1", "gen_ai.completion.0.tool_calls.0.name": "calc",
        "gen_ai.completion.0.tool_calls.0.arguments": '{"expr": "2+2"}',
        "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 7,
    }, id="s1")
    assert step.type == "llm" and step.messages[0].text() == "What is 2+2?"
    out = step.output_message
    assert out is not None and out.tool_calls[0].arguments == {"expr": "2+2"}
    assert step.output["finish_reason"] == "tool_use"
    # "chat" says more than the step type does, so it stays; everything else was read into fields.
    assert step.metadata["attributes"] == {"llm.request.type": "chat"}
