"""Messages carried in GenAI events, as span events or as log records tied to a span, read into the step.

Two generations of the OpenTelemetry GenAI conventions send messages this way:
- one `gen_ai.client.inference.operation.details` event per call, with `gen_ai.input.messages`,
  `gen_ai.output.messages` and `gen_ai.system_instructions` (JSON strings or structured values) as attributes;
- one event per message, `gen_ai.{system,user,assistant,tool}.message` and `gen_ai.choice`, with the message in the
  log record's body (or, as span events, in the attributes: `gen_ai.event.content` or the body's keys themselves).
Older still, `gen_ai.content.prompt` / `gen_ai.content.completion` carry `gen_ai.prompt` / `gen_ai.completion`.

An event here is a dict: {"name", "time" (ISO text or None), "attributes", "body"? , "source"?}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..models import Message, Step, Usage
from .otlp_attributes import _as_int, _json_value, map_attributes, message_dict, messages_from

_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system", "gen_ai.user.message": "user", "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_CHOICE_EVENT = "gen_ai.choice"
# Events whose attributes are read like a span's (messages, and model, usage and parameters where the span has none).
_ATTRIBUTE_EVENTS = frozenset({
    "gen_ai.client.inference.operation.details", "gen_ai.content.prompt", "gen_ai.content.completion",
})
GENAI_EVENTS = frozenset({*_MESSAGE_EVENTS, _CHOICE_EVENT, *_ATTRIBUTE_EVENTS})
# Attributes that say who sent an event, not what it holds.
_EVENT_META_KEYS = frozenset({"event.name", "gen_ai.system", "gen_ai.provider.name"})


def is_genai_event(name: Any) -> bool:
    return isinstance(name, str) and name in GENAI_EVENTS


def _ordered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events in time order; one without a time stays right after the event before it."""
    keyed = []
    last = ""
    for i, ev in enumerate(events):
        t = ev.get("time")
        if isinstance(t, str) and t:
            last = t
        keyed.append((last, i, ev))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [ev for _, _, ev in keyed]


def _body(ev: Mapping[str, Any]) -> Any:
    """What an event says: the log record's body, else (span events have none) its attributes."""
    body = ev.get("body")
    if body is not None and body != {}:
        return _json_value(body)
    attrs = ev.get("attributes") or {}
    if "gen_ai.event.content" in attrs:  # Azure AI Inference writes the body as one JSON attribute
        return _json_value(attrs["gen_ai.event.content"])
    return {k: _json_value(v) for k, v in attrs.items() if k not in _EVENT_META_KEYS}


def _message_event(name: str, body: Any) -> list[Message]:
    role = _MESSAGE_EVENTS[name]
    if not isinstance(body, dict):
        body = {"content": body}
    if role == "tool" and body.get("tool_call_id") is None and body.get("id") is not None:
        body = {**body, "tool_call_id": body["id"]}  # the answered call's ID is "id" in these events
    return messages_from(body, role)


def _choice_event(body: Any) -> tuple[int, dict[str, Any]]:
    if not isinstance(body, dict):
        body = {"message": {"content": body}}
    message = body.get("message")
    if not isinstance(message, dict):
        message = {k: v for k, v in body.items() if k not in ("index", "finish_reason")}
    msg = messages_from(message, "assistant")[-1]
    return _as_int(body.get("index")) or 0, message_dict(msg, body.get("finish_reason"))


def _attribute_event(ev: Mapping[str, Any], body: Any) -> dict[str, Any]:
    attrs = {k: v for k, v in (ev.get("attributes") or {}).items() if k != "event.name"}
    if isinstance(body, dict) and ev.get("body") is not None:
        attrs = {**body, **attrs}  # a log record may put the messages in its body
    return map_attributes(attrs)


def apply_genai_events(step: Step) -> list[str]:
    """Fill the step's messages, output (and model, provider, usage, params) from the GenAI events in its
    metadata["events"], in time order, where the span's attributes left them empty.

    Events whose content was read are removed from metadata["events"]; events that only repeat what the
    attributes said are kept there. Returns problems met (a usage that cannot be read).
    """
    events = step.metadata.get("events")
    if not isinstance(events, list):
        return []
    genai = [ev for ev in events if isinstance(ev, dict) and is_genai_event(ev.get("name"))]
    if not genai:
        return []
    problems: list[str] = []
    inputs: list[Message] = []
    outputs: list[tuple[int, dict[str, Any]]] = []
    details: list[dict[str, Any]] = []
    for ev in _ordered(genai):
        name = ev["name"]
        body = _body(ev)
        if name in _MESSAGE_EVENTS:
            inputs.extend(_message_event(name, body))
        elif name == _CHOICE_EVENT:
            outputs.append(_choice_event(body))
        else:
            mapped = _attribute_event(ev, body)
            details.append(mapped)
            inputs.extend(mapped.get("messages", []))
            more = mapped["metadata"].get("output_messages") or ([mapped["output"]] if "output" in mapped else [])
            outputs.extend((i, o) for i, o in enumerate(more))

    used = False
    if inputs and not step.messages:
        step.messages = inputs
        used = True
    if outputs and step.output is None:
        ordered = [o for _, o in sorted(outputs, key=lambda x: x[0])]  # stable: choices by index, else by time
        step.output = ordered[0]
        if len(ordered) > 1:
            step.metadata.setdefault("output_messages", ordered)
        used = True
    for mapped in details:
        used = _fill_from(step, mapped, problems) or used
    if used:
        if step.type == "other":
            step.type = "llm"
        for mapped in details:
            meta = mapped["metadata"]
            if "tool_definitions" in meta:
                step.metadata.setdefault("tool_definitions", meta["tool_definitions"])
            # What the event said that no field holds joins the span's own attributes (the span's win).
            attrs = step.metadata.setdefault("attributes", {})
            for k, v in (meta.get("attributes") or {}).items():
                attrs.setdefault(k, v)
        kept = [ev for ev in events if not (isinstance(ev, dict) and is_genai_event(ev.get("name")))]
        if kept:
            step.metadata["events"] = kept
        else:
            step.metadata.pop("events", None)
    return problems


def _fill_from(step: Step, mapped: dict[str, Any], problems: list[str]) -> bool:
    """Model, provider, parameters and usage an operation-details event names, where the step has none."""
    used = False
    if step.model is None and mapped.get("model"):
        step.model = mapped["model"]
        used = True
    if step.provider is None and mapped.get("provider"):
        step.provider = mapped["provider"]
        used = True
    for k, v in (mapped.get("params") or {}).items():
        if k not in step.params:
            step.params[k] = v
            used = True
    meta = mapped["metadata"]
    if step.usage is None and mapped.get("usage"):
        try:
            step.usage = Usage.model_validate(mapped["usage"])
        except ValidationError as exc:
            problems.append(f"usage in a GenAI event cannot be read: {exc.errors()[0].get('msg')}")
        else:
            used = True
            for key in ("usage_converted", "usage_reported"):
                if key in meta:
                    step.metadata[key] = meta[key]
    return used
