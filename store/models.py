"""The native trace model: traces, steps, usage, findings and eval cases, validated with pydantic."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

StepType = Literal["llm", "tool", "retrieval", "embedding", "agent", "chain", "guardrail", "other"]
STEP_TYPES: tuple[str, ...] = ("llm", "tool", "retrieval", "embedding", "agent", "chain", "guardrail", "other")
Severity = Literal["error", "warning", "info"]
SEVERITY_RANK = {"info": 1, "warning": 2, "error": 3}


def _move_unknown_to_metadata(cls: type[BaseModel], data: Any) -> Any:
    """Keep fields the model does not know in `metadata` instead of dropping them."""
    if not isinstance(data, dict):
        return data
    known = cls.model_fields  # a dict: membership is as quick as a set's, and nothing is rebuilt per call
    if all(k in known for k in data):
        return data
    unknown = {k: v for k, v in data.items() if k not in known}
    out = {k: v for k, v in data.items() if k in known}
    meta = dict(out.get("metadata") or {})
    for k, v in unknown.items():
        meta.setdefault(k, v)
    out["metadata"] = meta
    return out


# Times a trace can plausibly carry, as unix nanoseconds: 1990 to 2100. Anything else is a unit or clock bug and is
# read as unknown, never shown as a trace from 1970 or a duration of centuries.
PLAUSIBLE_YEARS = (631_152_000 * 10**9, 4_102_444_800 * 10**9)


def parse_time(value: Any) -> datetime | None:
    """Read an ISO string or epoch number as an aware UTC datetime; naive times are taken as UTC."""
    if value is None or value == "" or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0):
        return None  # zero is an unset clock, not 1970
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        x = float(value)
        # Guess the unit from the magnitude: seconds, milliseconds, microseconds or nanoseconds.
        if x > 1e17:
            x /= 1e9
        elif x > 1e14:
            x /= 1e6
        elif x > 1e11:
            x /= 1e3
        try:
            dt = datetime.fromtimestamp(x, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"not a plausible time: {value!r}") from None
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    else:
        raise ValueError(f"not a time: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    if not _PLAUSIBLE[0] <= dt <= _PLAUSIBLE[1]:
        raise ValueError(f"not a plausible time: {value!r} (outside 1990-2100)")
    return dt


_PLAUSIBLE = (datetime(1990, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def format_time(dt: datetime | None) -> str | None:
    """The one string form of times in the store: sortable ISO 8601 UTC with microseconds."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class PromptRef(_Model):
    name: str | None = None
    version: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        # "support_agent@v7" names both; a bare string names the prompt.
        if isinstance(data, str):
            name, at, version = data.rpartition("@")
            return {"name": name, "version": version} if at and name else {"name": data}
        return data

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        # 3 and "3" are the same version; other spellings ("3.0", "v3") are kept as given; "" is no version.
        if isinstance(v, str) and not v.strip():
            return None
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            return repr(v)
        return v


def _not_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("a count must be a number, not true/false")
    return v


# A token count: a whole number from 0 to 2**53 (far beyond any real call, and safe in SQLite and JSON).
TokenCount = Annotated[int, BeforeValidator(_not_bool), Field(ge=0, le=2**53)]


def _usd(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("a cost must be a number, not true/false")
    if isinstance(v, str):
        try:
            v = float(v.strip().lstrip("$"))
        except ValueError:
            raise ValueError(f"not a number: {v!r}") from None
    return v


def _finite_non_negative(v: float | None) -> float | None:
    if v is not None and (math.isnan(v) or math.isinf(v) or v < 0):
        raise ValueError(f"a cost must be a finite amount of at least 0, not {v}")
    return v


Usd = Annotated[float, BeforeValidator(_usd), AfterValidator(_finite_non_negative)]


class Usage(_Model):
    """Token counts of one model call. None means the source did not say (unknown), never zero."""

    input_tokens: TokenCount | None = None
    output_tokens: TokenCount | None = None
    cache_read_tokens: TokenCount | None = None
    cache_write_tokens: TokenCount | None = None
    reasoning_tokens: TokenCount | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def inconsistency(self) -> str | None:
        """Why these counts cannot all be true, if they cannot (cached or reasoning beyond the total)."""
        cached = (self.cache_read_tokens or 0) + (self.cache_write_tokens or 0)
        if self.input_tokens is not None and cached > self.input_tokens:
            return f"cached tokens ({cached:,}) exceed input tokens ({self.input_tokens:,})"
        if (self.output_tokens is not None and self.reasoning_tokens is not None
                and self.reasoning_tokens > self.output_tokens):
            return f"reasoning tokens ({self.reasoning_tokens:,}) exceed output tokens ({self.output_tokens:,})"
        return None

    @model_validator(mode="before")
    @classmethod
    def _keep_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = cls.model_fields
        if "extra" not in data and all(k in known for k in data):
            return data  # nothing to move: `extra` starts empty
        out = {k: v for k, v in data.items() if k in known}
        extra = dict(out.get("extra") or {})
        extra.update({k: v for k, v in data.items() if k not in known})
        out["extra"] = extra
        return out

    @property
    def known(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None


class ToolCall(_Model):
    id: str | None = None
    name: str
    arguments: Any = None


class Message(_Model):
    role: str
    content: Any = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text parts joined; structured parts that are not text are left out."""
        c = self.content
        if c is None:
            return ""
        if isinstance(c, str):
            return c
        if isinstance(c, list):
            parts = []
            for p in c:
                if isinstance(p, str):
                    parts.append(p)
                elif isinstance(p, dict):
                    t = p.get("text", p.get("content"))
                    if isinstance(t, str):
                        parts.append(t)
            return "\n".join(parts)
        return json.dumps(c, ensure_ascii=False)


class StepError(_Model):
    type: str | None = None
    message: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_anything(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"message": data}
        if isinstance(data, dict):
            return {
                "type": _opt_str(data.get("type") or data.get("code") or data.get("name")),
                "message": _opt_str(data.get("message") or data.get("detail") or data.get("error")),
            }
        if data is True:
            return {"message": "error"}
        return data


def _opt_str(v: Any) -> str | None:
    if v is None or v == "":
        return None
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


class Step(_Model):
    id: Annotated[str, Field(min_length=1)]
    parent_id: str | None = None
    type: StepType = "other"
    name: str | None = None
    # LLM calls
    model: str | None = None
    provider: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    messages: list[Message] = Field(default_factory=list)
    output: Any = None
    usage: Usage | None = None
    cost: Usd | None = None  # as reported by the source; loupe's own figure lives apart
    # tool calls
    tool_call_id: str | None = None
    arguments: Any = None
    result: Any = None
    status: Literal["ok", "error", "unset"] | None = None
    error: Annotated[
        StepError | None,
        WithJsonSchema({
            "anyOf": [
                {"type": "object", "properties": {"type": {"type": ["string", "null"]},
                                                  "message": {"type": ["string", "null"]}}},
                {"type": "string"}, {"type": "boolean"}, {"type": "null"},
            ],
            "description": "An error object, or a message; empty (\"\", {}, false, null) means no error.",
        }),
    ] = None
    is_error: Any = None
    exit_code: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _unknown(cls, data: Any) -> Any:
        data = _move_unknown_to_metadata(cls, data)
        if isinstance(data, dict) and isinstance(data.get("status"), str):
            s = data["status"].lower()
            data = {**data, "status": {"success": "ok", "failed": "error", "failure": "error"}.get(s, s)}
        if isinstance(data, dict) and data.get("error") in ("", {}, None, False):
            data = {**data, "error": None}
        return data

    @field_validator("started_at", "ended_at", mode="before")
    @classmethod
    def _time(cls, v: Any) -> Any:
        return parse_time(v)

    @field_validator("id", "parent_id", "tool_call_id", mode="before")
    @classmethod
    def _ident(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    @property
    def output_message(self) -> Message | None:
        o = self.output
        if isinstance(o, dict) and "role" in o:
            try:
                return Message.model_validate(o)
            except ValueError:
                return None
        if isinstance(o, str):
            return Message(role="assistant", content=o)
        return None

    @property
    def usage_problem(self) -> str | None:
        """Why this step's usage cannot be true, if it cannot: counts that contradict each other, or zero output
        tokens for an answer that is there (instrumentation that writes 0 for "not recorded")."""
        usage = self.usage
        if usage is None:
            return None
        if usage.inconsistency:
            return usage.inconsistency
        if usage.output_tokens == 0 and self.type == "llm" and self.has_output:
            return "0 output tokens reported for a non-empty output"
        return None

    @property
    def has_output(self) -> bool:
        """Whether the step recorded an answer: text, tool calls, or any other non-empty value."""
        msg = self.output_message
        if msg is not None:
            return bool(msg.text().strip() or msg.tool_calls)
        return self.output not in (None, "", [], {})

    @property
    def latency_ms(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        ms = (self.ended_at - self.started_at).total_seconds() * 1000
        return ms if ms >= 0 else None


class Trace(_Model):
    id: Annotated[str, Field(min_length=1)]
    name: str | None = None
    prompt: PromptRef | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    user_id: str | None = None
    session_id: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    input: Any = None
    output: Any = None
    steps: list[Step] = Field(default_factory=list)
    # Set when the source could not be read in full; what could be read is still kept.
    partial: bool = False
    problems: list[str] = Field(default_factory=list)
    source: str | None = None
    # An ingest hint, never stored: span-based sources set it so that the spans of a trace that arrive in
    # several files, lines or requests are combined with what the store already has, span by span.
    merge: SkipJsonSchema[bool] = Field(default=False, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _unknown(cls, data: Any) -> Any:
        return _move_unknown_to_metadata(cls, data)

    @field_validator("started_at", "ended_at", mode="before")
    @classmethod
    def _time(cls, v: Any) -> Any:
        return parse_time(v)

    @field_validator("id", mode="before")
    @classmethod
    def _ident(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v


class Finding(_Model):
    rule_id: str
    severity: Severity
    message: str
    evidence: list[str] = Field(default_factory=list)  # step IDs
    quote: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class RuleRun(_Model):
    rule_id: str
    ran: bool
    reason: str | None = None


class StepCost(_Model):
    """loupe's cost for one step: computed from usage and price, or unknown with the reason."""

    computed: float | None = None
    reported: float | None = None
    reason: str | None = None  # why computed is None
    priced_as: str | None = None  # the price entry used


class TraceTotals(_Model):
    steps: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    reasoning_tokens: int | None = None
    usage_unknown_steps: int = 0
    cost: float | None = None
    cost_unknown_steps: int = 0
    latency_ms: float | None = None
    errors: int = 0
    findings: int = 0

    @property
    def cost_partial(self) -> bool:
        return self.cost_unknown_steps > 0


class TraceSummary(_Model):
    """One row of the trace list: what the list shows, without the steps."""

    id: str
    name: str | None = None
    prompt_name: str | None = None
    prompt_version: str | None = None
    model: str | None = None
    started_at: str | None = None
    steps: int = 0
    llm_calls: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    tokens_partial: bool = False  # some LLM steps have no usage: the token sums leave them out
    cost: float | None = None
    cost_partial: bool = False
    latency_ms: float | None = None
    status: str = "ok"
    findings: int = 0
    worst_severity: str | None = None
    partial: bool = False


class Assertion(_Model):
    type: str  # contains / not-contains / must-call / must-not-call / no-finding / max-cost ...
    description: str
    value: Any = None
    options: dict[str, Any] = Field(default_factory=dict)


class EvalCase(_Model):
    id: str
    group: str
    name: str
    source_trace: dict[str, Any]
    input: list[dict[str, Any]]
    tool_results: list[dict[str, Any]]
    expected: str
    assertions: list[Assertion]
    recorded_output: Any = None  # what the assistant answered in the source trace
    content_hash: str
    created_at: str
    model: dict[str, Any] = Field(default_factory=dict)
    tools: list[Any] = Field(default_factory=list)
