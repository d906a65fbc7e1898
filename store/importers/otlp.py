"""OTLP traces (OTLP/JSON requests, Collector file dumps, gzip, protobuf) and OpenInference / Phoenix span records,
as native traces.

The attribute conventions are read in `otlp_attributes`, GenAI events in `otlp_events`, protobuf in
`otlp_protobuf`; this module reads the containers and assembles spans into traces.
"""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import json
import re
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BufferedIOBase
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from ..models import PLAUSIBLE_YEARS, Step, Trace, format_time, parse_time
from .base import ImportProblem, ImportResult, cut_parent_loops, error_field, scrub, scrub_parsed
from .otlp_attributes import (
    _OPENINFERENCE_KINDS,
    _as_int,
    _opt_text,
    map_attributes,
    messages_from,
    prompt_ref,
    reconcile_usage,
    step_from_attributes,
    step_type,
    trace_fields,
)
from .otlp_events import GENAI_EVENTS, apply_genai_events, is_genai_event
from .otlp_stream import read_documents

__all__ = [
    "GENAI_EVENTS", "MAX_PENDING_SPANS", "decode_any_value", "map_attributes", "messages_from", "prompt_ref",
    "read_otlp", "reconcile_usage", "step_from_attributes", "step_type", "trace_fields",
]

# Spans (and GenAI log records) held before the oldest traces are handed on, so that memory does not grow with
# the file. A trace handed on early and completed later arrives in parts, which the store merges (Trace.merge).
MAX_PENDING_SPANS = 50_000

# Trace metadata: GenAI log records (span ID -> events) waiting for their span (see store.db.merge_traces).
PENDING_LOG_EVENTS = "pending_log_events"

# ---------------------------------------------------------------------------------------------------------------
# Protobuf-JSON: AnyValue, IDs, times, enums, camelCase or snake_case keys.
# ---------------------------------------------------------------------------------------------------------------

_SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")


@functools.cache  # called for every field of every span, always with the same few names
def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _field(d: Mapping[str, Any], *names: str) -> tuple[str, Any]:
    """The value under the first of `names` (camelCase, or its snake_case form) present, with the key found."""
    for name in names:
        for key in (name, _snake(name)):
            if key in d:
                return key, d[key]
    return names[0], None


def decode_any_value(v: Any) -> Any:
    """A plain Python value from an OTLP AnyValue; values that are already plain are returned as they are."""
    if not isinstance(v, dict):
        return v
    if not v:
        return None
    for key, raw in v.items():
        kind = key if "_" not in key else re.sub(r"_(\w)", lambda m: m.group(1).upper(), key)
        if kind == "stringValue":
            return raw
        if kind == "boolValue":
            return raw if isinstance(raw, bool) else str(raw).lower() == "true"
        if kind == "intValue":
            n = _as_int(raw)
            return n if n is not None else raw
        if kind == "doubleValue":
            # "NaN" and "Infinity" stay strings: they would not survive a round trip through JSON.
            try:
                x = float(raw)
            except (TypeError, ValueError):
                return raw
            return x if x == x and abs(x) != float("inf") else raw
        if kind == "arrayValue":
            values = raw.get("values", []) if isinstance(raw, dict) else []
            return [decode_any_value(x) for x in values or []]
        if kind == "kvlistValue":
            values = raw.get("values", []) if isinstance(raw, dict) else []
            return {kv.get("key"): decode_any_value(kv.get("value")) for kv in values or [] if isinstance(kv, dict)}
        if kind == "bytesValue":
            return raw  # base64 text: kept as found
    return v


def _hex_id(v: Any) -> str | None:
    """A trace or span ID as lower-case hex. Some exporters write base64 (the proto bytes), or a 0x prefix; any
    other text is kept as it is."""
    if not isinstance(v, str) or not v.strip():
        return None
    text = v.strip()
    digits = text[2:] if text[:2] in ("0x", "0X") else text
    if re.fullmatch(r"[0-9a-fA-F]+", digits):
        return digits.lower()
    if len(text) in (12, 24) and re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", text):
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) in (8, 16):  # the sizes of span and trace IDs: other text of this length is just text
            return raw.hex()
    return text


# Times outside these bounds are instrumentation bugs (a seconds value read as nanoseconds, a garbage number):
# read as unknown rather than shown as a trace from 1970 or a duration of centuries.
PLAUSIBLE_NANOS = PLAUSIBLE_YEARS


def _nanos(v: Any) -> datetime | None:
    """A datetime from unix nanoseconds (a number or a decimal string); 0 means unset. Raises ValueError."""
    if v is None or v == "" or v == 0 or v == "0":
        return None
    n = _as_int(v)
    if n is None:
        raise ValueError(f"not a time in unix nanoseconds: {v!r}")
    if not PLAUSIBLE_NANOS[0] <= n <= PLAUSIBLE_NANOS[1]:
        raise ValueError(f"not a plausible time in unix nanoseconds: {v!r}; read as unknown")
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=n // 1000)


def _span_kind(v: Any) -> str | None:
    if isinstance(v, int) and 0 <= v < len(_SPAN_KINDS):
        return _SPAN_KINDS[v]
    if isinstance(v, str) and v:
        return v.rsplit(".", 1)[-1].removeprefix("SPAN_KIND_").lower()
    return None


def _status_code(v: Any) -> str | None:
    """"ok", "error", or None for unset, from a number or any of the enum's spellings."""
    if isinstance(v, int):
        return {1: "ok", 2: "error"}.get(v)
    if isinstance(v, str):
        name = v.rsplit(".", 1)[-1].upper().removeprefix("STATUS_CODE_")
        return {"OK": "ok", "ERROR": "error", "1": "ok", "2": "error"}.get(name)
    return None



# ---------------------------------------------------------------------------------------------------------------
# Spans, whatever container they came in, and traces assembled from them.
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str | None
    attributes: dict[str, Any]
    start: datetime | None = None
    end: datetime | None = None
    kind: str | None = None
    status: str | None = None
    status_message: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # scope, links, other span fields
    resource: dict[str, Any] | None = None


@dataclass
class _Entry:
    step: Step
    span_name: str | None
    hints: dict[str, Any]
    input_value: Any = None
    output_value: Any = None


@dataclass
class _Pending:
    entries: list[_Entry] = field(default_factory=list)
    by_id: dict[str, Step] = field(default_factory=dict)
    resource: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    log_events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # span ID -> GenAI log records
    size: int = 0  # spans and log records held


def _error_of(span: _Span, leftover: dict[str, Any]) -> dict[str, Any] | None:
    etype = None
    emessage = None
    for ev in span.events:
        if ev.get("name") == "exception":
            attrs = ev.get("attributes") or {}
            etype = etype or _opt_text(attrs.get("exception.type"))
            emessage = emessage or _opt_text(attrs.get("exception.message"))
    if etype is None and _opt_text(leftover.get("error.type")):
        etype = _opt_text(leftover.pop("error.type"))
    message = span.status_message or emessage
    if etype is None and message is None:
        return None
    return {"type": etype, "message": message}


def _to_step(span: _Span) -> Step:
    mapped = map_attributes(span.attributes)
    meta: dict[str, Any] = mapped.pop("metadata")
    if span.kind:
        meta["span_kind"] = span.kind
    if span.events:
        meta["events"] = span.events
    meta.update(span.metadata)
    if span.resource and span.resource.get("service.name"):
        meta["service"] = span.resource["service.name"]
    if span.start is not None and span.end is not None and span.end < span.start:
        # Both times kept as reported; the step shows no duration rather than a negative one.
        meta["clock_skew"] = True
    status = span.status
    if status is None and any(ev.get("name") == "exception" for ev in span.events):
        # An exception recorded on a span that set no status: the span failed as far as anyone can tell.
        status = "error"
        meta["status_from"] = "exception event"
    fields: dict[str, Any] = {
        "id": span.span_id, "parent_id": span.parent_id, "name": span.name,
        "started_at": span.start, "ended_at": span.end, "status": status,
    }
    if status == "error":
        fields["error"] = _error_of(span, meta["attributes"])
    elif span.status_message:
        meta["status_message"] = span.status_message
    if mapped.get("name") and span.name and mapped["name"] != span.name:
        meta["span_name"] = span.name
    return Step.model_validate({**fields, **mapped, "metadata": meta})


def _bare_step(span: _Span) -> Step:
    """The span's plain facts, for when its mapped fields fail validation: the data is kept, not interpreted."""
    return Step(id=span.span_id, parent_id=span.parent_id, name=span.name, started_at=span.start,
                ended_at=span.end, status=span.status,  # type: ignore[arg-type]
                metadata={"attributes": span.attributes, "events": span.events, **span.metadata})


class _Collector:
    """Spans grouped by trace ID, with the problems met on the way.

    At most `max_pending` spans (and GenAI log records) are held: past that, the traces touched least recently
    are handed on (`over_budget`) and a later span of such a trace starts a new part of it.
    """

    def __init__(self, path: Path, result: ImportResult, max_pending: int = MAX_PENDING_SPANS) -> None:
        self.file = str(path)
        self.result = result
        self.traces: OrderedDict[str, _Pending] = OrderedDict()
        self.max_pending = max(1, max_pending)
        self.held = 0
        self.handed_on_early = False

    def _pending(self, trace_id: str) -> _Pending:
        pending = self.traces.get(trace_id)
        if pending is None:
            pending = self.traces[trace_id] = _Pending()
        else:
            self.traces.move_to_end(trace_id)
        return pending

    def problem(self, line: int | None, where: str | None, message: str, trace_id: str | None = None) -> None:
        self.result.problems.append(ImportProblem(self.file, line, where, message))
        if trace_id is not None:
            pending = self._pending(trace_id)
            at = f"line {line}: " if line is not None else ""
            pending.problems.append(f"{at}{where + ': ' if where else ''}{message}")

    def add(self, span: _Span, line: int | None, where: str) -> None:
        pending = self._pending(span.trace_id)
        if pending.resource is None and span.resource:
            pending.resource = span.resource
        try:
            step = _to_step(span)
        except ValidationError as exc:
            path, msg = error_field(exc, where)
            self.problem(line, path, f"{msg}; the span is kept unmapped", span.trace_id)
            step = _bare_step(span)
        earlier = pending.by_id.get(step.id)
        if earlier is not None:
            same = earlier.model_dump() == step.model_dump()
            if same or (step.ended_at is None and earlier.ended_at is not None):
                # Exporters retry, and some send a span when it starts and again when it ends: keep the
                # finished record, once.
                self.result.skip("duplicate span", self.file, line)
                return
            if earlier.ended_at is None and step.ended_at is not None:
                for entry in pending.entries:
                    if entry.step is earlier:
                        entry.step = step
                pending.by_id[step.id] = step
                self.result.skip("duplicate span", self.file, line)
                return
            # Two different spans with one ID would make evidence ambiguous: keep both, renaming the later one.
            step.metadata["original_id"] = step.id
            step.id = f"{step.id}#{len(pending.entries)}"
        pending.by_id[step.id] = step
        pending.entries.append(_Entry(step, span.name, trace_fields(span.attributes),
                                      span.attributes.get("input.value"), span.attributes.get("output.value")))
        pending.size += 1
        self.held += 1

    def add_event(self, trace_id: str, span_id: str, event: dict[str, Any]) -> None:
        """A GenAI event that arrived as a log record: read into its span's step when the trace is assembled."""
        pending = self._pending(trace_id)
        pending.log_events.setdefault(span_id, []).append(event)
        pending.size += 1
        self.held += 1

    def over_budget(self) -> Iterator[Trace]:
        """The least recently touched traces, while more than `max_pending` spans are held."""
        while self.held > self.max_pending and self.traces:
            trace_id, pending = self.traces.popitem(last=False)
            self.held -= pending.size
            self.handed_on_early = True
            yield from self._finish(trace_id, pending)

    def traces_out(self) -> Iterator[Trace]:
        while self.traces:
            trace_id, pending = self.traces.popitem(last=False)
            self.held -= pending.size
            yield from self._finish(trace_id, pending)

    def _finish(self, trace_id: str, pending: _Pending) -> Iterator[Trace]:
        trace: Trace | None = None
        if pending.entries:
            trace = _assemble(trace_id, pending, self.file, part=self.handed_on_early)
        unread = {sid: evs for sid, evs in pending.log_events.items() if evs}
        if unread:
            # GenAI log records whose span is not in this part: kept with the trace, and read into the span's
            # step when the store merges this part with one that has it (stored before, or arriving later).
            if trace is None:
                trace = Trace(id=trace_id, source=self.file)
            trace.metadata[PENDING_LOG_EVENTS] = unread
        if trace is not None:
            # The spans of one trace may come in parts (lines, files, or handed on early): the store combines
            # a part with what it already holds, span by span.
            trace.merge = True
            yield trace


def _link_events(pending: _Pending) -> None:
    """Log records join their span's events; then every step reads the GenAI events it has."""
    for e in pending.entries:
        step = e.step
        logged = pending.log_events.pop(step.id, None)
        if logged:
            events = step.metadata.get("events")
            step.metadata["events"] = [*(events if isinstance(events, list) else []), *logged]
        for problem in apply_genai_events(step):
            pending.problems.append(f"span {step.id}: {problem}")


def _assemble(trace_id: str, pending: _Pending, source: str, *, part: bool = False) -> Trace:
    """A trace from its spans. `part`: the spans may be only part of the trace (the file is read in parts), so a
    span whose parent is missing does not name the trace."""
    _link_events(pending)
    entries = pending.entries
    ids = {e.step.id for e in entries}
    for e in entries:
        parent = e.step.parent_id
        if parent is not None and parent not in ids:
            # The parent is in another file or was never exported: show the span as a root, keeping the link.
            e.step.metadata["missing_parent_id"] = parent
            e.step.parent_id = None
    cut_parent_loops([e.step for e in entries])
    parent_of = {e.step.id: e.step.parent_id for e in entries}

    def depth(step_id: str) -> int:
        d = 0
        p = parent_of.get(step_id)
        while p is not None:
            d += 1
            p = parent_of.get(p)
        return d

    never = datetime.max.replace(tzinfo=UTC)
    order = sorted(range(len(entries)), key=lambda i: (
        entries[i].step.started_at or never, depth(entries[i].step.id), i))
    entries = [entries[i] for i in order]
    steps = [e.step for e in entries]
    true_roots = [e for e in entries if e.step.parent_id is None and "missing_parent_id" not in e.step.metadata]
    root = true_roots[0] if true_roots else next((e for e in entries if e.step.parent_id is None), entries[0])

    # A part without its root (the rest of the trace comes later) says nothing of the whole trace's name or text.
    whole = bool(true_roots) or not part
    trace = Trace(id=trace_id, name=root.span_name if whole else None, source=source)
    starts = [s.started_at for s in steps if s.started_at]
    ends = [s.ended_at for s in steps if s.ended_at]
    trace.started_at = min(starts) if starts else None
    trace.ended_at = max(ends) if ends else None
    if trace.started_at and trace.ended_at and trace.ended_at < trace.started_at:
        trace.metadata["clock_skew"] = True  # both kept as reported: the store shows no (negative) duration
    if pending.resource:
        trace.metadata["resource"] = pending.resource
    for e in entries:
        hints = e.hints
        if trace.prompt is None and hints.get("prompt"):
            trace.prompt = hints["prompt"]
        if "prompt_template" in hints:
            trace.metadata.setdefault("prompt_template", hints["prompt_template"])
        trace.session_id = trace.session_id or hints.get("session_id")
        trace.user_id = trace.user_id or hints.get("user_id")
        for tag in hints.get("tags", []):
            if tag not in trace.tags:
                trace.tags.append(tag)

    llm = [s for s in steps if s.type == "llm"]
    if llm:
        users = [m for m in llm[0].messages if m.role == "user"]
        if users and users[-1].text():
            trace.input = users[-1].text()
        out = llm[-1].output_message
        if out is not None and out.text():
            trace.output = out.text()
    # Without model text to quote, the root span's own input and output (OpenInference) say what the trace did.
    if whole and trace.input is None and isinstance(root.input_value, str) and root.input_value:
        trace.input = root.input_value
    if whole and trace.output is None and isinstance(root.output_value, str) and root.output_value:
        trace.output = root.output_value

    trace.steps = steps
    if pending.problems:
        trace.partial = True
        trace.problems = list(pending.problems)
    return trace


# ---------------------------------------------------------------------------------------------------------------
# OTLP requests (spans and GenAI log records) and OpenInference / Phoenix span records.
# ---------------------------------------------------------------------------------------------------------------

_SPAN_FIELDS = {"traceId", "spanId", "parentSpanId", "name", "kind", "startTimeUnixNano", "endTimeUnixNano",
                "attributes", "events", "status", "links"}
_SPAN_FIELDS |= {_snake(f) for f in _SPAN_FIELDS}


def _attributes(c: _Collector, raw: Any, line: int | None, where: str, trace_id: str | None) -> dict[str, Any]:
    """Decode an OTLP key/value list; a broken entry is reported and left out, the others are kept."""
    if raw is None:
        return {}
    if isinstance(raw, dict):  # already a plain map
        return {str(k): decode_any_value(v) for k, v in raw.items()}
    if not isinstance(raw, list):
        c.problem(line, where, "expected a list of key/value pairs", trace_id)
        return {}
    out: dict[str, Any] = {}
    for i, kv in enumerate(raw):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            c.problem(line, f"{where}.{i}", "attribute without a key, left out", trace_id)
            continue
        out[kv["key"]] = decode_any_value(kv.get("value"))
    return out


def _time_field(c: _Collector, raw: Mapping[str, Any], names: tuple[str, ...], line: int | None, where: str,
                trace_id: str | None) -> datetime | None:
    """The first of the named nanosecond times that is set; a bad one is reported and read as unknown."""
    for name in names:
        key, value = _field(raw, name)
        try:
            at = _nanos(value)
        except ValueError as exc:
            c.problem(line, f"{where}.{key}", str(exc), trace_id)
            continue
        if at is not None:
            return at
    return None


def _read_otlp_span(c: _Collector, raw: Any, line: int | None, where: str, resource: dict[str, Any],
                    scope: dict[str, Any]) -> None:
    if not isinstance(raw, dict):
        c.problem(line, where, f"expected a span object, found {type(raw).__name__}")
        return
    tkey, tid = _field(raw, "traceId")
    trace_id = _hex_id(tid)
    if trace_id is None:
        c.problem(line, f"{where}.{tkey}", "span without a trace ID, left out")
        return
    skey, sid = _field(raw, "spanId")
    span_id = _hex_id(sid)
    if span_id is None:
        c.problem(line, f"{where}.{skey}", "span without a span ID, left out", trace_id)
        return
    pkey, pid = _field(raw, "parentSpanId")
    parent_id = _hex_id(pid) if pid not in (None, "") else None
    if pid not in (None, "") and not isinstance(pid, str):
        c.problem(line, f"{where}.{pkey}", "parent span ID is not a string; shown as a root", trace_id)
    start = _time_field(c, raw, ("startTimeUnixNano",), line, where, trace_id)
    end = _time_field(c, raw, ("endTimeUnixNano",), line, where, trace_id)
    akey, attrs_raw = _field(raw, "attributes")
    attributes = _attributes(c, attrs_raw, line, f"{where}.{akey}", trace_id)
    _, status = _field(raw, "status")
    status = status if isinstance(status, dict) else {}
    events = []
    ekey, raw_events = _field(raw, "events")
    for i, ev in enumerate(raw_events if isinstance(raw_events, list) else []):
        if not isinstance(ev, dict):
            c.problem(line, f"{where}.{ekey}.{i}", "expected an event object", trace_id)
            continue
        at = _time_field(c, ev, ("timeUnixNano",), line, f"{where}.{ekey}.{i}", trace_id)
        events.append({"name": ev.get("name"), "time": format_time(at),
                       "attributes": _attributes(c, ev.get("attributes"), line, f"{where}.{ekey}.{i}.attributes",
                                                 trace_id)})
    meta: dict[str, Any] = {}
    if scope:
        meta["scope"] = scope
    _, links = _field(raw, "links")
    if isinstance(links, list) and links:
        meta["links"] = [
            {"trace_id": _hex_id(_field(lk, "traceId")[1]), "span_id": _hex_id(_field(lk, "spanId")[1]),
             "attributes": _attributes(c, lk.get("attributes"), line, f"{where}.links.{i}.attributes", trace_id)}
            for i, lk in enumerate(links) if isinstance(lk, dict)
        ]
    # Everything else OTLP says of the span (flags, trace state, dropped counts) is kept as found.
    other = {k: v for k, v in raw.items() if k not in _SPAN_FIELDS}
    if other:
        meta["otlp"] = other
    span_name = raw.get("name")
    c.add(_Span(
        trace_id=trace_id, span_id=span_id, parent_id=parent_id,
        name=span_name if isinstance(span_name, str) and span_name else None,
        attributes=attributes, start=start, end=end, kind=_span_kind(_field(raw, "kind")[1]),
        status=_status_code(status.get("code")), status_message=_opt_text(status.get("message")), events=events,
        metadata=meta, resource=resource or None,
    ), line, where)


def _scope(c: _Collector, raw: Any, line: int | None, where: str) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    if isinstance(raw, dict):
        scope = {k: raw[k] for k in ("name", "version") if raw.get(k)}
        if raw.get("attributes"):
            scope["attributes"] = _attributes(c, raw["attributes"], line, f"{where}.scope.attributes", None)
    return scope


def _resource(c: _Collector, container: Mapping[str, Any], line: int | None, where: str) -> dict[str, Any]:
    _, res = _field(container, "resource")
    return _attributes(c, res.get("attributes") if isinstance(res, dict) else None, line,
                       f"{where}.resource.attributes", None)


def _read_resource_spans(c: _Collector, rs: Any, line: int | None, where: str) -> None:
    if not isinstance(rs, dict):
        c.problem(line, where, "expected an object")
        return
    resource = _resource(c, rs, line, where)
    skey, scope_spans = _field(rs, "scopeSpans", "instrumentationLibrarySpans")
    for j, ss in enumerate(scope_spans if isinstance(scope_spans, list) else []):
        _read_scope_spans(c, ss, line, f"{where}.{skey}.{j}", resource)


def _read_scope_spans(c: _Collector, ss: Any, line: int | None, swhere: str, resource: dict[str, Any]) -> None:
    if not isinstance(ss, dict):
        c.problem(line, swhere, "expected an object")
        return
    scope = _scope(c, _field(ss, "scope", "instrumentationLibrary")[1], line, swhere)
    pkey, spans = _field(ss, "spans")
    for k, span in enumerate(spans if isinstance(spans, list) else []):
        _read_otlp_span(c, span, line, f"{swhere}.{pkey}.{k}", resource, scope)


def _read_request(c: _Collector, doc: dict[str, Any], line: int | None, prefix: str) -> None:
    key, resource_spans = _field(doc, "resourceSpans")
    if not isinstance(resource_spans, list):
        c.problem(line, prefix + key, "expected a list")
        return
    for i, rs in enumerate(resource_spans):
        _read_resource_spans(c, rs, line, f"{prefix}{key}.{i}")


def _read_logs(c: _Collector, doc: dict[str, Any], line: int | None, prefix: str) -> None:
    """A logs request: its GenAI event records that name a span are read into that span's step; the others
    are counted as skipped (a line of only other records once, as "logs, not traces")."""
    key, resource_logs = _field(doc, "resourceLogs")
    used = other = loose = 0
    for i, rl in enumerate(resource_logs if isinstance(resource_logs, list) else []):
        where = f"{prefix}{key}.{i}"
        if not isinstance(rl, dict):
            other += 1
            continue
        skey, scope_logs = _field(rl, "scopeLogs", "instrumentationLibraryLogs")
        for j, sl in enumerate(scope_logs if isinstance(scope_logs, list) else []):
            if not isinstance(sl, dict):
                other += 1
                continue
            rkey, records = _field(sl, "logRecords")
            for k, rec in enumerate(records if isinstance(records, list) else []):
                rwhere = f"{where}.{skey}.{j}.{rkey}.{k}"
                if not isinstance(rec, dict):
                    other += 1
                    continue
                attributes = _attributes(c, _field(rec, "attributes")[1], line, f"{rwhere}.attributes", None)
                name = _field(rec, "eventName")[1] or attributes.get("event.name")
                if not is_genai_event(name):
                    other += 1
                    continue
                trace_id = _hex_id(_field(rec, "traceId")[1])
                span_id = _hex_id(_field(rec, "spanId")[1])
                if trace_id is None or span_id is None:
                    loose += 1
                    continue
                at = _time_field(c, rec, ("timeUnixNano", "observedTimeUnixNano"), line, rwhere, trace_id)
                event: dict[str, Any] = {
                    "name": name, "time": format_time(at),
                    "attributes": {k: v for k, v in attributes.items() if k != "event.name"},
                    "body": decode_any_value(_field(rec, "body")[1]), "source": "log",
                }
                c.add_event(trace_id, span_id, event)
                used += 1
    if loose:
        c.result.skipped["GenAI log records not tied to a span"] += loose
    if used == 0 and loose == 0:
        c.result.skip("logs, not traces", c.file, line)
    elif other:
        c.result.skipped["log records that are not GenAI events"] += other


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested attribute objects (Phoenix writes {"llm": {"model_name": ...}}) as the flat dotted keys OTel uses."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: value}


def _iso_time(c: _Collector, value: Any, line: int | None, where: str, trace_id: str | None) -> datetime | None:
    try:
        return parse_time(value)
    except (ValueError, TypeError, OverflowError) as exc:
        c.problem(line, where, f"not a time: {exc}", trace_id)
        return None


def _unflatten_record(rec: dict[str, Any]) -> dict[str, Any]:
    """A Phoenix spans-dataframe row ({"context.span_id": ..., "attributes.llm.model_name": ...}) as a record."""
    out: dict[str, Any] = {"context": {}, "attributes": {}}
    for k, v in rec.items():
        if k.startswith("context."):
            out["context"][k[len("context."):]] = v
        elif k.startswith("attributes."):
            if v is not None:  # a dataframe has a column for every attribute any span had
                out["attributes"][k[len("attributes."):]] = v
        else:
            out[k] = v
    return out


def _read_span_record(c: _Collector, rec: dict[str, Any], line: int | None, where: str) -> None:
    """One span as Phoenix's REST API, OpenInference or the OTel SDK's console exporter write it:
    {"name", "context": {"trace_id", "span_id"}, "parent_id", "span_kind", "start_time", "end_time" (ISO),
    "status_code"/"status_message" or "status": {...}, "attributes" (flat or nested), "events": [...]}."""
    ctx = rec["context"]
    trace_id = _hex_id(ctx.get("trace_id"))
    if trace_id is None:
        c.problem(line, f"{where}context.trace_id", "span without a trace ID, left out")
        return
    span_id = _hex_id(ctx.get("span_id"))
    if span_id is None:
        c.problem(line, f"{where}context.span_id", "span without a span ID, left out", trace_id)
        return
    start = _iso_time(c, rec.get("start_time"), line, f"{where}start_time", trace_id)
    end = _iso_time(c, rec.get("end_time"), line, f"{where}end_time", trace_id)
    raw_attrs = rec.get("attributes")
    attributes = _flatten(raw_attrs) if isinstance(raw_attrs, dict) else {}
    if raw_attrs is not None and not isinstance(raw_attrs, dict):
        c.problem(line, f"{where}attributes", "expected an object; left out", trace_id)
    kind = rec.get("span_kind")
    if isinstance(kind, str) and kind.upper() in _OPENINFERENCE_KINDS and "openinference.span.kind" not in attributes:
        attributes["openinference.span.kind"] = kind
    raw_status = rec.get("status")
    status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
    code = status.get("status_code", rec.get("status_code"))
    message = status.get("description", rec.get("status_message"))
    events = []
    raw_events = rec.get("events")
    for i, ev in enumerate(raw_events if isinstance(raw_events, list) else []):
        if not isinstance(ev, dict):
            c.problem(line, f"{where}events.{i}", "expected an event object", trace_id)
            continue
        at = _iso_time(c, ev.get("timestamp", ev.get("time")), line, f"{where}events.{i}.timestamp", trace_id)
        ev_attrs = ev.get("attributes")
        events.append({"name": ev.get("name"), "time": format_time(at),
                       "attributes": _flatten(ev_attrs) if isinstance(ev_attrs, dict) else {}})
    resource = rec.get("resource", {}).get("attributes") if isinstance(rec.get("resource"), dict) else None
    known = {"name", "context", "parent_id", "kind", "span_kind", "start_time", "end_time", "status",
             "status_code", "status_message", "attributes", "events", "resource"}
    other = {k: v for k, v in rec.items() if k not in known}
    kind_name = rec.get("kind")
    name = rec.get("name")
    parent = rec.get("parent_id")
    c.add(_Span(
        trace_id=trace_id, span_id=span_id, parent_id=_hex_id(parent) if isinstance(parent, str) else None,
        name=name if isinstance(name, str) and name else None, attributes=attributes, start=start, end=end,
        kind=_span_kind(kind_name) if kind_name else None, status=_status_code(code),
        status_message=_opt_text(message), events=events, metadata={"record": other} if other else {},
        resource=resource if isinstance(resource, dict) else None,
    ), line, where)


def _is_span_record(rec: Mapping[str, Any]) -> bool:
    return isinstance(rec.get("context"), dict) and "span_id" in rec["context"]


def _read_record(c: _Collector, rec: Any, line: int | None, prefix: str = "") -> None:
    """One JSON value of the file: an OTLP request, a non-trace OTLP record, a span record, or a list of these."""
    if isinstance(rec, list):
        for i, item in enumerate(rec):
            _read_record(c, item, line, f"{prefix}{i}.")
        return
    if not isinstance(rec, dict):
        c.problem(line, prefix[:-1] or None, f"expected a JSON object, found {type(rec).__name__}")
        return
    if _field(rec, "resourceSpans")[1] is not None:
        _read_request(c, rec, line, prefix)
        return
    if _field(rec, "resourceLogs")[1] is not None:
        _read_logs(c, rec, line, prefix)
        return
    for name, reason in (("resourceMetrics", "metrics, not traces"), ("resourceProfiles", "profiles, not traces")):
        if _field(rec, name)[1] is not None:
            c.result.skip(reason, c.file, line)
            return
    if _is_span_record(rec):
        _read_span_record(c, rec, line, prefix)
        return
    if "context.span_id" in rec:
        _read_span_record(c, _unflatten_record(rec), line, prefix)
        return
    data = rec.get("data")
    if isinstance(data, list) and data and all(isinstance(d, dict) and _is_span_record(d) for d in data):
        # Phoenix's REST answer: {"data": [spans], "next_cursor": ...}
        _read_record(c, data, line, f"{prefix}data.")
        return
    c.result.skip("not trace data", c.file, line)


# ---------------------------------------------------------------------------------------------------------------
# Files: JSON (a document, several, or JSON Lines), protobuf, either of them gzip-compressed.
# ---------------------------------------------------------------------------------------------------------------


def _compressed(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open_binary(path: Path) -> BufferedIOBase:
    return gzip.open(path, "rb") if _compressed(path) else open(path, "rb")


def _open_text(path: Path) -> IO[str]:
    if _compressed(path):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


BINARY_SUFFIXES = (".pb", ".protobuf", ".binpb")
_LONG_LINE = 1 << 20  # characters: a first line longer than this is read as a document, in pieces


def looks_binary(head: bytes, suffix: str) -> bool:
    """Whether the first bytes of a (decompressed) file are protobuf rather than JSON text.

    JSON text never holds control characters other than tab, newline and carriage return; protobuf's field tags
    and lengths put them in the first few bytes. A file named .pb that does not open like JSON is protobuf too.
    """
    if any(b < 0x20 and b not in (0x09, 0x0A, 0x0D) for b in head):
        return True
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    return suffix.lower() in BINARY_SUFFIXES and bool(text) and text[:1] not in (b"{", b"[")


def _is_protobuf(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    with _open_binary(path) as fh:
        head = fh.read(4096)
    return looks_binary(head, Path(name).suffix)


def _read_document(c: _Collector, fh: IO[str], head: str) -> Iterator[Trace]:
    """A whole-file JSON document, or several written one after another (pretty-printed console output), read a
    piece at a time: a request's resourceSpans entries one by one, so that memory does not grow with the file."""
    held: tuple[Any, Any, dict[str, Any], dict[str, Any]] | None = None  # the resource and scope being read
    for piece in read_documents(fh, head):
        if piece.kind == "error":
            c.problem(piece.line, None, f"invalid JSON: {piece.message}")
            return
        value = scrub_parsed(piece.value, piece.raw)
        if piece.kind in ("span", "scope_spans") and piece.context is not None:
            rs, ss = piece.context
            swhere = piece.where.rsplit(".", 2)[0] if piece.kind == "span" else piece.where
            if held is None or held[0] is not rs or held[1] is not ss:
                rwhere = swhere.rsplit(".", 2)[0]
                scope_raw = _field(ss, "scope", "instrumentationLibrary")[1] if ss is not None else None
                held = (rs, ss, _resource(c, scrub(rs), None, rwhere), _scope(c, scrub(scope_raw), None, swhere))
            if piece.kind == "span":
                _read_otlp_span(c, value, None, piece.where, held[2], held[3])
            else:
                _read_scope_spans(c, value, None, swhere, held[2])
        elif piece.kind == "resource_spans":
            _read_resource_spans(c, value, None, piece.where)
        else:
            _read_record(c, value, None, piece.prefix)
        yield from c.over_budget()


def _read_line(c: _Collector, line: str, lineno: int) -> None:
    if not line.strip():
        return
    try:
        rec = json.loads(line)
    except RecursionError:
        c.problem(lineno, None, "JSON nested too deeply to read")
        return
    except json.JSONDecodeError as exc:
        c.problem(lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
        return
    _read_record(c, scrub_parsed(rec, line), lineno)


def _read_text(c: _Collector, path: Path) -> Iterator[Trace]:
    with _open_text(path) as fh:
        first = ""
        first_no = 0
        while True:
            # A line at a time, but never more than _LONG_LINE characters of it: one very long line is a
            # document to read in pieces, not a line to read whole.
            first = fh.readline(_LONG_LINE)
            first_no += 1
            if not first or first.strip():
                break
        first = first.lstrip("\ufeff")
        long_line = len(first) >= _LONG_LINE and not first.endswith("\n")
        if long_line or first.strip() in ("{", "[") or not first.strip():
            # A pretty-printed document (or one too long to be a line): only the whole text parses, so it is
            # read in pieces.
            yield from _read_document(c, fh, first)
            return
        # JSON Lines (the Collector's file exporter); a single-line document is the one-line case.
        _read_line(c, first, first_no)
        yield from c.over_budget()
        for lineno, line in enumerate(fh, start=first_no + 1):
            _read_line(c, line, lineno)
            yield from c.over_budget()


def _read_binary(c: _Collector, path: Path) -> Iterator[Trace]:
    try:
        from .otlp_protobuf import read_protobuf
    except ImportError as exc:  # an install without the protobuf packages still reads JSON
        c.problem(None, None, f"an OTLP protobuf file, and protobuf support is not installed ({exc})")
        return
    with _open_binary(path) as fh:
        for part in read_protobuf(fh):
            if part.kind == "problem":
                c.problem(None, part.where[:-1] or None, part.problem or "cannot be read")
            elif part.kind == "spans" and part.record is not None:
                _read_resource_spans(c, scrub(part.record), None, part.where[:-1])
            elif part.kind == "logs" and part.record is not None:
                _read_logs(c, scrub(part.record), None, part.where)
            elif part.kind == "metrics":
                c.result.skipped["metrics, not traces"] += 1
            yield from c.over_budget()


def read_otlp(path: Path, result: ImportResult, *, max_pending_spans: int | None = None) -> Iterator[Trace]:
    """Traces from an OTLP file (JSON: one request, JSON Lines of requests; protobuf: one request or a framed
    stream; either gzip-compressed), or from OpenInference / Phoenix span records (a list or JSON Lines).

    Spans are grouped by trace ID, so a trace spread over many lines is one trace; GenAI events sent as log
    records join their span. At most `max_pending_spans` spans are held (default MAX_PENDING_SPANS): past that
    the least recently touched traces are yielded early, and a trace completed later comes as a second part.
    Every trace is yielded with `merge` set, so that the store combines the parts span by span.
    Bad lines and spans are reported in `result.problems` and the rest still imports; only OSError is raised.
    """
    c = _Collector(path, result, MAX_PENDING_SPANS if max_pending_spans is None else max_pending_spans)
    try:
        if _is_protobuf(path):
            yield from _read_binary(c, path)
        else:
            yield from _read_text(c, path)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        # A truncated or corrupt gzip stream: keep what was read before it broke.
        result.problems.append(ImportProblem(str(path), None, None, f"compressed data is damaged: {exc}"))
    yield from c.traces_out()


def traces_from_request(doc: Mapping[str, Any], source: str, result: ImportResult) -> list[Trace]:
    """The traces in one OTLP ExportTraceServiceRequest (or the GenAI events of an ExportLogsServiceRequest, as
    parts of their traces), as protobuf-JSON (camelCase or snake_case keys).

    A request holds only part of a trace (an exporter sends each span, or each batch, as it ends), so every trace is
    returned with `merge` set: the store combines the parts span by span, and relinks a span whose parent came in
    another request (store.db.merge_traces). Bad spans and fields are reported in `result.problems`.
    """
    spans = doc.get("resourceSpans", doc.get("resource_spans"))
    logs = doc.get("resourceLogs", doc.get("resource_logs"))
    if spans is None and logs is None:
        return []  # an empty request (protobuf leaves out empty fields): nothing in it
    collector = _Collector(Path(source), result, max_pending=2**62)
    # As for a file read in parts: a request without the root span says nothing of the trace's name or text.
    collector.handed_on_early = True
    if spans is not None:
        _read_request(collector, dict(doc), None, "")
    if logs is not None:
        # A logs request (POST /v1/logs): its GenAI events join their span's step, now or when the span comes.
        _read_logs(collector, dict(doc), None, "")
    traces = list(collector.traces_out())
    for trace in traces:
        trace.merge = True  # a span whose parent came in another request is relinked when the store merges
    return traces
