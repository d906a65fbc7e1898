"""The OTLP importer: real exports from three instrumentations, a Collector dump, GenAI events, protobuf, Phoenix
span records, and broken input."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from store.db import Store
from store.importers import detect_format, ingest_paths
from store.importers import otlp as otlp_module
from store.importers.base import ImportResult
from store.importers.otlp import map_attributes, read_otlp, step_from_attributes
from store.models import Trace
from tests.conftest import REAL, needs_real

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
FIXTURES = Path(__file__).parent / "fixtures" / "otlp"


def read(path: Path) -> tuple[list[Trace], ImportResult]:
    result = ImportResult()
    return list(read_otlp(path, result)), result


def any_value(value: Any) -> dict[str, Any]:
    """An OTLP AnyValue in protobuf JSON, with integers as strings, lists and dicts as array and kvlist values."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": any_value(v)} for k, v in value.items()]}}
    return {"stringValue": value}


def attr(key: str, value: Any) -> dict[str, Any]:
    """An OTLP key/value pair."""
    return {"key": key, "value": any_value(value)}


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
    assert trace.started_at == root.started_at and (trace.source or "").endswith("in.json")


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
    failed = [s.error for s in steps if s.error is not None]
    assert failed and all(e.message for e in failed)


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


def _streamed_request() -> dict[str, Any]:
    spans = [span(f"{i + 1:016x}", f"step {i}", {**CHAT, "gen_ai.input.messages": json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": f"question {i} \u00e9"}]}])},
        trace_id=f"{i // 3:032x}", parent="" if i % 3 == 0 else f"{(i // 3) * 3 + 1:016x}") for i in range(30)]
    doc = request(*spans[:20])
    doc["resourceSpans"].append({"scopeSpans": [{"spans": spans[20:]}], "schemaUrl": "s"})
    doc["resourceSpans"][0]["scopeSpans"].insert(0, {"scope": {"name": "empty"}})  # a scope without spans
    return doc


@pytest.mark.parametrize("layout", ["one line", "pretty"])
def test_a_single_document_is_read_in_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str) -> None:
    """A big single document is read span by span through a small window: the same traces as read whole."""
    doc = _streamed_request()
    whole, _ = read(write_lines(tmp_path / "lines.jsonl", doc))  # JSON Lines: one line read whole
    from store.importers import otlp_stream

    monkeypatch.setattr(otlp_stream, "CHUNK", 7)  # values split across many reads
    monkeypatch.setattr(otlp_module, "_LONG_LINE", 50)  # a line this long is a document, not a line
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc) if layout == "one line" else json.dumps(doc, indent=2), encoding="utf-8")
    pieces, result = read(path)
    assert result.problems == []
    assert [t.model_dump(exclude={"source"}) for t in pieces] == [t.model_dump(exclude={"source"}) for t in whole]
    assert len(pieces) == 10 and sum(len(t.steps) for t in pieces) == 30
    assert pieces[0].metadata["resource"] == {"service.name": "app"} and "resource" not in pieces[-1].metadata


def test_a_document_broken_part_way_keeps_the_spans_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from store.importers import otlp_stream

    monkeypatch.setattr(otlp_stream, "CHUNK", 64)
    text = json.dumps(_streamed_request(), indent=2)
    cut = text.index('"step 12"')
    path = tmp_path / "doc.json"
    path.write_text(text[:cut] + "oops" + text[cut:], encoding="utf-8")
    traces, result = read(path)
    assert sum(len(t.steps) for t in traces) == 12
    (problem,) = result.problems
    assert "invalid JSON" in problem.message and problem.line == text[:cut].count("\n") + 1


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
    record: dict[str, Any] = {
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


# --- GenAI events: span events and log records ----------------------------------------------------------------

T0 = 1_788_789_263_000_000_000
CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "openai"}
WEATHER_CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def event(name: str, at: int, attrs: dict[str, Any]) -> dict[str, Any]:
    return {"timeUnixNano": str(at), "name": name, "attributes": [attr(k, v) for k, v in attrs.items()]}


def log_record(name: str | None, at: int, body: Any, *, span_id: str | None, trace_id: str = TRACE_ID,
               name_as: str = "eventName", attrs: dict[str, Any] | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {"timeUnixNano": str(at), "observedTimeUnixNano": str(at + 1), "severityNumber": 9,
                           "body": any_value(body), "attributes": [attr(k, v) for k, v in (attrs or {}).items()]}
    if name is not None and name_as == "eventName":
        rec["eventName"] = name
    elif name is not None:
        rec["attributes"].append(attr("event.name", name))
    if span_id is not None:
        rec |= {"traceId": trace_id, "spanId": span_id, "flags": 1}
    return rec


def logs(*records: dict[str, Any]) -> dict[str, Any]:
    return {"resourceLogs": [{"resource": {"attributes": [attr("service.name", "app")]},
                              "scopeLogs": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2"},
                                             "logRecords": list(records)}]}]}


def test_operation_details_event_with_json_strings_fills_the_step(tmp_path: Path) -> None:
    details = event("gen_ai.client.inference.operation.details", T0 + 4_000_000, {
        "gen_ai.operation.name": "chat",
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "tool_call", "parts": [
            {"type": "tool_call", "id": "c1", "name": "get_weather", "arguments": {"city": "Paris"}}]}]),
        "gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 7, "gen_ai.response.id": "resp_1",
    })
    retry = event("http.retry", T0 + 1_000_000, {"attempt": 1})
    doc = request(span("a1", "chat gpt-4o", CHAT, events=[retry, details]))
    (trace,), result = read(write_lines(tmp_path / "t.json", doc))
    assert result.problems == []
    (step,) = trace.steps
    assert [(m.role, m.text()) for m in step.messages] == [("system", "Be brief."), ("user", "Weather in Paris?")]
    out = step.output_message
    assert out is not None and [(c.id, c.name, c.arguments) for c in out.tool_calls] == [
        ("c1", "get_weather", {"city": "Paris"})]
    assert step.output["finish_reason"] == "tool_call"
    assert step.usage is not None and (step.usage.input_tokens, step.usage.output_tokens) == (20, 7)
    assert step.metadata["attributes"]["gen_ai.response.id"] == "resp_1"
    # The event read into the step is not kept a second time; the others stay.
    assert [e["name"] for e in step.metadata["events"]] == ["http.retry"]
    assert trace.input == "Weather in Paris?"


def test_operation_details_event_with_structured_values(tmp_path: Path) -> None:
    details = event("gen_ai.client.inference.operation.details", T0 + 4_000_000, {
        "gen_ai.system_instructions": [{"type": "text", "content": "Be brief."}],
        "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}],
        "gen_ai.output.messages": [
            {"role": "assistant", "parts": [{"type": "text", "content": "Hello!"}], "finish_reason": "stop"},
            {"role": "assistant", "parts": [{"type": "text", "content": "Hi there!"}], "finish_reason": "stop"}],
    })
    (trace,), _ = read(write_lines(tmp_path / "t.json", request(span("a1", "chat", CHAT, events=[details]))))
    (step,) = trace.steps
    assert [(m.role, m.text()) for m in step.messages] == [("system", "Be brief."), ("user", "Hi")]
    assert step.output == {"role": "assistant", "content": "Hello!", "finish_reason": "stop"}
    assert [o["content"] for o in step.metadata["output_messages"]] == ["Hello!", "Hi there!"]
    assert "events" not in step.metadata
    assert trace.output == "Hello!"


def test_per_message_span_events_are_read_in_time_order(tmp_path: Path) -> None:
    events = [
        # Azure AI Inference writes the body as one JSON attribute; others write its keys as attributes.
        event("gen_ai.choice", T0 + 5_000, {"gen_ai.system": "openai", "gen_ai.event.content": json.dumps(
            {"index": 0, "finish_reason": "stop", "message": {"content": "It is rainy."}})}),
        event("gen_ai.user.message", T0 + 2_000, {"gen_ai.system": "openai", "content": "Weather in Paris?"}),
        event("gen_ai.system.message", T0 + 1_000, {"content": "Be brief."}),
        event("gen_ai.assistant.message", T0 + 3_000, {"tool_calls": json.dumps([WEATHER_CALL])}),
        event("gen_ai.tool.message", T0 + 4_000, {"id": "c1", "content": "rainy, 57°F"}),
    ]
    (trace,), result = read(write_lines(tmp_path / "t.json", request(span("a1", "chat", CHAT, events=events))))
    assert result.problems == []
    (step,) = trace.steps
    assert [m.role for m in step.messages] == ["system", "user", "assistant", "tool"]
    assert step.messages[1].text() == "Weather in Paris?"
    (call,) = step.messages[2].tool_calls
    assert (call.id, call.name, call.arguments) == ("c1", "get_weather", {"city": "Paris"})
    assert (step.messages[3].tool_call_id, step.messages[3].text()) == ("c1", "rainy, 57°F")
    assert step.output == {"role": "assistant", "content": "It is rainy.", "finish_reason": "stop"}
    assert "events" not in step.metadata


def test_older_content_events_prompt_and_completion(tmp_path: Path) -> None:
    events = [
        event("gen_ai.content.prompt", T0 + 1_000, {"gen_ai.prompt": json.dumps([{"role": "user", "content": "Hi"}])}),
        event("gen_ai.content.completion", T0 + 2_000, {"gen_ai.completion": json.dumps(
            [{"role": "assistant", "content": "Hello!"}])}),
    ]
    (trace,), _ = read(write_lines(tmp_path / "t.json", request(span("a1", "chat", CHAT, events=events))))
    (step,) = trace.steps
    assert [(m.role, m.text()) for m in step.messages] == [("user", "Hi")]
    assert step.output == {"role": "assistant", "content": "Hello!"}
    assert (trace.input, trace.output) == ("Hi", "Hello!")


def test_events_do_not_replace_what_the_attributes_say(tmp_path: Path) -> None:
    attrs = {**CHAT, "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
        {"type": "text", "content": "from the attribute"}]}])}
    ev = event("gen_ai.user.message", T0, {"content": "from the event"})
    (trace,), _ = read(write_lines(tmp_path / "t.json", request(span("a1", "chat", attrs, events=[ev]))))
    (step,) = trace.steps
    assert [m.text() for m in step.messages] == ["from the attribute"]
    assert [e["name"] for e in step.metadata["events"]] == ["gen_ai.user.message"]  # unread, so kept


def test_genai_log_records_join_their_span(tmp_path: Path) -> None:
    other_trace = "1" * 32
    path = write_lines(
        tmp_path / "dump.jsonl",
        # The logs come before the spans they belong to, and out of time order.
        logs(
            log_record("gen_ai.choice", T0 + 9_000, {"index": 0, "finish_reason": "tool_calls",
                                                 "message": {"tool_calls": [WEATHER_CALL]}},
                       span_id="a1", name_as="attribute"),
            log_record("gen_ai.user.message", T0 + 2_000, {"content": "Weather in Paris?"}, span_id="a1"),
            log_record("gen_ai.system.message", T0 + 1_000, {"content": "Be brief."}, span_id="a1",
                       attrs={"gen_ai.system": "openai"}),
            log_record(None, T0 + 3_000, "HTTP 200", span_id="a1"),  # a plain log line of the same span
            log_record("gen_ai.user.message", T0 + 4_000, {"content": "lost"}, span_id=None),  # tied to no span
            log_record("gen_ai.user.message", T0 + 4_000, {"content": "elsewhere"}, span_id="ffffffffffffffff"),
        ),
        {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "service started"}}]}]}]},
        request(span("a1", "chat gpt-4o", CHAT), span("b1", "call", trace_id=other_trace)),
        logs(log_record("gen_ai.client.inference.operation.details", T0 + 5_000, None, span_id="b1",
                        trace_id=other_trace, attrs={
                            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.operation.name": "chat",
                            "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}],
                            "gen_ai.output.messages": [{"role": "assistant", "finish_reason": "stop",
                                                        "parts": [{"type": "text", "content": "Hello!"}]}],
                            "gen_ai.usage.input_tokens": 3, "gen_ai.usage.output_tokens": 2})),
    )
    traces, result = read(path)
    assert result.problems == []
    by_id = {t.id: t for t in traces}
    (chat,) = by_id[TRACE_ID].steps
    assert [(m.role, m.text()) for m in chat.messages] == [("system", "Be brief."), ("user", "Weather in Paris?")]
    out = chat.output_message
    assert out is not None and [c.name for c in out.tool_calls] == ["get_weather"]
    assert chat.output["finish_reason"] == "tool_calls"
    (call,) = by_id[other_trace].steps
    # A span that said nothing of the model call learns it from the event.
    assert (call.type, call.model) == ("llm", "gpt-4o-mini")
    assert call.usage is not None and (call.usage.input_tokens, call.usage.output_tokens) == (3, 2)
    assert [m.text() for m in call.messages] == ["Hi"] and by_id[other_trace].output == "Hello!"
    assert result.skipped == {
        "logs, not traces": 1, "log records that are not GenAI events": 1,
        "GenAI log records not tied to a span": 1,
    }
    # The record whose span is not in the file waits with its trace, for the span to come in another file.
    assert [len(t.metadata["pending_log_events"]) for t in traces if "pending_log_events" in t.metadata] == [1]


@pytest.mark.parametrize("order", ["spans-then-logs", "logs-then-spans"])
def test_genai_log_records_in_another_file_join_their_span(tmp_path: Path, order: str) -> None:
    spans_file = write_lines(tmp_path / "spans.jsonl", request(span("a1", "chat", {**CHAT})))
    logs_file = write_lines(
        tmp_path / "logs.jsonl",
        logs(log_record("gen_ai.user.message", T0 + 2_000, {"content": "Weather in Paris?"}, span_id="a1"),
             log_record("gen_ai.system.message", T0 + 1_000, {"content": "Be brief."}, span_id="a1")),
        logs(log_record("gen_ai.choice", T0 + 9_000, {"index": 0, "finish_reason": "stop",
                                                      "message": {"content": "Sunny."}}, span_id="a1")),
    )
    store = Store(tmp_path / "x.db")
    files = [spans_file, logs_file] if order == "spans-then-logs" else [logs_file, spans_file]
    report = ingest_paths(store, files)
    assert report.skipped == {}
    stored = store.get_trace(TRACE_ID).trace
    (step,) = stored.steps
    assert [(m.role, m.text()) for m in step.messages] == [("system", "Be brief."), ("user", "Weather in Paris?")]
    assert step.output_message is not None and step.output_message.text() == "Sunny."
    assert (stored.name, stored.input, stored.output) == ("chat", "Weather in Paris?", "Sunny.")
    assert "pending_log_events" not in stored.metadata
    # Read again, nothing changes: the records already read are not read twice.
    ingest_paths(store, [logs_file])
    again = store.get_trace(TRACE_ID).trace
    assert [m.text() for m in again.steps[0].messages] == ["Be brief.", "Weather in Paris?"]


# --- OTLP protobuf ----------------------------------------------------------------------------------------------

CHAT_ATTRS: dict[str, Any] = {
    **CHAT, "gen_ai.request.temperature": 0.2, "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30,
    "gen_ai.usage.cache_read.input_tokens": 100, "gen_ai.response.finish_reasons": ["tool_call"],
    "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Weather?"}]}]),
    "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "tool_call", "parts": [
        {"type": "tool_call", "id": "c1", "name": "get_weather", "arguments": {"city": "Paris"}}]}]),
}
TOOL_ATTRS: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather",
                              "gen_ai.tool.call.id": "c1", "gen_ai.tool.call.arguments": '{"city": "Paris"}'}
CHAT_ID, TOOL_ID = "00000000000000a1", "00000000000000b2"


def pb_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(pb_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(KeyValue(key=k, value=pb_value(v)) for k, v in value.items())
        return out
    return AnyValue(string_value=value)


def pb_attrs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=pb_value(v)) for k, v in attrs.items()]


def pb_request(*, only: str | None = None) -> ExportTraceServiceRequest:
    """The protobuf twin of `json_request()`; `only` keeps one of its two spans."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(pb_attrs({"service.name": "app"}))
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "test.scope", "1.0"
    if only in (None, CHAT_ID):
        chat = ss.spans.add(trace_id=bytes.fromhex(TRACE_ID), span_id=bytes.fromhex(CHAT_ID), name="chat gpt-4o",
                            kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=T0, end_time_unix_nano=T0 + 5_000_000)
        chat.attributes.extend(pb_attrs(CHAT_ATTRS))
        chat.status.code = Status.STATUS_CODE_OK
    if only in (None, TOOL_ID):
        tool = ss.spans.add(trace_id=bytes.fromhex(TRACE_ID), span_id=bytes.fromhex(TOOL_ID),
                            parent_span_id=bytes.fromhex(CHAT_ID), name="execute_tool get_weather",
                            kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=T0 + 10_000_000,
                            end_time_unix_nano=T0 + 15_000_000)
        tool.attributes.extend(pb_attrs(TOOL_ATTRS))
        tool.status.code, tool.status.message = Status.STATUS_CODE_ERROR, "city not found"
        tool.events.add(time_unix_nano=T0 + 12_000_000, name="exception",
                        attributes=pb_attrs({"exception.type": "KeyError", "exception.message": "Paris"}))
    return req


def json_request() -> dict[str, Any]:
    """The same request as OTLP/JSON writes it: hex IDs, integers as strings, enums as numbers."""
    return request(
        span(CHAT_ID, "chat gpt-4o", CHAT_ATTRS, start=T0, status={"code": 1}),
        span(TOOL_ID, "execute_tool get_weather", TOOL_ATTRS, parent=CHAT_ID, start=T0 + 10_000_000, kind=1,
             status={"code": 2, "message": "city not found"},
             events=[event("exception", T0 + 12_000_000, {"exception.type": "KeyError", "exception.message": "Paris"})]),
    )


def test_protobuf_request_reads_as_its_json_form(tmp_path: Path) -> None:
    pb = tmp_path / "request.pb"
    pb.write_bytes(pb_request().SerializeToString())
    (from_pb,), pb_result = read(pb)
    (from_json,), json_result = read(write_lines(tmp_path / "request.json", json_request()))
    assert pb_result.problems == json_result.problems == []
    assert from_pb.model_dump(exclude={"source"}) == from_json.model_dump(exclude={"source"})
    chat, tool = from_pb.steps
    assert (chat.id, chat.type, chat.model, chat.params["temperature"]) == (CHAT_ID, "llm", "gpt-4o", 0.2)
    assert chat.usage is not None
    assert (chat.usage.input_tokens, chat.usage.output_tokens, chat.usage.cache_read_tokens) == (120, 30, 100)
    assert chat.messages[0].text() == "Weather?"
    assert chat.output_message is not None and chat.output_message.tool_calls[0].name == "get_weather"
    assert (tool.parent_id, tool.type, tool.status, tool.arguments) == (CHAT_ID, "tool", "error", {"city": "Paris"})
    assert tool.error is not None and (tool.error.type, tool.error.message) == ("KeyError", "city not found")
    # Through the dispatcher and into the store.
    assert detect_format(pb) == "otlp"
    report = ingest_paths(Store(tmp_path / "x.db"), [pb])
    assert report.problems == [] and (report.counts.traces, report.counts.steps) == (1, 2)


def test_gzip_compressed_protobuf(tmp_path: Path) -> None:
    path = tmp_path / "request.pb.gz"
    path.write_bytes(gzip.compress(pb_request().SerializeToString()))
    (trace,), result = read(path)
    assert result.problems == [] and [s.id for s in trace.steps] == [CHAT_ID, TOOL_ID]


def _stream(messages: list[bytes], framing: str) -> bytes:
    out = b""
    for m in messages:
        if framing == "fixed32":  # the Collector's file exporter, format: proto
            out += len(m).to_bytes(4, "big") + m
        else:  # protobuf's delimited form: a varint length
            n, prefix = len(m), b""
            while n >= 0x80:
                prefix += bytes([n & 0x7F | 0x80])
                n >>= 7
            out += prefix + bytes([n]) + m
    return out


def test_length_framed_protobuf_streams_with_logs_and_metrics(tmp_path: Path) -> None:
    log_req = ExportLogsServiceRequest()
    rec = log_req.resource_logs.add().scope_logs.add().log_records.add(
        time_unix_nano=T0 + 1, event_name="gen_ai.system.message", trace_id=bytes.fromhex(TRACE_ID),
        span_id=bytes.fromhex(CHAT_ID))
    rec.body.CopyFrom(pb_value({"content": "Be brief."}))
    metrics = ExportMetricsServiceRequest()
    metrics.resource_metrics.add().scope_metrics.add().metrics.add(name="gen_ai.client.token.usage")
    messages = [pb_request(only=TOOL_ID).SerializeToString(), log_req.SerializeToString(),
                metrics.SerializeToString(), pb_request(only=CHAT_ID).SerializeToString()]
    for framing in ("fixed32", "varint"):
        path = tmp_path / f"dump-{framing}.pb"
        path.write_bytes(_stream(messages, framing))
        (trace,), result = read(path)
        assert result.problems == [], framing
        chat, tool = trace.steps
        assert tool.parent_id == chat.id == CHAT_ID, framing
        # The system message came in a log record, the user message in the span's attribute.
        assert [m.role for m in chat.messages] == ["user"], framing  # the attribute's messages win
        assert [e["name"] for e in chat.metadata["events"]] == ["gen_ai.system.message"], framing
        assert result.skipped == {"metrics, not traces": 1}, framing


def test_damaged_protobuf_is_reported_and_what_came_before_kept(tmp_path: Path) -> None:
    first = pb_request(only=CHAT_ID).SerializeToString()
    second = pb_request(only=TOOL_ID).SerializeToString()
    cut = tmp_path / "cut.pb"
    cut.write_bytes(_stream([first, second], "fixed32")[:-10])
    (trace,), result = read(cut)
    assert [s.id for s in trace.steps] == [CHAT_ID]
    (problem,) = result.problems
    assert problem.field == "[1]" and "ends inside this message" in problem.message
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\x0a\xff\xff\xff\xff\x0f not protobuf at all")
    traces, result = read(garbage)
    assert traces == [] and "not an OTLP protobuf message" in result.problems[0].message
    # A file named .pb that holds OTLP/JSON is read as JSON.
    named = write_lines(tmp_path / "really-json.pb", json_request())
    (trace,), result = read(named)
    assert result.problems == [] and len(trace.steps) == 2


# --- Phoenix / OpenInference span records -----------------------------------------------------------------------


def test_phoenix_span_list_and_jsonl_read_alike() -> None:
    (trace,), result = read(FIXTURES / "phoenix_spans.json")
    (again,), again_result = read(FIXTURES / "phoenix_spans.jsonl")
    assert result.problems == again_result.problems == []
    assert trace.model_dump(exclude={"source"}) == again.model_dump(exclude={"source"})
    assert detect_format(FIXTURES / "phoenix_spans.json") == detect_format(FIXTURES / "phoenix_spans.jsonl") \
        == "openinference"
    root, chat, refund, ticket = trace.steps
    assert [s.type for s in trace.steps] == ["chain", "llm", "tool", "tool"]
    assert root.parent_id is None and {chat.parent_id, refund.parent_id, ticket.parent_id} == {root.id}
    # ISO times: with an offset, with Z, and without a zone (read as UTC).
    assert root.started_at is not None and root.started_at.isoformat() == "2026-01-14T10:02:11.204000+00:00"
    assert chat.started_at is not None and chat.started_at.isoformat() == "2026-01-14T10:02:11.300000+00:00"
    assert refund.started_at is not None and refund.started_at.isoformat() == "2026-01-14T10:02:13.020000+00:00"
    # Nested attributes read as the flat llm.* keys they stand for.
    assert (chat.model, chat.provider, chat.params) == (
        "gpt-4.1-mini-2025-04-14", "openai", {"temperature": 0.2, "max_tokens": 700})
    assert chat.usage is not None
    assert (chat.usage.input_tokens, chat.usage.output_tokens, chat.usage.cache_read_tokens,
            chat.usage.reasoning_tokens) == (2842, 188, 1024, 64)
    assert chat.usage.extra == {"total": 3030, "prompt_details.audio": 0}
    assert [m.role for m in chat.messages] == ["system", "user"]
    assert chat.output_message is not None and chat.output_message.tool_calls[0].arguments == {
        "customer_id": "cus_8129"}
    # Exceptions: with an ERROR status, and with none (UNSET), the exception event says what failed.
    assert refund.status == "error" and refund.error is not None
    assert (refund.error.type, refund.error.message) == ("PermissionError", "agent role may not issue refunds")
    assert ticket.status == "error" and ticket.metadata["status_from"] == "exception event"
    assert ticket.error is not None and ticket.error.type == "TimeoutError"
    assert ticket.metadata["clock_skew"] is True and ticket.latency_ms is None
    # Trace facts from the root's metadata and the template.
    assert trace.prompt is not None and (trace.prompt.name, trace.prompt.version) == ("support_agent", "v7")
    assert trace.metadata["prompt_template"] == {"template": "You are a support agent for {company}.",
                                                 "variables": {"company": "Acme"}}
    assert (trace.session_id, trace.user_id) == ("sess-9", "usr_1")
    assert trace.input == "Cancel my subscription and refund the last charge."
    assert trace.output == "I could not issue the refund; I opened ticket T-4411."  # the root's output.value
    assert chat.metadata["record"] == {"id": "U3BhbjoxMDI="}  # Phoenix's own span ID, kept


def test_phoenix_rest_answer_and_dataframe_rows(tmp_path: Path) -> None:
    spans = json.loads((FIXTURES / "phoenix_spans.json").read_text(encoding="utf-8"))
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps({"data": spans, "next_cursor": None}), encoding="utf-8")
    assert detect_format(answer) == "openinference"
    (trace,), result = read(answer)
    assert result.problems == [] and len(trace.steps) == 4
    # A row of Phoenix's spans dataframe written as JSON records: dotted column names, epoch-millisecond times.
    row: dict[str, Any] = {"name": "ChatCompletion", "span_kind": "LLM", "parent_id": None, "start_time": 1768384931300,
           "end_time": 1768384932900, "status_code": "OK", "status_message": "", "events": [],
           "context.span_id": "c1", "context.trace_id": TRACE_ID, "attributes.llm.model_name": "gpt-4o",
           "attributes.llm.token_count.prompt": 5, "attributes.llm.token_count.completion": 2,
           "attributes.tool.name": None}
    (trace,), result = read(write_lines(tmp_path / "rows.jsonl", row))
    (step,) = trace.steps
    assert result.problems == [] and (step.type, step.model) == ("llm", "gpt-4o")
    assert step.usage is not None and (step.usage.input_tokens, step.usage.output_tokens) == (5, 2)
    assert step.started_at is not None and step.started_at.isoformat() == "2026-01-14T10:02:11.300000+00:00"


# --- conventions: deprecated names, span types, prompt references ------------------------------------------------


def test_span_type_precedence() -> None:
    from store.importers.otlp import step_type

    everything = {"openinference.span.kind": "TOOL", "gen_ai.operation.name": "chat", "traceloop.span.kind": "workflow"}
    assert step_type(everything) == "tool"
    assert step_type({k: v for k, v in everything.items() if k != "openinference.span.kind"}) == "llm"
    assert step_type({"traceloop.span.kind": "workflow", "llm.request.type": "chat"}) == "chain"
    assert step_type({"openinference.span.kind": "retriever"}) == "retrieval"


@needs_real
def test_deprecated_genai_form_reads_like_the_current_one() -> None:
    folder = REAL / "openinference-genai"
    current = step_from_attributes(
        json.loads((folder / "otel_genai_client_span_tool_calls.json").read_text(encoding="utf-8")), id="s1")
    old = step_from_attributes(
        json.loads((folder / "otel_genai_deprecated_client_span_tool_calls.json").read_text(encoding="utf-8")),
        id="s1")
    for step in (current, old):
        assert (step.type, step.model, step.provider) == ("llm", "gpt-4-0613", "openai")
        assert step.usage is not None and (step.usage.input_tokens, step.usage.output_tokens) == (97, 52)
    assert [(m.role, m.text(), m.tool_call_id) for m in old.messages] == [
        (m.role, m.text(), m.tool_call_id) for m in current.messages]
    assert old.output_message is not None and current.output_message is not None
    assert old.output_message.text() == current.output_message.text()


def test_deprecated_system_and_usage_names() -> None:
    step = step_from_attributes({"gen_ai.system": "anthropic", "gen_ai.operation.name": "chat",
                                 "gen_ai.request.model": "claude-sonnet-4", "gen_ai.usage.prompt_tokens": 11,
                                 "gen_ai.usage.completion_tokens": 5, "llm.usage.total_tokens": 16}, id="s1")
    assert step.provider == "anthropic"
    assert step.usage is not None and (step.usage.input_tokens, step.usage.output_tokens) == (11, 5)
    assert step.usage.extra == {"total_tokens": 16}
    assert step.metadata["attributes"] == {"gen_ai.operation.name": "chat"}  # every other key was read


def test_prompt_reference_from_each_convention() -> None:
    from store.importers.otlp import trace_fields

    cases: list[tuple[dict[str, Any], tuple[str | None, str | None]]] = [
        ({"gen_ai.prompt.name": "support", "gen_ai.prompt.version": 7}, ("support", "7")),
        ({"langfuse.prompt.name": "faq", "langfuse.prompt.version": "3"}, ("faq", "3")),
        ({"llm.prompt_template.version": "v3"}, (None, "v3")),
        ({"metadata": '{"prompt_name": "triage", "prompt_version": "v2"}'}, ("triage", "v2")),
        ({"metadata.prompt_version": "v5"}, (None, "v5")),  # Phoenix's nested metadata, flattened
        ({"traceloop.prompt.key": "faq", "traceloop.association.properties.prompt_version": "v9"}, ("faq", "v9")),
        ({"llm.prompt_template.version": "v3", "metadata": '{"prompt_name": "triage"}'}, ("triage", "v3")),
        # The conventions' own keys win over free-form metadata.
        ({"gen_ai.prompt.name": "a", "gen_ai.prompt.version": "1", "metadata": '{"prompt_version": "9"}'},
         ("a", "1")),
    ]
    for attrs, expected in cases:
        ref = trace_fields(attrs).get("prompt")
        assert ref is not None and (ref.name, ref.version) == expected, attrs
    assert "prompt" not in trace_fields({"metadata": '{"team": "billing"}'})
    fields = trace_fields({"llm.prompt_template.template": "Hi {name}",
                           "llm.prompt_template.variables": '{"name": "Ann"}'})
    assert fields["prompt_template"] == {"template": "Hi {name}", "variables": {"name": "Ann"}}


def test_prompt_version_is_filterable_after_ingest(tmp_path: Path) -> None:
    doc = request(span("a1", "chat", {**CHAT, "llm.prompt_template.version": "v3",
                                      "metadata": json.dumps({"prompt_name": "triage"})}))
    store = Store(tmp_path / "x.db")
    ingest_paths(store, [write_lines(tmp_path / "t.json", doc)])
    stored = store.get_trace(TRACE_ID)
    assert stored.trace.prompt is not None and (stored.trace.prompt.name, stored.trace.prompt.version) == (
        "triage", "v3")


# --- times and IDs ----------------------------------------------------------------------------------------------


def test_missing_zero_and_backwards_times_keep_the_step(tmp_path: Path) -> None:
    no_times = {k: v for k, v in span("m1", "no times", parent="r1").items()
                if k not in ("startTimeUnixNano", "endTimeUnixNano")}
    doc = request(
        span("r1", "root", start=T0),
        {**span("z1", "zero start", parent="r1"), "startTimeUnixNano": "0"},
        no_times,
        {**span("s1", "skewed", parent="r1", start=T0 + 9_000_000), "endTimeUnixNano": str(T0 + 1_000_000)},
    )
    path = write_lines(tmp_path / "t.json", doc)
    (trace,), result = read(path)
    assert result.problems == [] and not trace.partial
    steps = {s.id: s for s in trace.steps}
    assert set(steps) == {"r1", "z1", "m1", "s1"}
    assert steps["z1"].started_at is None and steps["z1"].ended_at is not None
    assert steps["m1"].started_at is None and steps["m1"].ended_at is None
    skewed = steps["s1"]
    assert skewed.started_at is not None and skewed.ended_at is not None and skewed.ended_at < skewed.started_at
    assert skewed.latency_ms is None and skewed.metadata["clock_skew"] is True
    assert not any("clock_skew" in s.metadata for s in trace.steps if s.id != "s1")
    store = Store(tmp_path / "x.db")
    ingest_paths(store, [path])
    stored = store.get_trace(TRACE_ID)
    assert stored.totals.latency_ms is not None and stored.totals.latency_ms >= 0


def test_ids_in_hex_base64_and_plain_text(tmp_path: Path) -> None:
    b64 = base64.b64encode(bytes.fromhex(TRACE_ID)).decode()
    b64_root = base64.b64encode(bytes.fromhex("00000000000000a1")).decode()
    doc = request(
        span(b64_root, "root", trace_id=b64),
        span("00000000000000B2", "child", parent=b64_root, trace_id=TRACE_ID.upper()),
        span("step-three", "text ID", parent="00000000000000a1"),
        span("span00000001", "twelve characters, but not base64 of an ID", trace_id="my-trace-1"),
    )
    traces, result = read(write_lines(tmp_path / "t.json", doc))
    assert result.problems == []
    by_id = {t.id: t for t in traces}
    assert set(by_id) == {TRACE_ID, "my-trace-1"}
    assert [(s.id, s.parent_id) for s in by_id[TRACE_ID].steps] == [
        ("00000000000000a1", None), ("00000000000000b2", "00000000000000a1"), ("step-three", "00000000000000a1")]
    assert [s.id for s in by_id["my-trace-1"].steps] == ["span00000001"]


# --- usage ------------------------------------------------------------------------------------------------------


def test_usage_keys_reasoning_cache_and_unknown_ones() -> None:
    step = step_from_attributes({
        **CHAT, "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300,
        "gen_ai.usage.cache_read.input_tokens": 1000, "gen_ai.usage.cache_creation.input_tokens": 100,
        "gen_ai.usage.output_tokens_details.reasoning_tokens": 250, "gen_ai.usage.audio_input_tokens": 12,
        "gen_ai.usage.total_tokens": 1500, "gen_ai.usage.note": "estimated",
    }, id="s1")
    u = step.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens) == (
        1200, 300, 1000, 100, 250)
    assert u.extra == {"audio_input_tokens": 12, "total_tokens": 1500, "note": "estimated"}
    assert "usage_converted" not in step.metadata and u.inconsistency is None
    step = step_from_attributes({
        "openinference.span.kind": "LLM", "llm.token_count.prompt": 50, "llm.token_count.completion": 9,
        "llm.token_count.prompt_details.cache_read": 30, "llm.token_count.prompt_details.cache_write": 10,
        "llm.token_count.completion_details.reasoning": 4, "llm.token_count.completion_details.audio": 2,
    }, id="s2")
    u = step.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens) == (
        50, 9, 30, 10, 4)
    assert u.extra == {"completion_details.audio": 2}
    step = step_from_attributes({**CHAT, "gen_ai.usage.output_tokens": 40, "gen_ai.usage.reasoning_tokens": 32},
                                id="s3")
    assert step.usage is not None and (step.usage.output_tokens, step.usage.reasoning_tokens) == (40, 32)


def test_cache_reported_outside_input_is_converted() -> None:
    step = step_from_attributes({
        **CHAT, "gen_ai.provider.name": "anthropic", "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 80, "gen_ai.usage.cache_read.input_tokens": 2000,
        "gen_ai.usage.cache_creation.input_tokens": 300,
    }, id="s1")
    u = step.usage
    assert u is not None and (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens) == (2312, 2000, 300)
    assert step.metadata["usage_converted"] == "cache outside input"
    assert step.metadata["usage_reported"] == {"input_tokens": 12}
    assert u.inconsistency is None
    # Reasoning beyond the output (reported outside it) is converted the same way.
    step = step_from_attributes({**CHAT, "gen_ai.usage.output_tokens": 10, "gen_ai.usage.reasoning_tokens": 90},
                                id="s2")
    assert step.usage is not None and step.usage.output_tokens == 100
    assert step.metadata["usage_converted"] == "reasoning outside output"


def test_negative_counts_are_kept_but_never_counted(tmp_path: Path) -> None:
    doc = request(span("a1", "chat", {**CHAT, "gen_ai.usage.input_tokens": -5, "gen_ai.usage.output_tokens": 3}))
    (trace,), result = read(write_lines(tmp_path / "t.json", doc))
    (step,) = trace.steps
    assert result.problems == [] and step.type == "llm" and step.model == "gpt-4o"
    assert step.usage is not None and (step.usage.input_tokens, step.usage.output_tokens) == (None, 3)
    assert step.usage.extra == {"input_tokens": -5}


# --- memory: large dumps are handed on in parts -----------------------------------------------------------------

SPLIT = f"{0:032x}"


def big_dump(path: Path, traces: int = 3000, per_trace: int = 10) -> Path:
    """A Collector dump, one request per trace, except that the first trace's last spans come in the last line."""
    tail: list[dict[str, Any]] = []
    with path.open("w", encoding="utf-8") as fh:
        for t in range(traces):
            tid = f"{t:032x}"
            root = f"{t:08x}{0:08x}"
            spans = [span(f"{t:08x}{j:08x}", f"step {j}", {"gen_ai.operation.name": "chat"} if j else None,
                          parent="" if j == 0 else root, trace_id=tid, start=T0 + t * 10**9 + j * 10**6)
                     for j in range(per_trace)]
            if t == 0:
                spans, tail = spans[: per_trace // 2], spans[per_trace // 2:]
            fh.write(json.dumps(request(*spans)) + "\n")
        fh.write(json.dumps(request(*tail)) + "\n")
    return path


def test_large_dump_is_handed_on_in_parts(tmp_path: Path) -> None:
    path = big_dump(tmp_path / "dump.jsonl")
    result = ImportResult()
    traces = list(read_otlp(path, result, max_pending_spans=1000))
    assert result.problems == []
    assert len(traces) == 3001 and sum(len(t.steps) for t in traces) == 30_000
    assert all(t.merge for t in traces)
    # The split trace's first part was handed on long before its last spans were read.
    first, last = traces[0], traces[-1]
    assert first.id == last.id == SPLIT
    assert len(first.steps) == len(last.steps) == 5
    assert first.name == "step 0"
    # The later part lacks its root: it names nothing, and its spans keep the link to the parent.
    assert last.name is None
    assert {s.metadata.get("missing_parent_id") for s in last.steps} == {f"{0:016x}"}


def test_large_dump_split_trace_is_complete_in_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp_module, "MAX_PENDING_SPANS", 1000)
    store = Store(tmp_path / "x.db")
    report = ingest_paths(store, [big_dump(tmp_path / "dump.jsonl")])
    assert report.problems == []
    stored = store.get_trace(SPLIT)
    assert sorted(s.id for s in stored.trace.steps) == [f"{0:08x}{j:08x}" for j in range(10)]
    assert stored.trace.name == "step 0"
    assert len(store.get_trace(f"{2999:032x}").trace.steps) == 10


def test_merged_parts_restore_parent_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp_module, "MAX_PENDING_SPANS", 1000)
    store = Store(tmp_path / "x.db")
    ingest_paths(store, [big_dump(tmp_path / "dump.jsonl", traces=200)])
    steps = store.get_trace(SPLIT).trace.steps
    root = f"{0:016x}"
    assert [s.id for s in steps if s.parent_id is None] == [root]
    assert all("missing_parent_id" not in s.metadata for s in steps)
