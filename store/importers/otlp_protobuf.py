"""OTLP protobuf files, turned into the protobuf-JSON dicts the OTLP/JSON reader reads.

A file holds one serialized ExportTraceServiceRequest (what an OTLP/HTTP exporter posts, saved as `.pb`), or a
stream of them, each framed by its length: the Collector's file exporter (`format: proto`) writes a 4-byte
big-endian length before each message; protobuf's own "delimited" streams write a varint. A message of a stream
may also be a logs or metrics request (the file exporter writes every pipeline it is given to one file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_TAG_RESOURCE = 0x0A  # field 1 (resource_spans / resource_logs / resource_metrics), length-delimited
_MAX_FRAME = 1 << 30  # a length beyond this is not a frame: the stream is not framed the way it seemed


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass
class Part:
    """One piece of a protobuf file: the record to read as OTLP/JSON, or a problem met instead."""

    kind: str  # "spans" (record is one resourceSpans entry), "logs" (a logs request), "metrics", or "problem"
    where: str  # a path prefix for problems: "resourceSpans.3." or "[2].resourceSpans.0."
    record: dict[str, Any] | None = None
    problem: str | None = None


def read_protobuf(fh: Readable) -> Iterator[Part]:
    """The parts of a binary OTLP file, one message at a time (a stream is never read whole)."""
    head = fh.read(16)
    if not head:
        return
    if head[0] == _TAG_RESOURCE:
        yield from _message(head + fh.read(), "")
        return
    if len(head) >= 5 and head[0] < _TAG_RESOURCE and head[4] == _TAG_RESOURCE:
        yield from _frames(fh, head, _fixed32)
        return
    n, used = _varint(head)
    if n is not None and used < len(head) and head[used] == _TAG_RESOURCE:
        yield from _frames(fh, head, _varint_prefix)
        return
    yield from _message(head + fh.read(), "")  # not framed as far as can be told: one message, or nothing


class _Stream:
    """Bytes from the file with the already-read head in front."""

    def __init__(self, fh: Readable, head: bytes) -> None:
        self.fh = fh
        self.buf = head

    def read(self, n: int) -> bytes:
        if len(self.buf) < n:
            self.buf += self.fh.read(n - len(self.buf))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _fixed32(s: _Stream) -> tuple[int | None, bool]:
    """(length, ended): the next 4-byte big-endian length; (None, True) at the end of the stream."""
    raw = s.read(4)
    if not raw:
        return None, True
    if len(raw) < 4:
        return None, False
    return int.from_bytes(raw, "big"), False


def _varint_prefix(s: _Stream) -> tuple[int | None, bool]:
    raw = b""
    while True:
        b = s.read(1)
        if not b:
            return None, not raw
        raw += b
        if b[0] < 0x80:
            n, _ = _varint(raw)
            return n, False
        if len(raw) > 9:
            return None, False


def _varint(data: bytes) -> tuple[int | None, int]:
    """The varint at the start of `data` and how many bytes it took; (None, 0) when there is none."""
    n = 0
    for i, b in enumerate(data[:10]):
        n |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            return n, i + 1
    return None, 0


def _frames(fh: Readable, head: bytes, prefix: Callable[[_Stream], tuple[int | None, bool]]) -> Iterator[Part]:
    s = _Stream(fh, head)
    index = 0
    while True:
        size, ended = prefix(s)
        if ended:
            return
        if size is None or size > _MAX_FRAME:
            yield Part("problem", f"[{index}].", problem="the length before this message cannot be read; "
                                                         "the rest of the file is left out")
            return
        data = s.read(size)
        if len(data) < size:
            yield Part("problem", f"[{index}].", problem=f"the file ends inside this message ({len(data):,} of "
                                                         f"{size:,} bytes); it is left out")
            return
        yield from _message(data, f"[{index}].")
        index += 1


def _plausible_spans(req: ExportTraceServiceRequest) -> bool:
    # A logs or metrics message parses as a trace request too (the wire format does not say its type), but
    # its "spans" then have no IDs of the sizes OTLP uses.
    return any(len(span.trace_id) == 16 and len(span.span_id) == 8
               for rs in req.resource_spans for ss in rs.scope_spans for span in ss.spans)


def _message(data: bytes, where: str) -> Iterator[Part]:
    traces = ExportTraceServiceRequest()
    trace_error: str | None = None
    try:
        traces.ParseFromString(data)
    except DecodeError as exc:
        trace_error = str(exc)
    if trace_error is None and _plausible_spans(traces):
        yield from _spans(traces, where)
        return
    logs = ExportLogsServiceRequest()
    try:
        logs.ParseFromString(data)
    except DecodeError:
        pass
    else:
        if any(r.time_unix_nano or r.observed_time_unix_nano or r.event_name
               for rl in logs.resource_logs for sl in rl.scope_logs for r in sl.log_records):
            yield Part("logs", where, MessageToDict(logs))
            return
    metrics = ExportMetricsServiceRequest()
    try:
        metrics.ParseFromString(data)
    except DecodeError:
        pass
    else:
        if any(m.name for rm in metrics.resource_metrics for sm in rm.scope_metrics for m in sm.metrics):
            yield Part("metrics", where)
            return
    if trace_error is None:
        yield from _spans(traces, where)  # spans without proper IDs: the reader reports them
        return
    yield Part("problem", where, problem=f"not an OTLP protobuf message: {trace_error}")


def _spans(req: ExportTraceServiceRequest, where: str) -> Iterator[Part]:
    # One resource at a time, so that only one is ever held as a dict.
    for i, rs in enumerate(req.resource_spans):
        yield Part("spans", f"{where}resourceSpans.{i}.", MessageToDict(rs))
