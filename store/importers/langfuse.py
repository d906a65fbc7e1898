"""Langfuse trace exports ({"trace": ..., "observations": [...]}) as native traces, usage in loupe's convention."""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ..models import Message, PromptRef, Step, Trace, parse_time
from .base import ImportProblem, ImportResult, cut_parent_loops, salvage, scrub
from .otlp import map_attributes, messages_from, step_type
from .otlp_attributes import message_dict

# Langfuse observation types (the v3 set; older exports use only SPAN, GENERATION and EVENT) as native step types.
_TYPES = {
    "GENERATION": "llm", "AGENT": "agent", "TOOL": "tool", "CHAIN": "chain", "RETRIEVER": "retrieval",
    "EMBEDDING": "embedding", "GUARDRAIL": "guardrail", "EVALUATOR": "other", "EVENT": "other",
}
# What a plain SPAN's OpenTelemetry attributes may make it. Never "llm": Langfuse did not count the span as a
# generation, and an LLM step here would add its usage on top of the generations below it.
_SPAN_KINDS = ("agent", "chain", "tool", "retrieval", "embedding", "guardrail")

# Observation fields read into native step fields; everything else is kept in step.metadata["langfuse"].
_MAPPED = frozenset({"id", "parentObservationId", "type", "name", "startTime", "endTime", "model", "input", "output",
                     "metadata"})
_TRACE_MAPPED = frozenset({"id", "name", "userId", "sessionId", "tags", "input", "output", "metadata", "timestamp",
                           "observations"})

# usageDetails keys. Langfuse keeps usage types disjoint: "input" counts only the uncached input, and each
# input_*/cache* key (cached reads, cache writes, audio...) and output_* key (reasoning...) is counted beside it,
# with total = the sum of all. Its OTel ingestion subtracts the cache and reasoning counts to get there.
_INPUT_BASE = ("input", "input_tokens", "prompt_tokens", "promptTokens", "prompt")
_OUTPUT_BASE = ("output", "output_tokens", "completion_tokens", "completionTokens", "completion")
_TOTAL = ("total", "total_tokens", "totalTokens")
_OUTPUT_PARTS = frozenset({"reasoning", "reasoning_tokens", "thoughts_tokens"})

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_WS = re.compile(r"[ \t\r\n]*")


# ---------------------------------------------------------------------------------------------------------------
# Values: Langfuse stores input, output and metadata as JSON text, sometimes encoded twice.
# ---------------------------------------------------------------------------------------------------------------


def _decoded(value: Any, depth: int = 3) -> Any:
    """A JSON string decoded (repeatedly) while it holds an object, an array or another string."""
    for _ in range(depth):
        if not isinstance(value, str):
            return value
        try:
            inner = json.loads(value)
        except ValueError:
            return value
        # "42" or "true" as text stays text: only a JSON container or string is an encoding of the value.
        if not isinstance(inner, (dict, list, str)):
            return value
        value = inner
    return value


def _count(value: Any) -> int | None:
    """A token count: a whole number of at least 0 (numbers written as text are accepted), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 0 <= value <= 2**53:
        return value
    return None


def _money(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    x = float(value)
    return x if x == x and 0 <= x < float("inf") else None


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("role"), str) and bool(value["role"])


def _tool_answers_apart(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """A GenAI message answering tool calls as one OpenAI-style tool message per answer.

    Frameworks wrap the answers in role "tool" (Microsoft Agent Framework) or "user" (Pydantic AI) and call the
    text "response" or "result"; a native tool answer is a role "tool" message naming its call and tool.
    """
    parts = msg.get("parts")
    if not isinstance(parts, list):
        return [msg]
    answers = [p for p in parts if isinstance(p, dict) and p.get("type") == "tool_call_response"]
    if not answers:
        return [msg]
    out: list[dict[str, Any]] = []
    for p in answers:
        answer: dict[str, Any] = {"role": "tool", "content": p["response"] if "response" in p else p.get("result"),
                                  "tool_call_id": _text(p.get("id"))}
        if _text(p.get("name")):
            answer["name"] = p["name"]
        out.append(answer)
    rest = [p for p in parts if not (isinstance(p, dict) and p.get("type") == "tool_call_response")]
    if rest:
        out.append({**msg, "parts": rest})
    return out


def _messages(value: Any, default_role: str) -> tuple[list[tuple[Message, Any]], Any] | None:
    """Native messages (each with its finish reason) from a message list in any shape Langfuse stores.

    Returns the messages and what else the value held (None when nothing), or None when it holds no messages.
    """
    rest: Any = None
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        rest = {k: v for k, v in value.items() if k != "messages"} or None
        value = value["messages"]
    elif isinstance(value, dict) and isinstance(value.get("choices"), list):
        # An OpenAI chat completion as the API returned it: its choices are the output messages.
        choices = [c for c in value["choices"] if isinstance(c, dict) and _is_message(c.get("message"))]
        if not choices:
            return None
        rest = {k: v for k, v in value.items() if k != "choices"} or None
        value = [{**c["message"], "finish_reason": c.get("finish_reason")} for c in choices]
    if _is_message(value):
        value = [value]
    if not isinstance(value, list) or not value or not all(_is_message(m) for m in value):
        return None
    out: list[tuple[Message, Any]] = []
    for raw in value:
        finish = raw.get("finish_reason")
        for piece in _tool_answers_apart(raw):
            out.extend((m, finish if m.role != "tool" else None) for m in messages_from(piece, default_role))
    return out, rest


# ---------------------------------------------------------------------------------------------------------------
# Usage and cost.
# ---------------------------------------------------------------------------------------------------------------


def usage_from_details(details: dict[str, int]) -> dict[str, Any] | None:
    """Native usage from Langfuse usage details (already checked to be counts).

    Langfuse counts cached input and reasoning output beside "input" and "output"; loupe counts them inside
    (input_tokens includes cached tokens, output_tokens reasoning ones), so the parts are added back. When the
    source's own total says its input or output already included them, they are not added twice. Counts are only
    ever added, never subtracted, so none can go negative.
    """
    if not details:
        return None
    left = dict(details)
    extra: dict[str, Any] = {}

    def base(keys: tuple[str, ...]) -> int | None:
        # Every spelling is taken out, so that "input_tokens" beside "input" is never counted as a part of it.
        found = [(k, left.pop(k)) for k in keys if k in left]
        for k, v in found[1:]:
            if v != found[0][1]:
                extra[k] = v
        return found[0][1] if found else None

    inp, out, total = base(_INPUT_BASE), base(_OUTPUT_BASE), base(_TOTAL)
    in_parts = {k: v for k, v in left.items() if k.startswith(("input_", "cache"))}
    out_parts = {k: v for k, v in left.items() if k.startswith("output_") or k in _OUTPUT_PARTS}
    extra.update({k: v for k, v in left.items() if k not in in_parts and k not in out_parts})
    ip, op = sum(in_parts.values()), sum(out_parts.values())

    in_inside = out_inside = False
    if total is not None and inp is not None and out is not None and (ip or op):
        for a, b in ((False, False), (True, False), (False, True), (True, True)):
            # Input that already includes its cached part can't be smaller than it (likewise output, reasoning).
            if (a and inp < ip) or (b and out < op):
                continue
            if inp + out + (0 if a else ip) + (0 if b else op) == total:
                in_inside, out_inside = a, b
                break

    usage: dict[str, Any] = {}
    if inp is not None:
        usage["input_tokens"] = inp if in_inside else inp + ip
    if out is not None:
        usage["output_tokens"] = out if out_inside else out + op
    for native, keys, words in (("cache_read_tokens", in_parts, ("cache_read", "cached")),
                                ("cache_write_tokens", in_parts, ("cache_creation", "cache_write")),
                                ("reasoning_tokens", out_parts, ("reasoning", "thought"))):
        found = [v for k, v in keys.items() if any(w in k for w in words)]
        if found:
            usage[native] = sum(found)
    counted = ("cache_read", "cached", "cache_creation", "cache_write", "reasoning", "thought")
    # Other parts (audio, image, modality counts) are inside the input or output count now; kept to show them.
    extra.update({k: v for k, v in {**in_parts, **out_parts}.items() if not any(w in k for w in counted)})
    if total is not None and (inp is None or out is None):
        extra["total"] = total  # the only count of what the input and output together came to
    usage["extra"] = extra
    return usage


# ---------------------------------------------------------------------------------------------------------------
# One export (a trace and its observations) as a native trace.
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Export:
    """Where one export sits in its file, and the problems met while reading it."""

    file: str
    line: int | None
    prefix: str  # "[2]." for the third export of a list
    item_lines: dict[str, list[int]] = field(default_factory=dict)  # "observations" -> line of each item
    notes: list[tuple[str, int | None, str]] = field(default_factory=list)  # (field path, line, message)

    def note(self, path: str, message: str, line: int | None = None) -> None:
        self.notes.append((self.prefix + path, line if line is not None else self.line, message))

    def line_of(self, key: str, index: int) -> int | None:
        lines = self.item_lines.get(key)
        return lines[index] if lines is not None and index < len(lines) else self.line


def _time(ex: _Export, raw: dict[str, Any], key: str, path: str, line: int | None) -> datetime | None:
    value = raw.get(key)
    try:
        return parse_time(value)
    except (ValueError, TypeError, OverflowError):
        ex.note(f"{path}.{key}" if path else key, f"not a time: {value!r}; left out", line)
        return None


def _dict_value(value: Any) -> Any:
    """Metadata as Langfuse exports it: an object, or JSON text of one."""
    decoded = _decoded(value)
    return decoded if isinstance(decoded, dict) else value


def _usage(ex: _Export, raw: dict[str, Any], path: str, line: int | None) -> dict[str, Any] | None:
    """Native usage of an observation from usageDetails, or from the usage fields of older exports."""
    pairs: list[tuple[str, str, Any]] = []  # (field path, usage key, value)
    details = raw.get("usageDetails")
    if isinstance(details, dict) and details:
        pairs = [(f"usageDetails.{k}", str(k), v) for k, v in details.items()]
    elif details not in (None, {}):
        ex.note(f"{path}.usageDetails", f"expected an object of token counts, found {type(details).__name__}; "
                "left out", line)
    legacy = raw.get("usage")
    if not pairs and isinstance(legacy, dict):
        if legacy.get("unit") not in (None, "TOKENS", "tokens"):
            # Characters, images or seconds are not tokens: shown, never counted as tokens.
            return {"extra": {k: v for k, v in legacy.items() if v is not None}}
        pairs = [(f"usage.{k}", k, legacy[k]) for k in ("input", "output", "total") if k in legacy]
    for keys in (("inputUsage", "outputUsage", "totalUsage"), ("promptTokens", "completionTokens", "totalTokens")):
        if not pairs:
            pairs = [(k, name, raw[k]) for k, name in zip(keys, ("input", "output", "total"), strict=True) if k in raw]
    if not pairs:
        return None
    if not pairs[0][0].startswith("usageDetails.") and not any(_count(v) for _, _, v in pairs):
        return None  # older exports fill these with 0 for observations without usage: all zeros is none known
    counts: dict[str, int] = {}
    for where, key, value in pairs:
        if value is None:
            continue
        n = _count(value)
        if n is None:
            ex.note(f"{path}.{where}", f"not a token count: {value!r}; left out", line)
            continue
        counts[key] = n
    return usage_from_details(counts)


def _cost(ex: _Export, raw: dict[str, Any], path: str, line: int | None) -> float | None:
    """The cost Langfuse reported for the observation (its own calculation, or the one the source provided)."""
    details = raw.get("costDetails")
    if isinstance(details, dict) and details:
        if "total" in details:
            total = _money(details["total"])
            if total is None:
                ex.note(f"{path}.costDetails.total", f"not a cost: {details['total']!r}; left out", line)
            return total
        parts = [_money(v) for v in details.values()]
        if all(p is not None for p in parts):
            return sum(p for p in parts if p is not None)
        ex.note(f"{path}.costDetails", "not all costs are amounts; left out", line)
        return None
    # Older exports: a positive calculated cost. Zero there means "no price", not "free".
    for key in ("calculatedTotalCost", "totalCost"):
        value = _money(raw.get(key))
        if value:
            return value
    return None


def _type(obs_type: str, attributes: dict[str, Any], has_children: bool) -> str:
    if obs_type in _TYPES:
        return _TYPES[obs_type]
    if obs_type == "SPAN" and attributes:
        # Older Langfuse typed every non-generation a SPAN: the instrumentation's attributes may say more.
        kind = step_type(attributes)
        if kind in _SPAN_KINDS:
            return kind
        if attributes.get("gen_ai.agent.name"):
            return "agent"  # Pydantic AI's "agent run" span names its agent and no operation
    return "chain" if has_children else "other"


def _put(meta: dict[str, Any], key: str, value: Any) -> None:
    """Add to metadata without overwriting what the source put there under the same key."""
    meta[key if key not in meta else f"langfuse_{key}"] = value


def _observation_fields(ex: _Export, raw: dict[str, Any], path: str, line: int | None, trace_id: str,
                        index: int, has_children: bool) -> dict[str, Any]:
    """The native step fields of one observation; what is not read into a field is kept in its metadata."""
    obs_id = raw.get("id")
    if not _text(obs_id):
        ex.note(f"{path}.id", f"missing or not an ID ({obs_id!r}); named observation-{index}", line)
        obs_id = f"observation-{index}"
    parent = raw.get("parentObservationId")
    if parent is not None and not _text(parent):
        ex.note(f"{path}.parentObservationId", f"not an ID ({parent!r}); shown as a root", line)
        parent = None
    raw_type = raw.get("type")
    obs_type = raw_type.upper() if isinstance(raw_type, str) else ""
    meta_value = _dict_value(raw.get("metadata"))
    attributes = meta_value.get("attributes") if isinstance(meta_value, dict) else None
    attributes = attributes if isinstance(attributes, dict) else {}
    kind = _type(obs_type, attributes, has_children)

    fields: dict[str, Any] = {
        "id": str(obs_id), "parent_id": _text(parent), "type": kind, "name": _text(raw.get("name")),
        "started_at": _time(ex, raw, "startTime", path, line), "ended_at": _time(ex, raw, "endTime", path, line),
        "model": _text(raw.get("model")),
    }
    if fields["ended_at"] is None and obs_type == "EVENT":
        fields["ended_at"] = fields["started_at"]  # an event is a moment
    leftover = {k: v for k, v in raw.items() if k not in _MAPPED and v not in (None, "", [], {})}
    if leftover.get("traceId") == trace_id:
        del leftover["traceId"]
    params = _dict_value(raw.get("modelParameters"))
    if isinstance(params, dict):
        leftover.pop("modelParameters", None)
        if params:
            fields["params"] = params

    usage = _usage(ex, raw, path, line)
    if usage is not None:
        fields["usage"] = usage
    cost = _cost(ex, raw, path, line)
    if cost is not None:
        fields["cost"] = cost

    level = raw.get("level")
    if level == "DEFAULT":
        leftover.pop("level", None)
    elif level == "ERROR":
        fields["status"] = "error"
        message = raw.get("statusMessage")
        fields["error"] = {"message": message if isinstance(message, str) and message else "level ERROR"}
        leftover.pop("level", None)
        leftover.pop("statusMessage", None)

    # Attributes the instrumentation sent (when Langfuse kept them): provider, tool name and call ID, and the
    # messages when Langfuse stored no input or output of its own.
    mapped = map_attributes(attributes) if attributes else {}
    if mapped.get("provider") and kind in ("llm", "embedding"):
        fields["provider"] = mapped["provider"]
    extra_meta: dict[str, Any] = {}
    inp, out = _decoded(raw.get("input")), _decoded(raw.get("output"))
    if kind == "tool":
        tool_name = next((attributes[k] for k in ("gen_ai.tool.name", "tool.name") if _text(attributes.get(k))), None)
        if tool_name and tool_name != fields["name"]:
            extra_meta["span_name"] = fields["name"]
            fields["name"] = tool_name
        call_id = next((attributes[k] for k in ("gen_ai.tool.call.id", "tool_call.id") if _text(attributes.get(k))),
                       None)
        if call_id:
            fields["tool_call_id"] = str(call_id)
        fields["arguments"] = inp if inp is not None else mapped.get("arguments")
        fields["result"] = out if out is not None else mapped.get("result")
    else:
        read_in = _messages(inp, "user")
        if read_in is not None:
            fields["messages"] = [m for m, _ in read_in[0]]
            if read_in[1] is not None:
                extra_meta["input"] = read_in[1]
        elif kind == "llm" and isinstance(inp, str):
            fields["messages"] = [Message(role="user", content=inp)]  # a completion prompt
        elif kind == "llm" and inp is None and mapped.get("messages"):
            fields["messages"] = mapped["messages"]
        elif kind == "llm":
            extra_meta["input"] = inp
        else:
            fields["arguments"] = inp
        read_out = _messages(out, "assistant")
        if read_out is not None:
            outputs = [message_dict(m, finish) for m, finish in read_out[0]]
            if read_out[1] is not None:
                extra_meta["response"] = read_out[1]
            if kind == "llm":
                # Several output messages of one call are choices: the first is the step's output.
                fields["output"] = outputs[0]
                if len(outputs) > 1:
                    extra_meta["output_messages"] = outputs
            else:
                fields["output"] = outputs[0] if len(outputs) == 1 else outputs
        elif kind == "llm" and isinstance(out, str):
            fields["output"] = {"role": "assistant", "content": out}
        elif kind == "llm" and out is None and mapped.get("output"):
            fields["output"] = mapped["output"]
        else:
            fields["output"] = out

    meta: dict[str, Any] = dict(meta_value) if isinstance(meta_value, dict) else (
        {"metadata": meta_value} if meta_value not in (None, "", [], {}) else {})
    for key, value in extra_meta.items():
        if value is not None:
            _put(meta, key, value)
    if leftover:
        _put(meta, "langfuse", leftover)
    fields["metadata"] = meta
    return {k: v for k, v in fields.items() if v is not None}


def _prompt_of(meta: Any) -> PromptRef | None:
    """A prompt reference from trace metadata: "prompt" ("name@version" or {name, version}) or name/version keys."""
    if not isinstance(meta, dict):
        return None
    value = meta.get("prompt")
    if isinstance(value, (str, dict)) and value:
        try:
            ref = PromptRef.model_validate(value)
        except ValueError:
            ref = None
        if ref is not None and (ref.name or ref.version):
            return ref
    for name_key, version_key in (("promptName", "promptVersion"), ("prompt_name", "prompt_version")):
        if _text(meta.get(name_key)):
            return PromptRef.model_validate({"name": meta[name_key], "version": meta.get(version_key)})
    return None


def _last_text(messages: list[tuple[Message, Any]], role: str) -> str | None:
    for m, _ in reversed(messages):
        if m.role == role and m.text():
            return m.text()
    return None


def _convert(ex: _Export, doc: Any, result: ImportResult) -> Trace | None:
    """One export as a native trace; bad parts are left out and noted, the trace marked partial."""
    if not isinstance(doc, dict):
        ex.note("", f"expected a trace export object, found {type(doc).__name__}")
        return None
    if isinstance(doc.get("trace"), dict):
        head, head_path = doc["trace"], "trace."
        observations, obs_key = doc.get("observations"), "observations"
        wrapper = {k: v for k, v in doc.items() if k not in ("trace", "observations")}
    elif "trace" in doc:
        ex.note("trace", f"expected an object, found {type(doc['trace']).__name__}")
        return None
    elif isinstance(doc.get("observations"), list) and "id" in doc:
        # The API's trace with its observations inside (GET /api/public/traces/{id}).
        head, head_path, observations, obs_key, wrapper = doc, "", doc["observations"], "observations", {}
    else:
        result.skipped["not a Langfuse trace export"] += 1
        return None

    items: list[tuple[str, int | None, Any]] = []
    if observations is not None and not isinstance(observations, list):
        ex.note(obs_key, f"expected a list of observations, found {type(observations).__name__}; left out")
    for i, obs in enumerate(observations if isinstance(observations, list) else []):
        items.append((f"{obs_key}.{i}", ex.line_of(obs_key, i), obs))
    embedded = head.get("observations") if head is not doc else None
    if isinstance(embedded, list):
        # Exports repeat the observations inside the trace, without input and output: add only ones not seen.
        known = {o.get("id") for _, _, o in items if isinstance(o, dict)}
        for i, obs in enumerate(embedded):
            if isinstance(obs, dict) and obs.get("id") not in known:
                items.append((f"trace.observations.{i}", ex.line_of("trace.observations", i), obs))

    trace_id = _text(head.get("id"))
    if trace_id is None:
        ids = {o.get("traceId") for _, _, o in items if isinstance(o, dict) and _text(o.get("traceId"))}
        if len(ids) != 1:
            ex.note(f"{head_path}id", "trace without an ID, left out")
            return None
        trace_id = str(ids.pop())
        ex.note(f"{head_path}id", f"missing; taken from its observations' traceId {trace_id}")

    # Which observations have children decides whether a plain span is a chain or a leaf.
    parents = {o.get("parentObservationId") for _, _, o in items if isinstance(o, dict)}
    steps: list[Step] = []
    seen: set[str] = set()
    prompt: PromptRef | None = None
    for index, (path, line, obs) in enumerate(items):
        if not isinstance(obs, dict):
            ex.note(path, f"expected an observation object, found {type(obs).__name__}; left out", line)
            continue
        has_children = obs.get("id") is not None and obs.get("id") in parents
        fields = _observation_fields(ex, obs, path, line, trace_id, index, has_children)
        notes: list[tuple[str, str]] = []
        step = salvage(Step, fields, path, notes)
        for p, msg in notes:
            ex.note(p, msg, line)
        if step is None:
            continue
        if step.id in seen:
            # Two observations with one ID would make evidence ambiguous: keep both, renaming the later one.
            step.metadata["original_id"] = step.id
            step.id = f"{step.id}#{index}"
            ex.note(f"{path}.id", f"duplicate observation ID; renamed {step.id}", line)
        seen.add(step.id)
        steps.append(step)
        if prompt is None and step.type == "llm" and _text(obs.get("promptName")):
            prompt = PromptRef.model_validate({"name": obs["promptName"], "version": obs.get("promptVersion")})

    metadata = _dict_value(head.get("metadata"))
    langfuse = {k: v for k, v in head.items() if k not in _TRACE_MAPPED and v not in (None, "", [], {})}
    if wrapper:
        langfuse["export"] = wrapper
    trace_input, trace_output = _decoded(head.get("input")), _decoded(head.get("output"))
    # A message list in and out is the conversation: the trace's input and output are the user's request and the
    # final answer (as the other importers give them), with the whole lists kept beside them.
    read_in, read_out = _messages(trace_input, "user"), _messages(trace_output, "assistant")
    if read_in is not None and _last_text(read_in[0], "user") is not None:
        langfuse["input"] = trace_input
        trace_input = _last_text(read_in[0], "user")
    if read_out is not None and _last_text(read_out[0], "assistant") is not None:
        langfuse["output"] = trace_output
        trace_output = _last_text(read_out[0], "assistant")
    timestamp = _time(ex, head, "timestamp", head_path.rstrip("."), ex.line)
    starts = [t for t in [timestamp, *(s.started_at for s in steps)] if t is not None]
    ends = [t for t in (s.ended_at for s in steps) if t is not None]
    started_at = min(starts) if starts else None
    if timestamp is not None and timestamp != started_at:
        # The trace starts with its first observation (as Langfuse's latency does); its own timestamp is kept.
        langfuse["timestamp"] = head.get("timestamp")
    header: dict[str, Any] = {
        "id": trace_id, "started_at": started_at, "ended_at": max(ends) if ends else timestamp, "name": _text(head.get("name")), "user_id": _text(head.get("userId")),
        "session_id": _text(head.get("sessionId")), "tags": head.get("tags") or [], "input": trace_input,
        "output": trace_output, "source": ex.file if ex.line is None else f"{ex.file}:{ex.line}",
        "prompt": prompt or _prompt_of(metadata),
        "metadata": dict(metadata) if isinstance(metadata, dict) else (
            {"metadata": metadata} if metadata not in (None, "", [], {}) else {}),
    }
    if langfuse:
        _put(header["metadata"], "langfuse", langfuse)
    notes = []
    trace = salvage(Trace, header, head_path.rstrip("."), notes)
    for p, msg in notes:
        ex.note(p, msg)
    if trace is None:
        return None
    trace.steps = _linked(steps)
    for path, line, msg in ex.notes:
        where = f"line {line}: " if line is not None and line != ex.line else ""
        trace.problems.append(f"{where}{path + ': ' if path else ''}{msg}")
    if any("duplicate observation ID" not in msg for _, _, msg in ex.notes):
        trace.partial = True
    return trace


def _linked(steps: list[Step]) -> list[Step]:
    """Steps in start order, parents first; a parent missing from the export, or a loop, is cut (kept in metadata)."""
    ids = {s.id for s in steps}
    for s in steps:
        if s.parent_id is not None and s.parent_id not in ids:
            s.metadata["missing_parent_id"] = s.parent_id
            s.parent_id = None
    cut_parent_loops(steps)
    parent_of = {s.id: s.parent_id for s in steps}

    def depth(step_id: str) -> int:
        d, p = 0, parent_of.get(step_id)
        while p is not None:
            d, p = d + 1, parent_of.get(p)
        return d

    never = datetime.max.replace(tzinfo=UTC)
    order = sorted(range(len(steps)), key=lambda i: (steps[i].started_at or never, depth(steps[i].id), i))
    return [steps[i] for i in order]


# ---------------------------------------------------------------------------------------------------------------
# Files: one export (pretty-printed or not), a JSON list of exports, or JSON Lines of exports.
# ---------------------------------------------------------------------------------------------------------------


class _Lines:
    """Line numbers of offsets in a text."""

    def __init__(self, text: str) -> None:
        self.breaks: list[int] = []
        at = text.find("\n")
        while at != -1:
            self.breaks.append(at)
            at = text.find("\n", at + 1)

    def at(self, offset: int) -> int:
        return bisect.bisect_left(self.breaks, offset) + 1


def _ws(text: str, pos: int) -> int:
    m = _WS.match(text, pos)
    return m.end() if m else pos


def _array_at(dec: json.JSONDecoder, text: str, pos: int) -> tuple[list[Any], int, list[int]]:
    """The array starting at `pos`, where it ends, and where each item starts."""
    items: list[Any] = []
    starts: list[int] = []
    pos = _ws(text, pos + 1)
    if text.startswith("]", pos):
        return items, pos + 1, starts
    while True:
        starts.append(pos)
        value, pos = dec.raw_decode(text, pos)
        items.append(value)
        pos = _ws(text, pos)
        if text.startswith(",", pos):
            pos = _ws(text, pos + 1)
        elif text.startswith("]", pos):
            return items, pos + 1, starts
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)


def _export_at(dec: json.JSONDecoder, text: str, pos: int) -> tuple[Any, int, dict[str, list[int]]]:
    """The value at `pos`, where it ends, and where each observation of an export object starts.

    One pass: values are decoded by the json module; only the export's own keys are walked here, so that an
    observation's problems can name its line in a pretty-printed file.
    """
    if not text.startswith("{", pos):
        value, end = dec.raw_decode(text, pos)
        return value, end, {}
    out: dict[str, Any] = {}
    starts: dict[str, list[int]] = {}
    pos = _ws(text, pos + 1)
    if text.startswith("}", pos):
        return out, pos + 1, starts
    while True:
        if not text.startswith('"', pos):
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, pos)
        key, pos = dec.raw_decode(text, pos)
        pos = _ws(text, pos)
        if not text.startswith(":", pos):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, pos)
        pos = _ws(text, pos + 1)
        if key == "observations" and text.startswith("[", pos):
            value, pos, starts["observations"] = _array_at(dec, text, pos)
        elif key == "trace" and text.startswith("{", pos):
            value, pos, inner = _export_at(dec, text, pos)
            if "observations" in inner:
                starts["trace.observations"] = inner["observations"]
        else:
            value, pos = dec.raw_decode(text, pos)
        out[key] = value
        pos = _ws(text, pos)
        if text.startswith(",", pos):
            pos = _ws(text, pos + 1)
        elif text.startswith("}", pos):
            return out, pos + 1, starts
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)


def _read_document(name: str, text: str, result: ImportResult) -> Iterator[Trace]:
    """Exports in a whole-file document: one export, a list of them, or several written one after another."""
    dec = json.JSONDecoder()
    lines = _Lines(text)
    dirty = _SURROGATE_ESCAPE.search(text) is not None
    pos = _ws(text, 0)
    count = 0
    try:
        while pos < len(text):
            if text.startswith("[", pos):
                pos = _ws(text, pos + 1)
                k = 0
                while not text.startswith("]", pos):
                    if k:
                        if not text.startswith(",", pos):
                            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
                        pos = _ws(text, pos + 1)
                    start = pos
                    value, pos, starts = _export_at(dec, text, pos)
                    pos = _ws(text, pos)
                    yield from _emit(name, value, lines.at(start), f"[{k}].", starts, lines, dirty, result)
                    k += 1
                pos += 1
            else:
                start = pos
                value, pos, starts = _export_at(dec, text, pos)
                yield from _emit(name, value, lines.at(start), f"[{count}]." if count else "", starts, lines, dirty,
                                 result)
            count += 1
            pos = _ws(text, pos)
    except json.JSONDecodeError as exc:
        # A document can't be resynchronised after a syntax error: what was read before it is kept.
        result.problems.append(ImportProblem(name, exc.lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno})"))
    except RecursionError:
        result.problems.append(ImportProblem(name, None, None, "invalid JSON: nested too deeply"))


def _emit(name: str, value: Any, line: int | None, prefix: str, starts: dict[str, list[int]], lines: _Lines | None,
          dirty: bool, result: ImportResult) -> Iterator[Trace]:
    ex = _Export(name, line, prefix, {k: [lines.at(s) for s in v] for k, v in starts.items()} if lines else {})
    trace = _convert(ex, scrub(value) if dirty else value, result)
    for path, at, msg in ex.notes:
        result.problems.append(ImportProblem(name, at, path or None, msg))
    if trace is not None:
        yield trace


def _read_lines(name: str, fh: IO[str], result: ImportResult) -> Iterator[Trace]:
    for lineno, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line.lstrip("\ufeff"))
        except json.JSONDecodeError as exc:
            result.problems.append(ImportProblem(name, lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno})"))
            continue
        except RecursionError:
            result.problems.append(ImportProblem(name, lineno, None, "invalid JSON: nested too deeply"))
            continue
        dirty = _SURROGATE_ESCAPE.search(line) is not None
        if isinstance(value, list):
            for k, item in enumerate(value):
                yield from _emit(name, item, lineno, f"[{k}].", {}, None, dirty, result)
        else:
            yield from _emit(name, value, lineno, "", {}, None, dirty, result)


def read_langfuse(path: Path, result: ImportResult) -> Iterator[Trace]:
    """Traces from a Langfuse export file: one export per file (pretty-printed or not), a JSON list of exports,
    or JSON Lines with one export (or a list of them) per line.

    Bad records and fields are reported in `result.problems` with file, line and field path; the rest imports,
    the trace marked partial. Only OSError is raised.
    """
    name = str(path)
    # Bytes that are not UTF-8 are replaced (U+FFFD), visibly, rather than failing the file.
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = ""
        for first in fh:
            if first.strip():
                break
        head = first.strip().lstrip("\ufeff")
        one_line_record = False
        if head.startswith("{") and head != "{":
            try:
                one_line_record = isinstance(json.loads(head), dict)
            except (json.JSONDecodeError, RecursionError):
                one_line_record = False
        fh.seek(0)
        if one_line_record:
            yield from _read_lines(name, fh, result)
        else:
            # A pretty-printed export or a list of exports: only the whole text parses.
            yield from _read_document(name, fh.read().lstrip("\ufeff"), result)
