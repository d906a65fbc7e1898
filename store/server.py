"""An OTLP/HTTP receiver: spans posted to /v1/traces (and GenAI events posted as log records to /v1/logs) are committed
to the store before they are acknowledged.

What a request gets, as the OTLP/HTTP specification has it: a body that cannot be read at all (not JSON or protobuf,
bad compression, over the size limit, the wrong content type) is refused whole with a 4xx status and a reason, and
nothing of it is stored; spans that can be read are stored trace by trace, each trace whole or not at all, and the
ones left out are counted in a 200 response's `partial_success` (`rejected_spans` with the reasons; OTLP says not to
retry those); a store that cannot be written (full disk, read-only or damaged file) stores nothing of the request
and answers 503 with Retry-After, which exporters retry."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import sqlite3
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .db import Store, StoreError
from .importers.base import ImportResult, scrub_parsed
from .importers.otlp import traces_from_request

TRACES_PATH = "/v1/traces"
LOGS_PATH = "/v1/logs"  # GenAI events sent as log records: joined to their span's step
PATHS = {TRACES_PATH: "traces", LOGS_PATH: "logs"}
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4318  # the port OTLP/HTTP exporters send to by default
MAX_BODY = 64 * 1024 * 1024  # bytes, before and after decompression: the OTel SDK exporters' own request limit
SOURCE = "OTLP/HTTP (loupe serve)"
JSON_TYPE = "application/json"
PROTOBUF_TYPE = "application/x-protobuf"
_SHOWN_PROBLEMS = 3  # problems quoted in a response's partial-success message


# ---------------------------------------------------------------------------------------------------------------
# OTLP request documents as traces.
# ---------------------------------------------------------------------------------------------------------------


def request_from_protobuf(data: bytes, signal: str = "traces") -> dict[str, Any]:
    """A binary ExportTraceServiceRequest (or, for signal "logs", ExportLogsServiceRequest) as the protobuf-JSON
    dict that OTLP/JSON sends. Raises DecodeError."""
    message = (ExportLogsServiceRequest if signal == "logs" else ExportTraceServiceRequest).FromString(data)
    doc: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=False)
    return doc


def count_log_records(doc: Mapping[str, Any]) -> int:
    """The log records a logs request holds."""
    n = 0
    for rl in _list(doc, "resourceLogs", "resource_logs"):
        if isinstance(rl, Mapping):
            for sl in _list(rl, "scopeLogs", "scope_logs"):
                if isinstance(sl, Mapping):
                    n += len(_list(sl, "logRecords", "log_records"))
    return n


def count_spans(doc: Mapping[str, Any]) -> int:
    """The spans a request holds, whatever their state."""
    n = 0
    for rs in _list(doc, "resourceSpans", "resource_spans"):
        if isinstance(rs, Mapping):
            for ss in _list(rs, "scopeSpans", "scope_spans", "instrumentationLibrarySpans"):
                if isinstance(ss, Mapping):
                    n += len(_list(ss, "spans"))
    return n


def _list(d: Mapping[str, Any], *keys: str) -> list[Any]:
    for key in keys:
        value = d.get(key)
        if isinstance(value, list):
            return value
    return []


@dataclass
class Received:
    """What one request brought and what became of it."""

    traces: int = 0  # traces written (each a part of a trace, merged with what the store had)
    spans: int = 0  # spans in the request (log records, for a logs request)
    stored: int = 0  # spans written (GenAI log records kept, for a logs request)
    rejected: int = 0  # spans left out: unreadable, or their trace could not be stored
    signal: str = "traces"  # or "logs"
    problems: list[str] = field(default_factory=list)

    def message(self) -> str:
        """The problems in a few words, for the response's partial-success message."""
        shown = "; ".join(self.problems[:_SHOWN_PROBLEMS])
        more = len(self.problems) - _SHOWN_PROBLEMS
        return shown + (f"; and {more} more" if more > 0 else "")


def store_request(store: Store, doc: Mapping[str, Any], source: str = SOURCE) -> Received:
    """Read one OTLP request document and commit its traces. Raises StoreError (or sqlite3.Error) when the store
    cannot be written (nothing of the request is then stored)."""
    result = ImportResult()
    traces = traces_from_request(doc, source, result)
    counts = store.insert_traces(traces)
    failed = {trace_id for trace_id, _, _ in counts.failed}
    out = Received(traces=counts.traces, spans=count_spans(doc))
    out.stored = sum(len(t.steps) for t in traces if t.id not in failed)
    duplicates = result.skipped.get("duplicate span", 0)
    out.rejected = max(0, out.spans - out.stored - duplicates)
    out.problems = [f"{p.field}: {p.message}" if p.field else p.message for p in result.problems]
    out.problems += [f"trace {trace_id} {why}" for trace_id, _, why in counts.failed]
    return out


def store_logs_request(store: Store, doc: Mapping[str, Any], source: str = SOURCE) -> Received:
    """Read one OTLP logs request and commit its GenAI events as parts of their traces: an event whose span is
    stored joins its step now; the others wait with the trace until the span arrives (store.db.merge_traces).
    Log records that are not GenAI events tied to a span are accepted and not kept. Raises sqlite3.Error."""
    result = ImportResult()
    traces = traces_from_request(doc, source, result)
    counts = store.insert_traces(traces)
    failed = {trace_id for trace_id, _, _ in counts.failed}
    out = Received(traces=counts.traces, spans=count_log_records(doc), signal="logs")
    for trace in traces:
        held = trace.metadata.get("pending_log_events")
        n = sum(len(v) for v in held.values()) if isinstance(held, dict) else 0
        if trace.id in failed:
            out.rejected += n
        else:
            out.stored += n
    out.problems = [f"{p.field}: {p.message}" if p.field else p.message for p in result.problems]
    out.problems += [f"trace {trace_id} {why}" for trace_id, _, why in counts.failed]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Bodies: content types, compression, limits.
# ---------------------------------------------------------------------------------------------------------------


class RequestError(Exception):
    """A request that is answered with an error status; the message says why, in words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(content_type: str | None) -> str | None:
    """"json", "protobuf", or None for any other Content-Type (parameters such as charset are ignored)."""
    if not content_type:
        return None
    kind = content_type.split(";", 1)[0].strip().lower()
    return {JSON_TYPE: "json", PROTOBUF_TYPE: "protobuf"}.get(kind)


def decompress(body: bytes, encoding: str | None, limit: int = MAX_BODY) -> bytes:
    """The body without its Content-Encoding (gzip, deflate or none), never more than `limit` bytes."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc in ("gzip", "x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, limit, "gzip")
    if enc == "deflate":
        try:
            return _inflate(body, zlib.MAX_WBITS, limit, "deflate")
        except RequestError as exc:
            if exc.status != 400:
                raise
            return _inflate(body, -zlib.MAX_WBITS, limit, "deflate")  # raw deflate, without the zlib wrapper
    raise RequestError(415, f"Content-Encoding {encoding!r} is not supported: send gzip, deflate or none")


def _inflate(data: bytes, wbits: int, limit: int, name: str) -> bytes:
    out = bytearray()
    while True:
        d = zlib.decompressobj(wbits)
        try:
            out += d.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise RequestError(400, f"the body is not valid {name} data: {exc}") from exc
        if len(out) > limit:
            raise RequestError(413, f"the body is over {limit:,} bytes once decompressed, the most taken "
                                    "(loupe serve --max-body)")
        if not d.eof:
            raise RequestError(400, f"the {name} data ends early: the body is truncated")
        data = d.unused_data
        if not (wbits > 16 and data.strip(b"\x00")):
            return bytes(out)  # gzip allows several members one after another; nothing else follows the data


def decode_request(body: bytes, content_type: str | None, content_encoding: str | None,
                   limit: int = MAX_BODY, signal: str = "traces") -> dict[str, Any]:
    """An OTLP trace (or logs) request body as a protobuf-JSON dict. Raises RequestError saying what is wrong
    with it."""
    kind = media_type(content_type)
    if kind is None:
        raise RequestError(415, f"Content-Type {content_type or '(none)'!r} is not supported: send {JSON_TYPE} "
                                f"(OTLP/JSON) or {PROTOBUF_TYPE} (OTLP/protobuf)")
    data = decompress(body, content_encoding, limit)
    if kind == "protobuf":
        try:
            return request_from_protobuf(data, signal)
        except (DecodeError, ValueError) as exc:
            what = "ExportLogsServiceRequest" if signal == "logs" else "ExportTraceServiceRequest"
            raise RequestError(400, f"the body is not a protobuf {what}: {exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the body is not UTF-8 text: {exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
                           ) from exc
    except RecursionError as exc:
        raise RequestError(400, "the body is not valid JSON: nested too deeply") from exc
    if not isinstance(doc, dict):
        raise RequestError(400, f"the body is not an OTLP request: expected a JSON object, found "
                                f"{type(doc).__name__}")
    return dict(scrub_parsed(doc, text))


def check_request(doc: Mapping[str, Any], signal: str = "traces") -> None:
    """Refuse a document that is not a trace (or logs) request at all (an empty request is a request, with
    nothing in it)."""
    if signal == "logs":
        logs = doc.get("resourceLogs", doc.get("resource_logs"))
        if logs is None:
            if "resourceSpans" in doc or "resource_spans" in doc:
                raise RequestError(400, f"this is an OTLP traces request: send it to {TRACES_PATH}")
            if "resourceMetrics" in doc or "resource_metrics" in doc:
                raise RequestError(400, "this is an OTLP metrics request; loupe serve takes traces and logs")
            return
        if not isinstance(logs, list):
            raise RequestError(400, f"resourceLogs: expected a list, found {type(logs).__name__}")
        return
    spans = doc.get("resourceSpans", doc.get("resource_spans"))
    if spans is None:
        for key, what in (("resourceLogs", "logs"), ("resource_logs", "logs"), ("resourceMetrics", "metrics"),
                          ("resource_metrics", "metrics")):
            if key in doc:
                where = f"send it to {LOGS_PATH}" if what == "logs" else "loupe serve takes traces and logs"
                raise RequestError(400, f"this is an OTLP {what} request at {TRACES_PATH}; {where}")
        return
    if not isinstance(spans, list):
        raise RequestError(400, f"resourceSpans: expected a list, found {type(spans).__name__}")


def response_body(kind: str | None, received: Received | None) -> tuple[bytes, str]:
    """An ExportTraceServiceResponse in the request's encoding, with a partial success when something was left
    out or could not be read (an ExportLogsServiceResponse for a logs request)."""
    response: Any
    if received is not None and received.signal == "logs":
        response = ExportLogsServiceResponse()
        if received.rejected or received.problems:
            response.partial_success.CopyFrom(ExportLogsPartialSuccess(
                rejected_log_records=received.rejected, error_message=received.message()))
    else:
        response = ExportTraceServiceResponse()
        if received is not None and (received.rejected or received.problems):
            response.partial_success.CopyFrom(ExportTracePartialSuccess(
                rejected_spans=received.rejected, error_message=received.message()))
    if kind == "protobuf":
        return response.SerializeToString(), PROTOBUF_TYPE
    return json.dumps(MessageToDict(response)).encode(), JSON_TYPE


def error_body(kind: str | None, message: str) -> tuple[bytes, str]:
    """An error reason: JSON for JSON requests, plain text otherwise."""
    if kind == "json":
        return json.dumps({"error": message}).encode(), JSON_TYPE
    return (message + "\n").encode("utf-8", errors="replace"), "text/plain; charset=utf-8"


# ---------------------------------------------------------------------------------------------------------------
# The HTTP server.
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One request as the server answered it, for the console."""

    peer: str
    method: str
    path: str
    status: int
    received: Received | None = None
    error: str | None = None


class OTLPRequestHandler(BaseHTTPRequestHandler):
    """POST /v1/traces and /v1/logs; every other path is 404 and every other method 405."""

    server: OTLPServer
    protocol_version = "HTTP/1.1"  # keep-alive: exporters reuse their connection for every batch
    timeout = 60  # seconds a connection may sit idle, or a body take to arrive
    server_version = "loupe-serve"
    sys_version = ""
    _ALLOWED: ClassVar[str] = "POST"

    # -- plumbing

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the server reports each request through its `on_request` callback instead."""

    def _peer(self) -> str:
        return str(self.client_address[0]) if self.client_address else "?"

    def _path(self) -> str:
        return urlsplit(self.path).path

    def _reply(self, status: int, body: bytes, content_type: str, *, close: bool = False,
               headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            # The body was not read (or not all of it): the connection cannot carry another request.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _fail(self, error: RequestError, *, close: bool, headers: Mapping[str, str] | None = None) -> None:
        body, ctype = error_body(media_type(self.headers.get("Content-Type")), error.message)
        self._reply(error.status, body, ctype, close=close, headers=headers)
        self.server.report(Outcome(self._peer(), self.command, self._path(), error.status, error=error.message))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What http.server refuses before a handler runs (a request line that is not HTTP, a TLS hello, headers
        too long): answered like every other refusal, with a status line and the reason in words (not an HTML
        page), reported on the console, and the connection closed."""
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"  # no one speaks 0.9 to an OTLP receiver: give them a status line
        reason = message or HTTPStatus(code).phrase
        headers = getattr(self, "headers", None)
        body, ctype = error_body(media_type(headers.get("Content-Type")) if headers is not None else None, reason)
        self._reply(code, body, ctype, close=True)
        path = urlsplit(getattr(self, "path", "") or "").path or "?"
        self.server.report(Outcome(self._peer(), self.command or "?", path, code, error=reason))

    def _signal(self) -> str | None:
        return PATHS.get(self._path().rstrip("/"))

    def _route(self) -> RequestError | None:
        path = self._path()
        signal = self._signal()
        if signal is None:
            return RequestError(404, f"no such path {path!r}: loupe serve takes OTLP traces at POST {TRACES_PATH} "
                                     f"and GenAI events as OTLP logs at POST {LOGS_PATH}")
        if self.command != "POST":
            return RequestError(405, f"{self.command} is not allowed: POST OTLP {signal} to {path.rstrip('/')}")
        return None

    def _precheck(self) -> RequestError | None:
        """What can be refused before reading the body: path, method, content type, declared size."""
        routed = self._route()
        if routed is not None:
            return routed
        ctype = self.headers.get("Content-Type")
        if media_type(ctype) is None:
            return RequestError(415, f"Content-Type {ctype or '(none)'!r} is not supported: send {JSON_TYPE} "
                                     f"(OTLP/JSON) or {PROTOBUF_TYPE} (OTLP/protobuf)")
        length = self.headers.get("Content-Length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return RequestError(400, f"Content-Length {length!r} is not a number")
            if size < 0:
                return RequestError(400, f"Content-Length {length!r} is not a size")
            if size > self.server.max_body:
                return RequestError(413, f"the body is {size:,} bytes; at most {self.server.max_body:,} are taken "
                                         "(loupe serve --max-body)")
        elif "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return RequestError(411, "a Content-Length header (or chunked transfer encoding) is needed")
        return None

    def handle_expect_100(self) -> bool:
        # A client that waits for "100 Continue" is told no before it sends a body that would be refused.
        refused = self._precheck()
        if refused is not None:
            self._fail(refused, close=True, headers={"Allow": self._ALLOWED} if refused.status == 405 else None)
            return False
        return bool(super().handle_expect_100())

    def _read_body(self) -> bytes:
        limit = self.server.max_body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        size = int(self.headers["Content-Length"])
        body = self.rfile.read(size)
        if len(body) < size:
            raise RequestError(400, f"the body ended after {len(body):,} of {size:,} bytes")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise RequestError(400, "the chunked body is malformed") from exc
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailer fields, ignored
                    pass
                return bytes(body)
            if len(body) + size > limit:
                raise RequestError(413, f"the body is over {limit:,} bytes, the most taken (loupe serve --max-body)")
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise RequestError(400, "the chunked body ended early")
            body += chunk
            self.rfile.readline(1024)  # the CRLF after the chunk

    # -- methods

    def do_POST(self) -> None:
        refused = self._precheck()
        if refused is not None:
            self._fail(refused, close=True)
            return
        try:
            body = self._read_body()
        except RequestError as exc:
            self._fail(exc, close=True)
            return
        except (OSError, ValueError) as exc:
            self._fail(RequestError(400, f"the body could not be read: {exc}"), close=True)
            return
        kind = media_type(self.headers.get("Content-Type"))
        signal = self._signal() or "traces"
        with self.server.busy():
            try:
                doc = decode_request(body, self.headers.get("Content-Type"), self.headers.get("Content-Encoding"),
                                     self.server.max_body, signal)
                check_request(doc, signal)
                if signal == "logs":
                    received = store_logs_request(self.server.store, doc, self.server.source)
                else:
                    received = store_request(self.server.store, doc, self.server.source)
            except RequestError as exc:
                self._fail(exc, close=False)
                return
            except StoreError as exc:
                # Nothing was committed: the exporter may send the batch again (503 is retried). The message
                # already names the store file and says why (full disk, read-only, damaged).
                self._fail(RequestError(503, f"the store cannot be written now: {exc}"), close=False,
                           headers={"Retry-After": "5"})
                return
            except sqlite3.Error as exc:
                self._fail(RequestError(503, f"the store {self.server.store.path} cannot be written now: {exc}"),
                           close=False, headers={"Retry-After": "1"})
                return
            except Exception as exc:  # a bug here must answer the exporter, not drop its connection silently
                self._fail(RequestError(500, f"internal error: {type(exc).__name__}: {exc}"), close=True)
                return
        payload, ctype = response_body(kind, received)
        self._reply(200, payload, ctype)
        self.server.report(Outcome(self._peer(), "POST", self._path(), 200, received=received))

    def _not_post(self) -> None:
        refused = self._route() or RequestError(405, "")
        self._fail(refused, close=True, headers={"Allow": self._ALLOWED} if refused.status == 405 else None)

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_post


class OTLPServer(ThreadingHTTPServer):
    """Receives OTLP/HTTP trace requests into a store; one thread per connection, writes serialized by the store."""

    daemon_threads = True  # an idle keep-alive connection must not hold up the exit; see wait_idle
    allow_reuse_address = True

    def __init__(
        self,
        host: str,
        port: int,
        store: Store,
        *,
        on_request: Callable[[Outcome], None] | None = None,
        max_body: int = MAX_BODY,
        source: str = SOURCE,
    ) -> None:
        self.address_family = _family(host, port)
        self.store = store
        self.on_request = on_request
        self.max_body = max_body
        self.source = source
        self._active = 0
        self._idle = threading.Condition()
        super().__init__((host, port), OTLPRequestHandler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}{TRACES_PATH}"

    def report(self, outcome: Outcome) -> None:
        if self.on_request is not None:
            self.on_request(outcome)

    def busy(self) -> _Busy:
        return _Busy(self)

    def wait_idle(self, timeout: float) -> bool:
        """Wait for requests being read or written to the store to be answered; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)


class _Busy:
    """A request in progress, so that shutting down waits for its commit and its answer."""

    def __init__(self, server: OTLPServer) -> None:
        self.server = server

    def __enter__(self) -> None:
        with self.server._idle:
            self.server._active += 1

    def __exit__(self, *exc: object) -> None:
        with self.server._idle:
            self.server._active -= 1
            self.server._idle.notify_all()


_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
          "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def parse_size(text: str) -> int:
    """A size in bytes from "65536", "512K", "64MB" or "1 GiB" (binary multiples). Raises ValueError saying what
    is wrong."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (give bytes, or a number with K, M or G)")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size < 1:
        raise ValueError(f"not a size: {text!r} (at least 1 byte)")
    return size


def _family(host: str, port: int) -> socket.AddressFamily:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return socket.AF_INET  # binding then fails with the resolver's own message
    return infos[0][0] if infos else socket.AF_INET


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

