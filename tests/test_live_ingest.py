"""Live ingest: `loupe serve` fed by the real OpenTelemetry SDK over OTLP/HTTP, and the SDK exporter into a store."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode, Tracer
from typer.testing import CliRunner

from store.db import Store
from store.exporter import LoupeSpanExporter
from store.server import is_loopback
from tui import cli

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
START_TIMEOUT = 30.0  # seconds for the server to start listening (a cold interpreter imports a lot)
HTTP_TIMEOUT = 10.0


def span(span_id: str | None, name: str, attrs: dict[str, Any] | None = None, *, trace_id: str, parent: str = "",
         start: int = 1_788_789_263_000_000_000) -> dict[str, Any]:
    """One span in OTLP/JSON."""
    def value(v: Any) -> dict[str, Any]:
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": str(v)}

    out: dict[str, Any] = {
        "traceId": trace_id, "parentSpanId": parent, "name": name, "kind": 1,
        "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 5_000_000),
        "attributes": [{"key": k, "value": value(v)} for k, v in (attrs or {}).items()],
    }
    if span_id is not None:
        out["spanId"] = span_id
    return out


def request(*spans: dict[str, Any]) -> dict[str, Any]:
    """An OTLP/JSON ExportTraceServiceRequest."""
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "t"}}]},
                               "scopeSpans": [{"scope": {"name": "test"}, "spans": list(spans)}]}]}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    port: int
    db: Path
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1/traces"

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()


def _wait_listening(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"loupe serve exited with {server.process.returncode}: {server.output()}")
        try:
            with socket.create_connection((HOST, server.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"loupe serve did not listen within {START_TIMEOUT}s: {server.output()}")


@contextmanager
def serving(tmp: Path, db: Path, *options: str) -> Iterator[Server]:
    """`loupe serve` in a subprocess on a free loopback port, listening when given, always stopped at the end."""
    port = free_port()
    out, err = tmp / "stdout.txt", tmp / "stderr.txt"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        process = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "serve", "--port", str(port), "--db", str(db), *options],
            cwd=ROOT, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
        )
    srv = Server(port, db, process, out, err)
    try:
        _wait_listening(srv)
        yield srv
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve")
    with serving(tmp, tmp / "live.db") as srv:
        yield srv


class Recording(SpanExporter):
    """Passes spans on to another exporter and remembers what each export returned."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.results: list[SpanExportResult] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        self.results.append(result)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


MESSAGES_IN = [
    {"role": "system", "parts": [{"type": "text", "content": "You are a support agent."}]},
    {"role": "user", "parts": [{"type": "text", "content": "Refund my last charge."}]},
]
MESSAGES_OUT = [
    {"role": "assistant", "parts": [{"type": "text", "content": "I've processed the refund."}],
     "finish_reason": "stop"},
]


def genai_trace(tracer: Tracer) -> tuple[str, str, str]:
    """A chat span with a failed tool call under it; (trace ID, chat span ID, tool span ID) as hex."""
    with tracer.start_as_current_span("chat gpt-4o-mini") as chat:
        chat.set_attribute("gen_ai.operation.name", "chat")
        chat.set_attribute("gen_ai.provider.name", "openai")
        chat.set_attribute("gen_ai.request.model", "gpt-4o-mini")
        chat.set_attribute("gen_ai.usage.input_tokens", 1200)
        chat.set_attribute("gen_ai.usage.output_tokens", 48)
        chat.set_attribute("gen_ai.input.messages", json.dumps(MESSAGES_IN))
        chat.set_attribute("gen_ai.output.messages", json.dumps(MESSAGES_OUT))
        with tracer.start_as_current_span("execute_tool issue_refund") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", "issue_refund")
            tool.set_attribute("gen_ai.tool.call.arguments", json.dumps({"charge": "last"}))
            tool.set_status(Status(StatusCode.ERROR, "permission denied: agents may not refund"))
    ctx, tool_ctx = chat.get_span_context(), tool.get_span_context()
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", f"{tool_ctx.span_id:016x}"


def provider(processor: Any) -> TracerProvider:
    tp = TracerProvider(resource=Resource.create({"service.name": "support-agent"}))
    tp.add_span_processor(processor)
    return tp


def assert_genai_trace(db: Path, trace_id: str, chat_id: str, tool_id: str) -> None:
    with Store(db) as store:
        stored = store.get_trace(trace_id)
    steps = {s.id: s for s in stored.trace.steps}
    assert set(steps) == {chat_id, tool_id}
    chat, tool = steps[chat_id], steps[tool_id]
    assert chat.type == "llm" and chat.model == "gpt-4o-mini" and chat.parent_id is None
    assert chat.usage is not None and (chat.usage.input_tokens, chat.usage.output_tokens) == (1200, 48)
    assert [m.role for m in chat.messages] == ["system", "user"]
    assert tool.type == "tool" and tool.name == "issue_refund" and tool.parent_id == chat_id
    assert tool.status == "error" and tool.error is not None and "permission denied" in (tool.error.message or "")
    assert stored.trace.name == "chat gpt-4o-mini"
    assert stored.trace.input == "Refund my last charge."
    assert (stored.totals.input_tokens, stored.totals.output_tokens, stored.totals.errors) == (1200, 48, 1)
    # The headline rule sees the claim of success after the failed tool call.
    assert any(f.rule_id == "success-after-tool-error" and tool_id in f.evidence for f in stored.findings)


def post(url: str, body: bytes, content_type: str = "application/json", *,
         encoding: str | None = None) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of a POST; error statuses are returned, not raised."""
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read()


# --------------------------------------------------------------------------- loupe serve and the SDK


def test_sdk_spans_over_otlp_protobuf_are_stored(server: Server) -> None:
    exporter = Recording(OTLPSpanExporter(endpoint=server.url, timeout=HTTP_TIMEOUT))
    tp = provider(BatchSpanProcessor(exporter))
    ids = genai_trace(tp.get_tracer("support"))
    assert tp.force_flush(timeout_millis=int(HTTP_TIMEOUT * 1000))
    tp.shutdown()
    # One batch of both spans; acknowledged only once committed, so the store has it now.
    assert exporter.results == [SpanExportResult.SUCCESS]
    assert_genai_trace(server.db, *ids)


def test_a_trace_sent_span_by_span_with_gzip_is_whole(server: Server) -> None:
    exporter = Recording(OTLPSpanExporter(endpoint=server.url, timeout=HTTP_TIMEOUT, compression=Compression.Gzip))
    tp = provider(SimpleSpanProcessor(exporter))
    ids = genai_trace(tp.get_tracer("support"))
    tp.shutdown()
    # Each span in its own request, the child first: its parent arrives only in the next one.
    assert exporter.results == [SpanExportResult.SUCCESS, SpanExportResult.SUCCESS]
    assert_genai_trace(server.db, *ids)
    with Store(server.db) as store:
        row = next(r for r in store.list_traces(limit=1000) if r.id == ids[0])
    assert (row.steps, row.llm_calls, row.status) == (2, 1, "error")


def test_spans_of_one_trace_posted_at_once_are_all_kept(server: Server) -> None:
    trace_id = "5b8efff798038103d269b633813fc60c"
    root = span("00000000000000aa", "agent run", {"gen_ai.operation.name": "invoke_agent"}, trace_id=trace_id)
    children = [span(f"{i:016x}", f"tool {i}", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "t"},
                     parent="00000000000000aa", trace_id=trace_id, start=1_788_789_263_000_000_000 + i * 1000)
                for i in range(1, 17)]
    bodies = [json.dumps(request(s)).encode() for s in [root, *children]]
    statuses: list[int] = []

    def send(chunk: list[bytes]) -> None:
        for body in chunk:
            statuses.append(post(server.url, body)[0])

    threads = [threading.Thread(target=send, args=(bodies[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=HTTP_TIMEOUT * 4)
    assert statuses == [200] * 17
    with Store(server.db) as store:
        stored = store.get_trace(trace_id)
    assert len(stored.trace.steps) == 17  # every merge saw the ones before it: writes are serialized
    assert {s.parent_id for s in stored.trace.steps} == {None, "00000000000000aa"}
    assert stored.trace.name == "agent run"


def _emit_messages(logs: LoggerProvider, ctx: Any) -> None:
    """GenAI message events as log records of the chat span (the older, event-based GenAI conventions)."""
    logger = logs.get_logger("support")
    logger.emit(event_name="gen_ai.system.message", body={"content": "You are a support agent."}, context=ctx,
                timestamp=1_788_789_263_000_000_100)
    logger.emit(event_name="gen_ai.user.message", body={"content": "Refund my last charge."}, context=ctx,
                timestamp=1_788_789_263_000_000_200)
    logger.emit(event_name="gen_ai.choice", context=ctx, timestamp=1_788_789_263_000_000_300,
                body={"index": 0, "finish_reason": "stop", "message": {"content": "Done."}})


@pytest.mark.parametrize("logs_first", [False, True], ids=["span-then-logs", "logs-then-span"])
def test_sdk_genai_log_events_join_their_span(server: Server, logs_first: bool) -> None:
    from opentelemetry import trace as api_trace

    logs_url = f"http://{HOST}:{server.port}/v1/logs"
    log_exporter = OTLPLogExporter(endpoint=logs_url, timeout=HTTP_TIMEOUT, compression=Compression.Gzip)
    results: list[LogRecordExportResult] = []
    export = log_exporter.export
    log_exporter.export = lambda batch: results.append(export(batch)) or results[-1]  # type: ignore[method-assign]
    logs = LoggerProvider()
    logs.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    span_exporter = Recording(OTLPSpanExporter(endpoint=server.url, timeout=HTTP_TIMEOUT))
    tp = provider(SimpleSpanProcessor(span_exporter))
    tracer = tp.get_tracer("support")
    with tracer.start_as_current_span("chat gpt-4o-mini") as chat:
        chat.set_attribute("gen_ai.operation.name", "chat")
        chat.set_attribute("gen_ai.request.model", "gpt-4o-mini")
        ctx = api_trace.set_span_in_context(chat)
        if logs_first:
            _emit_messages(logs, ctx)  # exported before the span ends, so before the span is stored
    if not logs_first:
        _emit_messages(logs, ctx)
    tp.shutdown()
    logs.shutdown()
    assert span_exporter.results == [SpanExportResult.SUCCESS]
    assert results == [LogRecordExportResult.SUCCESS] * 3
    sc = chat.get_span_context()
    with Store(server.db) as store:
        stored = store.get_trace(f"{sc.trace_id:032x}")
    (step,) = stored.trace.steps
    assert step.id == f"{sc.span_id:016x}" and step.type == "llm" and step.ended_at is not None
    assert [(m.role, m.text()) for m in step.messages] == [("system", "You are a support agent."),
                                                           ("user", "Refund my last charge.")]
    assert step.output_message is not None and step.output_message.text() == "Done."
    assert "pending_log_events" not in stored.trace.metadata
    assert (stored.trace.input, stored.trace.output) == ("Refund my last charge.", "Done.")


def test_logs_path_takes_otlp_json_and_protobuf(server: Server) -> None:
    from google.protobuf.json_format import ParseDict
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
    )

    trace_id, span_id = "6b8efff798038103d269b633813fc60c", "00000000000000c1"
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"timeUnixNano": "1788789263000000100", "eventName": "gen_ai.user.message", "traceId": trace_id,
         "spanId": span_id, "body": {"kvlistValue": {"values": [
             {"key": "content", "value": {"stringValue": "Where is my parcel?"}}]}}},
        {"timeUnixNano": "1788789263000000200", "body": {"stringValue": "an ordinary log line"}},
    ]}]}]}
    pb = ParseDict(logs, ExportLogsServiceRequest()).SerializeToString()
    status, ctype, answer = post(f"http://{HOST}:{server.port}/v1/logs", gzip.compress(pb),
                                 "application/x-protobuf", encoding="gzip")
    assert status == 200 and ctype == "application/x-protobuf"
    assert not ExportLogsServiceResponse.FromString(answer).HasField("partial_success")
    # The span comes afterwards, as OTLP/JSON: the waiting message joins it.
    chat = span(span_id, "chat", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}, trace_id=trace_id)
    assert post(server.url, json.dumps(request(chat)).encode())[0] == 200
    with Store(server.db) as store:
        stored = store.get_trace(trace_id)
    (step,) = stored.trace.steps
    assert [m.text() for m in step.messages] == ["Where is my parcel?"]
    # A traces request sent to the logs path is refused, saying where it belongs.
    status, _, body = post(f"http://{HOST}:{server.port}/v1/logs", json.dumps(request(chat)).encode())
    assert status == 400 and "/v1/traces" in json.loads(body)["error"]


# --------------------------------------------------------------------------- OTLP/JSON and bad requests


def test_otlp_json_plain_and_gzip(server: Server) -> None:
    trace_id = "1af7651916cd43dd8448eb211c80319c"
    first = request(span("00000000000000b1", "chat gpt-4o-mini", {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2}, trace_id=trace_id))
    status, ctype, body = post(server.url, json.dumps(first).encode())
    assert (status, ctype, json.loads(body)) == (200, "application/json", {})
    second = request(span("00000000000000b2", "execute_tool lookup", {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"},
        parent="00000000000000b1", trace_id=trace_id))
    status, _, body = post(server.url, gzip.compress(json.dumps(second).encode()), encoding="gzip")
    assert (status, json.loads(body)) == (200, {})
    with Store(server.db) as store:
        steps = store.get_trace(trace_id).trace.steps
    assert [(s.id, s.parent_id) for s in steps] == [("00000000000000b1", None), ("00000000000000b2", "00000000000000b1")]
    assert steps[0].usage is not None and steps[0].usage.input_tokens == 10


def test_unreadable_spans_are_reported_as_a_partial_success(server: Server) -> None:
    trace_id = "2af7651916cd43dd8448eb211c80319c"
    doc = request(span("00000000000000c1", "ok", trace_id=trace_id), span(None, "no span ID", trace_id=trace_id))
    status, _, body = post(server.url, json.dumps(doc).encode())
    assert status == 200
    partial = json.loads(body)["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1 and "span ID" in partial["errorMessage"]
    with Store(server.db) as store:
        assert [s.id for s in store.get_trace(trace_id).trace.steps] == ["00000000000000c1"]


def test_protobuf_answers_in_protobuf(server: Server) -> None:
    status, ctype, body = post(server.url, b"", "application/x-protobuf")  # an empty request: nothing to store
    assert (status, ctype) == (200, "application/x-protobuf")
    assert ExportTraceServiceResponse.FromString(body) == ExportTraceServiceResponse()


@pytest.mark.parametrize(("body", "ctype", "encoding", "status", "reason"), [
    (b"{not json", "application/json", None, 400, "not valid JSON"),
    (b"[1, 2]", "application/json", None, 400, "expected a JSON object"),
    (b'{"resourceSpans": {}}', "application/json", None, 400, "resourceSpans: expected a list"),
    (b'{"resourceLogs": []}', "application/json", None, 400, "send it to /v1/logs"),
    (b"\xff\xfe", "application/json", None, 400, "not UTF-8"),
    (b"\x0a\xff\xff\xff\xff\x0f", "application/x-protobuf", None, 400, "not a protobuf ExportTraceServiceRequest"),
    (b"not gzip at all", "application/json", "gzip", 400, "not valid gzip"),
    (gzip.compress(b"{}")[:-6], "application/json", "gzip", 400, "truncated"),
    (b"{}", "application/json", "br", 415, "Content-Encoding 'br' is not supported"),
    (b"{}", "text/plain", None, 415, "Content-Type 'text/plain' is not supported"),
])
def test_bad_requests_say_why(server: Server, body: bytes, ctype: str, encoding: str | None, status: int,
                              reason: str) -> None:
    got, got_type, answer = post(server.url, body, ctype, encoding=encoding)
    assert got == status
    if ctype == "application/json":
        assert got_type == "application/json" and reason in json.loads(answer)["error"]
    else:
        assert got_type.startswith("text/plain") and reason in answer.decode()


def test_other_paths_methods_and_sizes(server: Server) -> None:
    assert post(f"http://{HOST}:{server.port}/v1/metrics", b"{}")[0] == 404
    assert post(f"http://{HOST}:{server.port}/v1/logs", b"{}")[0] == 200  # an empty logs request
    status, _, body = post(f"http://{HOST}:{server.port}/", b"{}")
    assert status == 404 and "/v1/traces" in json.loads(body)["error"]
    try:
        urllib.request.urlopen(server.url, timeout=HTTP_TIMEOUT)
        raise AssertionError("GET was accepted")
    except urllib.error.HTTPError as exc:
        with exc:
            assert exc.code == 405 and exc.headers["Allow"] == "POST"
    # A body over the limit is refused from its declared size, before it is sent.
    conn = http.client.HTTPConnection(HOST, server.port, timeout=HTTP_TIMEOUT)
    try:
        conn.putrequest("POST", "/v1/traces")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(65 * 1024 * 1024))
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 413 and "at most" in json.loads(resp.read())["error"]
    finally:
        conn.close()


def test_the_console_has_a_line_per_request(server: Server) -> None:
    trace_id = "3af7651916cd43dd8448eb211c80319c"
    doc = request(span("00000000000000d1", "a", trace_id=trace_id), span("00000000000000d2", "b", trace_id=trace_id))
    assert post(server.url, json.dumps(doc).encode())[0] == 200
    deadline = time.monotonic() + HTTP_TIMEOUT
    while "1 trace, 2 spans stored" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    out = server.output()
    assert f"Receiving OTLP/HTTP traces at {server.url}" in out
    assert "1 trace, 2 spans stored" in out


# --------------------------------------------------------------------------- the exporter inside an app


def test_exporter_writes_straight_into_a_store(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    exporter = LoupeSpanExporter(db)
    tp = provider(SimpleSpanProcessor(exporter))
    ids = genai_trace(tp.get_tracer("support"))
    tp.shutdown()  # shuts the exporter down, closing its store
    assert_genai_trace(db, *ids)


def test_exporter_merges_a_trace_exported_in_two_batches(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    collected: list[ReadableSpan] = []

    class Collect(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            collected.extend(spans)
            return SpanExportResult.SUCCESS

    tp = provider(SimpleSpanProcessor(Collect()))
    trace_id, chat_id, tool_id = genai_trace(tp.get_tracer("support"))
    tp.shutdown()
    chat = next(s for s in collected if f"{s.context.span_id:016x}" == chat_id)
    tool = next(s for s in collected if f"{s.context.span_id:016x}" == tool_id)
    exporter = LoupeSpanExporter(db)
    try:
        # The parent first this time: the child's batch still joins it.
        assert exporter.export([chat]) == SpanExportResult.SUCCESS
        with Store(db) as store:
            assert [s.id for s in store.get_trace(trace_id).trace.steps] == [chat_id]
        assert exporter.export([tool]) == SpanExportResult.SUCCESS
        assert exporter.export([tool]) == SpanExportResult.SUCCESS  # a retried batch changes nothing
    finally:
        exporter.shutdown()
    assert exporter.export([chat]) == SpanExportResult.FAILURE  # shut down: refused, not lost silently
    assert_genai_trace(db, trace_id, chat_id, tool_id)


def test_store_works_without_the_sdk() -> None:
    code = ("import sys, store, store.db, store.server, store.importers.otlp\n"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         timeout=60)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- the command


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli.app, ["serve", "--port", str(port), "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 2, result.output
    assert f"cannot listen on {HOST}:{port}" in result.output


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.10", "example.com"))


def test_serve_help_names_its_options() -> None:
    result = CliRunner().invoke(cli.app, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    assert all(opt in result.output for opt in ("--host", "--port", "--db"))
