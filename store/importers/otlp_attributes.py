"""Flat span attribute maps (OpenTelemetry GenAI, OpenInference, Traceloop) as native step and trace fields.

Nothing here knows OTLP: other importers can use these functions on attribute maps from any container.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..models import Message, PromptRef, Step, ToolCall

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
# Cache counts are part of the input and reasoning counts part of the output (the OpenTelemetry convention);
# `reconcile_usage` converts spans that report them outside.
_USAGE_FIELDS = {
    # input (deprecated GenAI, Traceloop and OpenInference names too)
    "input_tokens": "input_tokens", "prompt_tokens": "input_tokens", "prompt": "input_tokens",
    # output
    "output_tokens": "output_tokens", "completion_tokens": "output_tokens", "completion": "output_tokens",
    # cache reads
    "cache_read.input_tokens": "cache_read_tokens", "cache_read_input_tokens": "cache_read_tokens",
    "prompt_details.cache_read": "cache_read_tokens", "input_tokens_details.cached_tokens": "cache_read_tokens",
    "prompt_tokens_details.cached_tokens": "cache_read_tokens",
    # cache writes
    "cache_creation.input_tokens": "cache_write_tokens", "cache_creation_input_tokens": "cache_write_tokens",
    "prompt_details.cache_write": "cache_write_tokens",
    # reasoning
    "reasoning_tokens": "reasoning_tokens", "reasoning.output_tokens": "reasoning_tokens",
    "completion_details.reasoning": "reasoning_tokens", "output_tokens_details.reasoning_tokens": "reasoning_tokens",
    "completion_tokens_details.reasoning_tokens": "reasoning_tokens",
}
_MAX_COUNT = 2**53  # the largest count a native Usage holds
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


def message_dict(m: Message, finish_reason: Any = None) -> dict[str, Any]:
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
            out.append(message_dict(msg, finish))
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
            fields["output"] = message_dict(messages_from(message, "assistant")[-1], choices[0].get("finish_reason"))
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
    """Native counts from every usage key; the keys without a native field (or with a value no count can be,
    such as a negative number) are kept in `extra` as found."""
    usage: dict[str, int] = {}
    extra: dict[str, Any] = {}
    for prefix in _USAGE_PREFIXES:
        for key in a.with_prefix(prefix):
            rest = key[len(prefix):]
            value = a.take(key)
            native = _USAGE_FIELDS.get(rest)
            count = _as_int(value)
            if count is not None and not 0 <= count <= _MAX_COUNT:
                native = None  # never a negative (or impossible) count: kept as reported, not counted
            if native is not None and count is not None and native not in usage:
                usage[native] = count
            elif native is not None and usage.get(native) == count:
                continue  # the same count under its deprecated name
            else:
                extra[rest] = count if count is not None else value
    if not usage and not extra:
        return None
    return {**usage, "extra": extra}


def reconcile_usage(usage: dict[str, Any]) -> tuple[list[str], dict[str, int]]:
    """Bring counts reported the other way round to the convention, in place: input includes cache reads and
    writes, output includes reasoning. A span whose cache counts exceed its input (Anthropic-style
    instrumentation reports cache outside input) gets them added; likewise reasoning beyond output.

    Returns what was converted (for the step's "usage_converted") and the counts as reported before.
    """
    notes: list[str] = []
    reported: dict[str, int] = {}
    inp = usage.get("input_tokens")
    cached = (usage.get("cache_read_tokens") or 0) + (usage.get("cache_write_tokens") or 0)
    if isinstance(inp, int) and cached > inp and inp + cached <= _MAX_COUNT:
        reported["input_tokens"] = inp
        usage["input_tokens"] = inp + cached
        notes.append("cache outside input")
    out = usage.get("output_tokens")
    reasoning = usage.get("reasoning_tokens")
    if isinstance(out, int) and isinstance(reasoning, int) and reasoning > out and out + reasoning <= _MAX_COUNT:
        reported["output_tokens"] = out
        usage["output_tokens"] = out + reasoning
        notes.append("reasoning outside output")
    return notes, reported


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
        notes, reported = reconcile_usage(usage)
        if notes:
            meta["usage_converted"] = "; ".join(notes)
            meta["usage_reported"] = reported
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


# Prompt name and version attributes, by convention, in order of precedence.
_PROMPT_KEYS: tuple[tuple[str | None, str], ...] = (
    ("gen_ai.prompt.name", "gen_ai.prompt.version"),
    ("langfuse.prompt.name", "langfuse.prompt.version"),
    ("langfuse.observation.prompt.name", "langfuse.observation.prompt.version"),
    ("traceloop.prompt.key", "traceloop.prompt.version"),
    (None, "llm.prompt_template.version"),  # OpenInference names no prompt, only the template's version
)
# Free-form metadata a prompt reference may sit in: OpenInference's `metadata` (a JSON string, or nested keys in
# Phoenix's records), Traceloop's association properties, Langfuse's metadata.
_METADATA_PREFIXES = ("metadata.", "traceloop.association.properties.", "langfuse.trace.metadata.",
                      "langfuse.observation.metadata.")
_METADATA_NAME_KEYS = ("prompt_name", "promptName", "prompt.name")
_METADATA_VERSION_KEYS = ("prompt_version", "promptVersion", "prompt.version")


def _version_value(v: Any) -> Any:
    return v if isinstance(v, (int, float, str)) and not isinstance(v, bool) and v != "" else None


def _flat_dict(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _metadata_maps(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    maps = []
    meta = _json_value(attributes.get("metadata"))
    if isinstance(meta, dict):
        maps.append(_flat_dict(meta))
    keys = [k for k in attributes if k.startswith(_METADATA_PREFIXES)]
    for prefix in _METADATA_PREFIXES if keys else ():
        sub = {k[len(prefix):]: attributes[k] for k in keys if k.startswith(prefix)}
        if sub:
            maps.append(sub)
    return maps


def prompt_ref(attributes: Mapping[str, Any]) -> PromptRef | None:
    """The prompt name and version a span names: the first convention that names either, then metadata keys
    such as `prompt_version` for what it left out."""
    name: str | None = None
    version: Any = None
    for name_key, version_key in _PROMPT_KEYS:
        n = _opt_text(attributes.get(name_key)) if name_key else None
        v = _version_value(attributes.get(version_key))
        if n is not None or v is not None:
            name, version = n, v
            break
    if name is None or version is None:
        for m in _metadata_maps(attributes):
            if name is None:
                name = next((t for t in (_opt_text(m.get(k)) for k in _METADATA_NAME_KEYS) if t), None)
            if version is None:
                version = next((x for x in (_version_value(m.get(k)) for k in _METADATA_VERSION_KEYS)
                                if x is not None), None)
    if name is None and version is None:
        return None
    return PromptRef.model_validate({"name": name, "version": version})


def trace_fields(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Trace-level facts one span's attributes carry: prompt reference, session, user, tags, prompt template."""
    out: dict[str, Any] = {}
    prompt = prompt_ref(attributes)
    if prompt is not None:
        out["prompt"] = prompt
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

