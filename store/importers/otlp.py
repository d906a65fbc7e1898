"""OTLP/JSON traces (a request, Collector file dumps, gzip) and OpenInference span records, as native traces."""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import json
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from ..models import Message, PromptRef, Step, ToolCall, Trace, format_time, parse_time
from .base import ImportProblem, ImportResult, error_field, scrub_parsed

# ---------------------------------------------------------------------------------------------------------------
# Mapping a flat attribute map (OpenTelemetry GenAI, OpenInference, Traceloop) to native step fields.
# These functions know nothing of OTLP, so other importers can use them on attribute maps from other containers.
# ---------------------------------------------------------------------------------------------------------------

_OPENINFERENCE_KINDS = {
    "LLM": "llm", "TOOL": "tool", "RETRIEVER": "retrieval", "EMBEDDING": "embedding", "AGENT": "agent",
    "CHAIN": "chain", "GUARDRAIL": "guardrail",
}
_GENAI_OPERATIONS = {
    "chat": "llm", "text_completion": "llm", "generate_content": "llm", "execute_tool": "tool",
    "embeddings": "embedding", "invoke_agent": "agent", "create_agent": "agent",
}
_TRACELOOP_KINDS = {"workflow": "chain", "task": "chain", "agent": "agent", "tool": "tool"}
# Traceloop before gen_ai.operation.name existed said what an LLM span was in llm.request.type.
_TRACELOOP_REQUEST_TYPES = {"chat": "llm", "completion": "llm", "embedding": "embedding"}

_MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name", "llm.response.model",
               "llm.request.model")
_PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
_USAGE_PREFIXES = ("gen_ai.usage.", "llm.token_count.", "llm.usage.")
# Usage keys (after their prefix) that name a native count; every other usage key is kept in Usage.extra.
_USAGE_FIELDS = {
    "input_tokens": "input_tokens", "prompt_tokens": "input_tokens", "prompt": "input_tokens",
    "output_tokens": "output_tokens", "completion_tokens": "output_tokens", "completion": "output_tokens",
    "cache_read.input_tokens": "cache_read_tokens", "cache_read_input_tokens": "cache_read_tokens",
    "prompt_details.cache_read": "cache_read_tokens",
    "cache_creation.input_tokens": "cache_write_tokens", "cache_creation_input_tokens": "cache_write_tokens",
    "prompt_details.cache_write": "cache_write_tokens",
    "reasoning_tokens": "reasoning_tokens", "reasoning.output_tokens": "reasoning_tokens",
    "completion_details.reasoning": "reasoning_tokens",
}
# The leaves of flattened lists that are read into messages and tool definitions; unknown leaves stay attributes.
_OPENINFERENCE_MESSAGE_LEAVES = frozenset({
    "message.role", "message.content", "message.name", "message.tool_call_id",
    "message.contents.*.message_content.type", "message.contents.*.message_content.text",
    "message.contents.*.message_content.image.image.url",
    "message.tool_calls.*.tool_call.id", "message.tool_calls.*.tool_call.function.name",
    "message.tool_calls.*.tool_call.function.arguments",
})
_TRACELOOP_MESSAGE_LEAVES = frozenset({
    "role", "content", "tool_call_id", "finish_reason", "tool_calls.*.id", "tool_calls.*.name",
    "tool_calls.*.arguments",
})
_OPENINFERENCE_TOOL_LEAVES = frozenset({"tool.json_schema", "tool.name", "tool.description"})
_TRACELOOP_FUNCTION_LEAVES = frozenset({"name", "description", "parameters"})


class _Attrs:
    """A span's attributes, recording which were read into native fields so that only the rest stay metadata."""

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        self.all = dict(attributes)
        self.used: set[str] = set()

    def get(self, key: str) -> Any:
        return self.all.get(key)

    def take(self, key: str) -> Any:
        if key in self.all:
            self.used.add(key)
        return self.all.get(key)

    def first(self, keys: Iterable[str]) -> tuple[str | None, Any]:
        for key in keys:
            v = self.all.get(key)
            if v is not None and v != "":
                return key, v
        return None, None

    def take_equal(self, keys: Iterable[str], value: Any) -> None:
        """Mark every key holding `value` as read: the same model or provider said twice is not news."""
        for key in keys:
            if key in self.all and self.all[key] == value:
                self.used.add(key)

    def with_prefix(self, prefix: str) -> list[str]:
        return [k for k in self.all if k.startswith(prefix)]

    def leftover(self) -> dict[str, Any]:
        return {k: v for k, v in self.all.items() if k not in self.used}


def _opt_text(v: Any) -> str | None:
    if isinstance(v, bool) or v is None or v == "":
        return None
    if isinstance(v, (int, float)):
        return str(v)
    return v if isinstance(v, str) else None


def _json_value(v: Any) -> Any:
    """A JSON string decoded when it holds an object or array; anything else is kept as given."""
    if isinstance(v, str):
        try:
            decoded = json.loads(v)
        except ValueError:
            return v
        if isinstance(decoded, (dict, list)):
            return decoded
    return v


def _json_deep(v: Any, depth: int = 3) -> Any:
    """Like _json_value, but also unwraps JSON encoded more than once (Traceloop encodes outputs twice)."""
    for _ in range(depth):
        if not isinstance(v, str):
            return v
        try:
            v = json.loads(v)
        except ValueError:
            return v
    return v


def _json_list(v: Any) -> list[Any] | None:
    v = _json_value(v)
    return v if isinstance(v, list) else None


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v.strip())
    return None


def _indexed(a: _Attrs, prefix: str, leaves: frozenset[str]) -> list[Any]:
    """Rebuild a flattened list (`prefix.N.leaf...`) in index order from the keys whose leaf is known."""
    items: dict[int, dict[str, Any]] = {}
    for key in a.with_prefix(prefix):
        head, _, rest = key[len(prefix):].partition(".")
        if not head.isdigit() or not rest:
            continue
        segments = rest.split(".")
        if ".".join("*" if s.isdigit() else s for s in segments) not in leaves:
            continue
        node = items.setdefault(int(head), {})
        for seg in segments[:-1]:
            nxt = node.get(seg)
            if not isinstance(nxt, dict):
                nxt = node[seg] = {}
            node = nxt
        node[segments[-1]] = a.take(key)
    return [_listify(items[i]) for i in sorted(items)]


def _listify(node: Any) -> Any:
    """Nested dicts whose keys are all indices become lists, in index order."""
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_listify(node[k]) for k in sorted(node, key=int)]
    return {k: _listify(v) for k, v in node.items()}


def _part(p: Any) -> Any:
    """One content part in the native content-list shape (text parts as {"type": "text", "text": ...})."""
    if isinstance(p, str):
        return {"type": "text", "text": p}
    if not isinstance(p, dict):
        return p
    if isinstance(p.get("message_content"), dict):  # OpenInference wraps each part
        p = p["message_content"]
    kind = p.get("type")
    if kind == "text":
        return {"type": "text", "text": p.get("content", p.get("text"))}
    if kind == "reasoning":
        # Message.text() reads "content": keep the model's reasoning out of the text that rules quote.
        return {"type": "reasoning", "reasoning": p.get("content")}
    if kind == "image" and isinstance(p.get("image"), dict):
        image = p["image"].get("image", p["image"])
        return {"type": "image", "url": image.get("url") if isinstance(image, dict) else image}
    return p


def _content(parts: list[Any]) -> Any:
    if not parts:
        return None
    if len(parts) == 1 and isinstance(parts[0], dict) and parts[0].get("type") == "text":
        return parts[0].get("text")
    return parts


def _tool_call(tc: Any) -> ToolCall:
    if not isinstance(tc, dict):
        return ToolCall(name="", arguments=tc)
    if isinstance(tc.get("tool_call"), dict):  # OpenInference
        tc = tc["tool_call"]
    fn = tc.get("function")
    if isinstance(fn, dict):  # OpenAI
        name, args = fn.get("name"), fn.get("arguments")
    else:
        name, args = tc.get("name"), tc.get("arguments")
    label = name if isinstance(name, str) else ("" if name is None else json.dumps(name, ensure_ascii=False))
    return ToolCall(id=_opt_text(tc.get("id")), name=label, arguments=_json_value(args))


def messages_from(obj: Any, default_role: str) -> list[Message]:
    """Native messages from one message in any shape spans carry: GenAI parts, OpenAI, OpenInference, Traceloop.

    A GenAI message may answer several tool calls at once; each answer becomes its own message, as in OpenAI's
    format, because a native message names one tool call.
    """
    if obj is None:
        return []
    if not isinstance(obj, dict):
        return [Message(role=default_role, content=obj)]
    if isinstance(obj.get("message"), dict) and "role" not in obj:  # OpenInference
        obj = obj["message"]
    role = obj.get("role") if isinstance(obj.get("role"), str) and obj.get("role") else default_role
    name = _opt_text(obj.get("name"))
    calls: list[ToolCall] = []
    answers: list[Message] = []
    if isinstance(obj.get("parts"), list):
        parts = []
        for p in obj["parts"]:
            kind = p.get("type") if isinstance(p, dict) else None
            if kind == "tool_call":
                calls.append(_tool_call(p))
            elif kind == "tool_call_response":
                answers.append(Message(role=role, content=p.get("response"), tool_call_id=_opt_text(p.get("id")),
                                       name=name))
            else:
                parts.append(_part(p))
        content = _content(parts)
    else:
        content = obj.get("content")
        if content is None and isinstance(obj.get("contents"), list):
            content = _content([_part(p) for p in obj["contents"]])
        raw_calls = obj.get("tool_calls")
        for tc in raw_calls if isinstance(raw_calls, list) else []:
            calls.append(_tool_call(tc))
    out = answers
    if content is not None or calls or not answers:
        out.append(Message(role=role, content=content, tool_calls=calls,
                           tool_call_id=_opt_text(obj.get("tool_call_id")), name=name))
    return out


def _message_dict(m: Message, finish_reason: Any = None) -> dict[str, Any]:
    """A step output in the native shape: {"role", "content", "tool_calls"?...}."""
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [tc.model_dump() for tc in m.tool_calls]
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    if m.name:
        out["name"] = m.name
    if finish_reason is not None:
        out["finish_reason"] = finish_reason
    return out


def _input_messages(a: _Attrs) -> list[Message]:
    msgs: list[Message] = []
    raw = _json_list(a.get("gen_ai.input.messages"))
    if raw is not None:
        a.take("gen_ai.input.messages")
        for m in raw:
            msgs.extend(messages_from(m, "user"))
    elif a.with_prefix("llm.input_messages."):
        for m in _indexed(a, "llm.input_messages.", _OPENINFERENCE_MESSAGE_LEAVES):
            msgs.extend(messages_from(m, "user"))
    elif any(k[len("gen_ai.prompt."):].split(".")[0].isdigit() for k in a.with_prefix("gen_ai.prompt.")):
        for m in _indexed(a, "gen_ai.prompt.", _TRACELOOP_MESSAGE_LEAVES):
            msgs.extend(messages_from(m, "user"))
    elif isinstance(a.get("gen_ai.prompt"), str):
        # The deprecated single attribute: a JSON list of messages, or the prompt text itself.
        raw = _json_list(a.take("gen_ai.prompt"))
        if raw is None:
            msgs.append(Message(role="user", content=a.get("gen_ai.prompt")))
        else:
            for m in raw:
                msgs.extend(messages_from(m, "user"))
    system = a.get("gen_ai.system_instructions")
    if system is not None:
        a.take("gen_ai.system_instructions")
        parts = _json_list(system)
        content = _content([_part(p) for p in parts]) if parts is not None else system
        msgs.insert(0, Message(role="system", content=content))
    return msgs


def _output_messages(a: _Attrs) -> list[dict[str, Any]]:
    """Every output message as a native dict; the step's output is the first."""
    raw: list[Any] | None = _json_list(a.get("gen_ai.output.messages"))
    if raw is not None:
        a.take("gen_ai.output.messages")
    elif a.with_prefix("llm.output_messages."):
        raw = _indexed(a, "llm.output_messages.", _OPENINFERENCE_MESSAGE_LEAVES)
    elif any(k[len("gen_ai.completion."):].split(".")[0].isdigit() for k in a.with_prefix("gen_ai.completion.")):
        raw = _indexed(a, "gen_ai.completion.", _TRACELOOP_MESSAGE_LEAVES)
    elif isinstance(a.get("gen_ai.completion"), str):
        # The deprecated single attribute: a JSON list of messages, {"text", "finish_reason"}, or the text itself.
        value = _json_value(a.take("gen_ai.completion"))
        if isinstance(value, dict) and "role" not in value and "parts" not in value:
            extra = {k: v for k, v in value.items() if k != "text"}
            value = {"role": "assistant", "content": value.get("text"), **extra}
        raw = value if isinstance(value, list) else [value]
    out = []
    for m in raw or []:
        finish = m.get("finish_reason") if isinstance(m, dict) else None
        if isinstance(m, dict) and isinstance(m.get("message"), dict):
            finish = m.get("finish_reason", finish)
        for msg in messages_from(m, "assistant"):
            out.append(_message_dict(msg, finish))
    return out


def _from_io_values(a: _Attrs) -> dict[str, Any]:
    """Messages and output of an LLM span that has only OpenInference's input.value/output.value.

    The values are read, not consumed: they often hold the whole request or response, more than messages.
    """
    fields: dict[str, Any] = {}
    request = _json_value(a.get("input.value"))
    if isinstance(request, dict) and isinstance(request.get("messages"), list):
        request = request["messages"]
    if isinstance(request, list) and request and all(isinstance(m, dict) and "role" in m for m in request):
        fields["messages"] = [msg for m in request for msg in messages_from(m, "user")]
    response = _json_value(a.get("output.value"))
    choices = response.get("choices") if isinstance(response, dict) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        # An OpenAI chat completion as returned by the API.
        message = choices[0].get("message")
        if isinstance(message, dict):
            fields["output"] = _message_dict(messages_from(message, "assistant")[-1], choices[0].get("finish_reason"))
    elif isinstance(response, dict) and isinstance(response.get("text"), str):
        fields["output"] = {"role": "assistant", "content": response["text"],
                            **({"finish_reason": response["finish_reason"]} if "finish_reason" in response else {})}
    elif isinstance(response, str) and response and a.get("output.mime_type") in (None, "text/plain"):
        fields["output"] = {"role": "assistant", "content": response}
    return fields


def _tool_definitions(a: _Attrs) -> list[Any]:
    defs = _json_list(a.get("gen_ai.tool.definitions"))
    if defs is not None:
        a.take("gen_ai.tool.definitions")
        return defs
    out: list[Any] = []
    for t in _indexed(a, "llm.tools.", _OPENINFERENCE_TOOL_LEAVES):
        tool = t.get("tool", {}) if isinstance(t, dict) else {}
        schema = _json_value(tool.get("json_schema"))
        out.append(schema if schema is not None else {k: v for k, v in tool.items() if k != "json_schema"})
    for f in _indexed(a, "llm.request.functions.", _TRACELOOP_FUNCTION_LEAVES):
        out.append({k: _json_value(v) for k, v in f.items()} if isinstance(f, dict) else f)
    return out


def _usage(a: _Attrs) -> dict[str, Any] | None:
    usage: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for prefix in _USAGE_PREFIXES:
        for key in a.with_prefix(prefix):
            rest = key[len(prefix):]
            value = a.take(key)
            native = _USAGE_FIELDS.get(rest)
            count = _as_int(value)
            if native is not None and count is not None and native not in usage:
                usage[native] = count
            elif native in usage and usage[native] == count:
                continue  # the same count under its deprecated name
            else:
                extra[rest] = count if count is not None else value
    if not usage and not extra:
        return None
    return {**usage, "extra": extra}


def _params(a: _Attrs) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key in a.with_prefix("gen_ai.request."):
        rest = key[len("gen_ai.request."):]
        if rest != "model":  # the requested model stays an attribute when the response names another
            params[rest] = a.take(key)
    invocation = _json_value(a.get("llm.invocation_parameters"))
    if isinstance(invocation, dict):
        a.take("llm.invocation_parameters")
        for k, v in invocation.items():
            params.setdefault(k, v)
    return params


def step_type(attributes: Mapping[str, Any]) -> str:
    """The native step type a span's attributes say, by the first convention present."""
    kind = attributes.get("openinference.span.kind")
    if isinstance(kind, str) and kind.strip():
        return _OPENINFERENCE_KINDS.get(kind.strip().upper(), "other")
    for key, table in (("gen_ai.operation.name", _GENAI_OPERATIONS), ("traceloop.span.kind", _TRACELOOP_KINDS),
                       ("llm.request.type", _TRACELOOP_REQUEST_TYPES)):
        value = attributes.get(key)
        if isinstance(value, str) and value.strip().lower() in table:
            return table[value.strip().lower()]
    # A span naming a model and counting tokens is a model call even when no convention says so.
    if any(attributes.get(k) for k in _MODEL_KEYS) and any(k.startswith(_USAGE_PREFIXES) for k in attributes):
        return "llm"
    return "other"


def map_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Native Step fields from a flat attribute map; attributes not read into a field are in metadata["attributes"].

    The result has no id, parent, times or status: those come from the span around the attributes.
    """
    a = _Attrs(attributes)
    fields: dict[str, Any] = {}
    kind = step_type(attributes)
    fields["type"] = kind
    if kind != "other" and isinstance(a.get("openinference.span.kind"), str):
        a.take("openinference.span.kind")
    meta: dict[str, Any] = {}

    key, model = a.first(_MODEL_KEYS)
    if key is not None:
        fields["model"] = str(model)
        a.take_equal(_MODEL_KEYS, model)
    key, provider = a.first(_PROVIDER_KEYS)
    if key is not None:
        fields["provider"] = str(provider)
        a.take_equal(_PROVIDER_KEYS, provider)
    params = _params(a)
    if params:
        fields["params"] = params
    usage = _usage(a)
    if usage is not None:
        fields["usage"] = usage
    messages = _input_messages(a)
    if messages:
        fields["messages"] = messages
    outputs = _output_messages(a)
    if outputs:
        fields["output"] = outputs[0]
        if len(outputs) > 1:
            meta["output_messages"] = outputs
    if kind == "llm" and not messages and not outputs:
        fields.update(_from_io_values(a))
    tools = _tool_definitions(a)
    if tools:
        meta["tool_definitions"] = tools

    # Tool execution: GenAI attributes on any span; OpenInference and Traceloop input/output only on tool spans,
    # where they are the call's arguments and result rather than a chain's free-form payload.
    key, _ = a.first(("gen_ai.tool.name", "tool.name", "tool_call.function.name"))
    if key is not None and kind == "tool":
        fields["name"] = str(a.take(key))
    elif kind == "tool" and a.get("traceloop.entity.name"):
        fields["name"] = str(a.take("traceloop.entity.name"))
    key, _ = a.first(("gen_ai.tool.call.id", "tool_call.id"))
    if key is not None:
        fields["tool_call_id"] = _opt_text(a.take(key))
    arg_keys = ["gen_ai.tool.call.arguments", "tool_call.function.arguments"]
    result_keys = ["gen_ai.tool.call.result"]
    if kind == "tool":
        arg_keys += ["input.value", "traceloop.entity.input"]
        result_keys += ["output.value", "traceloop.entity.output"]
    key, args = a.first(arg_keys)
    if key is not None:
        a.take(key)
        args = _json_deep(args) if key.startswith("traceloop.") else _json_value(args)
        if key == "traceloop.entity.input" and isinstance(args, dict) and not args.get("args"):
            # Traceloop records a Python call as {"args": [], "kwargs": {...}}: keyword calls are the arguments.
            args = args.get("kwargs", args)
        fields["arguments"] = args
    key, result = a.first(result_keys)
    if key is not None:
        a.take(key)
        fields["result"] = _json_deep(result) if key.startswith("traceloop.") else _json_value(result)

    meta["attributes"] = a.leftover()
    fields["metadata"] = meta
    return fields


def trace_fields(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Trace-level facts one span's attributes carry: prompt reference, session, user, tags, prompt template."""
    out: dict[str, Any] = {}
    for name_key, version_key in (("gen_ai.prompt.name", "gen_ai.prompt.version"),
                                  ("langfuse.prompt.name", "langfuse.prompt.version"),
                                  ("traceloop.prompt.key", "traceloop.prompt.version"),
                                  (None, "llm.prompt_template.version")):
        name = attributes.get(name_key) if name_key else None
        version = attributes.get(version_key)
        name, version = _opt_text(name), version if isinstance(version, (int, float, str)) and version != "" else None
        if name is not None or version is not None:
            out["prompt"] = PromptRef.model_validate({"name": name, "version": version})
            break
    template = {k.rsplit(".", 1)[1]: _json_value(attributes[k]) for k in
                ("llm.prompt_template.template", "llm.prompt_template.variables") if k in attributes}
    if template:
        out["prompt_template"] = template
    for target, keys in (("session_id", ("session.id", "gen_ai.conversation.id", "langfuse.session.id")),
                         ("user_id", ("user.id", "enduser.id", "langfuse.user.id"))):
        for k in keys:
            if _opt_text(attributes.get(k)):
                out[target] = _opt_text(attributes[k])
                break
    tags = _json_value(attributes.get("tag.tags", attributes.get("langfuse.trace.tags")))
    if isinstance(tags, list):
        out["tags"] = [str(t) for t in tags]
    return out


def step_from_attributes(attributes: Mapping[str, Any], **fields: Any) -> Step:
    """A Step from a flat attribute map plus the span's own fields (id, parent_id, name, times, status...)."""
    mapped = map_attributes(attributes)
    meta = {**mapped.pop("metadata"), **fields.pop("metadata", {})}
    if mapped.get("name") and fields.get("name") and mapped["name"] != fields["name"]:
        meta["span_name"] = fields["name"]
    return Step.model_validate({**fields, **mapped, "metadata": meta})


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
    """A trace or span ID as lower-case hex. Some exporters write base64 (the proto bytes) or a 0x prefix."""
    if not isinstance(v, str) or not v.strip():
        return None
    text = v.strip()
    if text.startswith("0x"):
        text = text[2:]
    if re.fullmatch(r"[0-9a-fA-F]+", text):
        return text.lower()
    if len(text) in (12, 24) and re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", text):
        try:
            return base64.b64decode(text, validate=True).hex()
        except (binascii.Error, ValueError):
            pass
    return text


def _nanos(v: Any) -> datetime | None:
    """A datetime from unix nanoseconds (a number or a decimal string); 0 means unset. Raises ValueError."""
    if v is None or v == "" or v == 0 or v == "0":
        return None
    n = _as_int(v)
    if n is None:
        raise ValueError(f"not a time in unix nanoseconds: {v!r}")
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
    fields: dict[str, Any] = {
        "id": span.span_id, "parent_id": span.parent_id, "name": span.name,
        "started_at": span.start, "ended_at": span.end, "status": span.status,
    }
    if span.status == "error":
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
    """Spans grouped by trace ID over the whole file, with the problems met on the way."""

    def __init__(self, path: Path, result: ImportResult) -> None:
        self.file = str(path)
        self.result = result
        self.traces: dict[str, _Pending] = {}

    def problem(self, line: int | None, where: str | None, message: str, trace_id: str | None = None) -> None:
        self.result.problems.append(ImportProblem(self.file, line, where, message))
        if trace_id is not None:
            pending = self.traces.setdefault(trace_id, _Pending())
            at = f"line {line}: " if line is not None else ""
            pending.problems.append(f"{at}{where + ': ' if where else ''}{message}")

    def add(self, span: _Span, line: int | None, where: str) -> None:
        pending = self.traces.setdefault(span.trace_id, _Pending())
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
            if earlier.model_dump() == step.model_dump():
                # Exporters retry: the same span sent twice is one span.
                self.result.skipped["duplicate span"] += 1
                return
            # Two different spans with one ID would make evidence ambiguous: keep both, renaming the later one.
            step.metadata["original_id"] = step.id
            step.id = f"{step.id}#{len(pending.entries)}"
        pending.by_id[step.id] = step
        pending.entries.append(_Entry(step, span.name, trace_fields(span.attributes),
                                      span.attributes.get("input.value"), span.attributes.get("output.value")))

    def traces_out(self) -> Iterator[Trace]:
        for trace_id, pending in self.traces.items():
            if pending.entries:
                yield _assemble(trace_id, pending, self.file)


def _assemble(trace_id: str, pending: _Pending, source: str) -> Trace:
    entries = pending.entries
    ids = {e.step.id for e in entries}
    for e in entries:
        parent = e.step.parent_id
        if parent is not None and parent not in ids:
            # The parent is in another file or was never exported: show the span as a root, keeping the link.
            e.step.metadata["missing_parent_id"] = parent
            e.step.parent_id = None
    parent_of = {e.step.id: e.step.parent_id for e in entries}
    for e in entries:
        # Parent links that loop (bad data) would hide every span in the loop from the tree: cut the loop here.
        seen = {e.step.id}
        p = parent_of[e.step.id]
        while p is not None and p not in seen:
            seen.add(p)
            p = parent_of.get(p)
        if p == e.step.id:
            e.step.metadata["cyclic_parent_id"] = e.step.parent_id
            e.step.parent_id = parent_of[e.step.id] = None

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
    root = next((e for e in entries if e.step.parent_id is None), entries[0])

    trace = Trace(id=trace_id, name=root.span_name, source=source)
    starts = [s.started_at for s in steps if s.started_at]
    ends = [s.ended_at for s in steps if s.ended_at]
    trace.started_at = min(starts) if starts else None
    trace.ended_at = max(ends) if ends else None
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
    else:
        # Without model calls to read, the root span's own input and output (OpenInference) say what the trace did.
        if isinstance(root.input_value, str) and root.input_value:
            trace.input = root.input_value
        if isinstance(root.output_value, str) and root.output_value:
            trace.output = root.output_value

    trace.steps = steps
    if pending.problems:
        trace.partial = True
        trace.problems = list(pending.problems)
    return trace


# ---------------------------------------------------------------------------------------------------------------
# OTLP requests and OpenInference span records.
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
    times: list[datetime | None] = []
    for name in ("startTimeUnixNano", "endTimeUnixNano"):
        key, value = _field(raw, name)
        try:
            times.append(_nanos(value))
        except ValueError as exc:
            c.problem(line, f"{where}.{key}", str(exc), trace_id)
            times.append(None)
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
        try:
            at = format_time(_nanos(_field(ev, "timeUnixNano")[1]))
        except ValueError as exc:
            c.problem(line, f"{where}.{ekey}.{i}.timeUnixNano", str(exc), trace_id)
            at = None
        events.append({"name": ev.get("name"), "time": at,
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
        attributes=attributes, start=times[0], end=times[1], kind=_span_kind(_field(raw, "kind")[1]),
        status=_status_code(status.get("code")), status_message=_opt_text(status.get("message")), events=events,
        metadata=meta, resource=resource or None,
    ), line, where)


def _read_request(c: _Collector, doc: dict[str, Any], line: int | None, prefix: str) -> None:
    key, resource_spans = _field(doc, "resourceSpans")
    if not isinstance(resource_spans, list):
        c.problem(line, prefix + key, "expected a list")
        return
    for i, rs in enumerate(resource_spans):
        where = f"{prefix}{key}.{i}"
        if not isinstance(rs, dict):
            c.problem(line, where, "expected an object")
            continue
        _, res = _field(rs, "resource")
        resource = _attributes(c, res.get("attributes") if isinstance(res, dict) else None, line,
                               f"{where}.resource.attributes", None)
        skey, scope_spans = _field(rs, "scopeSpans", "instrumentationLibrarySpans")
        for j, ss in enumerate(scope_spans if isinstance(scope_spans, list) else []):
            swhere = f"{where}.{skey}.{j}"
            if not isinstance(ss, dict):
                c.problem(line, swhere, "expected an object")
                continue
            _, sc = _field(ss, "scope", "instrumentationLibrary")
            scope: dict[str, Any] = {}
            if isinstance(sc, dict):
                scope = {k: sc[k] for k in ("name", "version") if sc.get(k)}
                if sc.get("attributes"):
                    scope["attributes"] = _attributes(c, sc["attributes"], line, f"{swhere}.scope.attributes", None)
            pkey, spans = _field(ss, "spans")
            for k, span in enumerate(spans if isinstance(spans, list) else []):
                _read_otlp_span(c, span, line, f"{swhere}.{pkey}.{k}", resource, scope)


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


def _read_span_record(c: _Collector, rec: dict[str, Any], line: int | None, where: str) -> None:
    """One span as OpenInference/Phoenix or the OTel SDK's console exporter write it ({"context": {...}, ...})."""
    ctx = rec["context"]
    trace_id = _hex_id(ctx.get("trace_id"))
    if trace_id is None:
        c.problem(line, f"{where}context.trace_id", "span without a trace ID, left out")
        return
    span_id = _hex_id(ctx.get("span_id"))
    if span_id is None:
        c.problem(line, f"{where}context.span_id", "span without a span ID, left out", trace_id)
        return
    times: list[datetime | None] = []
    for key in ("start_time", "end_time"):
        try:
            times.append(parse_time(rec.get(key)))
        except (ValueError, TypeError, OverflowError) as exc:
            c.problem(line, f"{where}{key}", f"not a time: {exc}", trace_id)
            times.append(None)
    attributes = _flatten(rec.get("attributes") or {}) if isinstance(rec.get("attributes"), dict) else {}
    kind = rec.get("span_kind")
    if isinstance(kind, str) and kind.upper() in _OPENINFERENCE_KINDS and "openinference.span.kind" not in attributes:
        attributes["openinference.span.kind"] = kind
    raw_status = rec.get("status")
    status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
    code = status.get("status_code", rec.get("status_code"))
    message = status.get("description", rec.get("status_message"))
    events = [
        {"name": ev.get("name"), "time": ev.get("timestamp"), "attributes": _flatten(ev.get("attributes") or {})}
        for ev in rec.get("events") or [] if isinstance(ev, dict)
    ]
    resource = rec.get("resource", {}).get("attributes") if isinstance(rec.get("resource"), dict) else None
    known = {"name", "context", "parent_id", "kind", "span_kind", "start_time", "end_time", "status",
             "status_code", "status_message", "attributes", "events", "resource"}
    other = {k: v for k, v in rec.items() if k not in known}
    kind_name = rec.get("kind")
    name = rec.get("name")
    c.add(_Span(
        trace_id=trace_id, span_id=span_id, parent_id=_hex_id(rec.get("parent_id")),
        name=name if isinstance(name, str) and name else None, attributes=attributes, start=times[0], end=times[1],
        kind=_span_kind(kind_name) if kind_name else None, status=_status_code(code),
        status_message=_opt_text(message), events=events, metadata={"record": other} if other else {},
        resource=resource if isinstance(resource, dict) else None,
    ), line, where)


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
    for name, reason in (("resourceLogs", "logs, not traces"), ("resourceMetrics", "metrics, not traces"),
                         ("resourceProfiles", "profiles, not traces")):
        if _field(rec, name)[1] is not None:
            c.result.skipped[reason] += 1
            return
    if isinstance(rec.get("context"), dict) and "span_id" in rec["context"]:
        _read_span_record(c, rec, line, prefix)
        return
    c.result.skipped["not trace data"] += 1


def _open(path: Path) -> IO[str]:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _read_document(c: _Collector, text: str) -> None:
    """A whole-file JSON document, or several written one after another (pretty-printed console output)."""
    decoder = json.JSONDecoder()
    pos = 0
    count = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return
        try:
            rec, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            # The document cannot be resynchronised after a syntax error; what was read before is kept.
            c.problem(exc.lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
            return
        _read_record(c, scrub_parsed(rec, text), None, "" if count == 0 else f"[{count}].")
        count += 1


def read_otlp(path: Path, result: ImportResult) -> Iterator[Trace]:
    """Traces from an OTLP/JSON file: one request, JSON Lines of requests (gzip or not), or OpenInference spans.

    Spans are grouped by trace ID over the whole file, so a trace spread over many lines is one trace.
    Bad lines and spans are reported in `result.problems` and the rest still imports; only OSError is raised.
    """
    c = _Collector(path, result)
    try:
        with _open(path) as fh:
            first = ""
            first_no = 0
            for first_no, first in enumerate(fh, start=1):  # noqa: B007 (used after the loop)
                if first.strip():
                    break
            first = first.lstrip("\ufeff")
            if first.strip() in ("{", "[") or not first.strip():
                # A pretty-printed document: only the whole text parses.
                _read_document(c, first + fh.read())
            else:
                # JSON Lines (the Collector's file exporter); a single-line document is the one-line case.
                _read_line(c, first, first_no)
                for lineno, line in enumerate(fh, start=first_no + 1):
                    _read_line(c, line, lineno)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        # A truncated or corrupt gzip stream: keep what was read before it broke.
        result.problems.append(ImportProblem(str(path), None, None, f"compressed data is damaged: {exc}"))
    yield from c.traces_out()


def _read_line(c: _Collector, line: str, lineno: int) -> None:
    if not line.strip():
        return
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        c.problem(lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
        return
    _read_record(c, scrub_parsed(rec, line), lineno)

