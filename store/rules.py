"""Rules that flag what went wrong in a trace. Each returns findings with evidence, or says it could not run."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import Config
from .models import Finding, Message, RuleRun, Severity, Step, Trace, TraceTotals

if TYPE_CHECKING:
    from .pricing import Pricer

# ---------------------------------------------------------------------------
# Failure of a tool step, from structured signals only.

_TRUE_STRINGS = {"true", "1", "yes"}


def _truthy(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, str):
        return v.strip().lower() in _TRUE_STRINGS
    return False


def _nonzero_exit(v: Any) -> bool:
    if isinstance(v, bool) or v is None:
        return False
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, str):
        try:
            return int(v.strip()) != 0
        except ValueError:
            return False
    return False


def _error_present(v: Any) -> bool:
    """An error object or a non-empty error field; "", {}, [], null and false are no error."""
    if v is None or v is False:
        return False
    if isinstance(v, (str, dict, list)):
        return len(v) > 0
    return True


def failure_reason(step: Step, config: Config | None = None) -> str | None:
    """Why this tool step counts as failed, or None: by structured signals, then by the tool's `failure_when`."""
    structured = _structured_failure(step)
    if structured is not None or config is None:
        return structured
    settings = config.tool(step.name)
    if settings is not None and settings.failure_when:
        matched = failure_when_match(step.result, settings.failure_when)
        if matched is not None:
            return "result " + ", ".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in matched.items())
    return None


def _structured_failure(step: Step) -> str | None:
    if step.status == "error":
        return "status error"
    if step.error is not None and (step.error.type or step.error.message):
        return "error field"
    if _truthy(step.is_error):
        return "is_error"
    if step.exit_code is not None and step.exit_code != 0:
        return f"exit code {step.exit_code}"
    result = step.result
    if isinstance(result, dict):
        if _error_present(result.get("error")):
            return "error in result"
        if _truthy(result.get("is_error")) or _truthy(result.get("isError")):
            return "is_error in result"
        for key in ("exit_code", "exitCode", "returncode"):
            if _nonzero_exit(result.get(key)):
                return f"exit code {result.get(key)} in result"
    meta = step.metadata
    if _truthy(meta.get("isError")):
        return "isError"
    return None


def is_failed(step: Step, config: Config | None = None) -> bool:
    return step.type == "tool" and failure_reason(step, config) is not None


_MISSING = object()


def _lookup(value: Any, dotted: str) -> Any:
    """A key of a result, or a dotted path into nested objects ("error.code")."""
    if isinstance(value, dict) and dotted in value:
        return value[dotted]
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def failure_when_match(result: Any, conditions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first condition the result meets (every key equal; a list value lists the values that count), or None.
    A result that is JSON text is read first: tools often hand back their payload as a string."""
    if isinstance(result, str):
        try:
            result = json.loads(result)
        except ValueError:
            return None
    if not isinstance(result, dict):
        return None
    for cond in conditions:
        if not cond:
            continue
        ok = True
        for key, want in cond.items():
            got = _lookup(result, key)
            wanted = want if isinstance(want, list) else [want]
            if got is _MISSING or not any(_same(got, w) for w in wanted):
                ok = False
                break
        if ok:
            return {k: _lookup(result, k) for k in cond}
    return None


def _same(got: Any, want: Any) -> bool:
    # "declined" matches "DECLINED": providers differ in the case of status words. true is not 1.
    if isinstance(got, str) and isinstance(want, str):
        return got.strip().lower() == want.strip().lower()
    if isinstance(got, bool) or isinstance(want, bool):
        return got is want
    return bool(got == want)


# ---------------------------------------------------------------------------
# Claims of success in assistant text.

# Words in tool names that say nothing about the action itself.
_GENERIC = {
    "issue", "get", "set", "create", "do", "run", "make", "execute", "call", "perform", "process", "submit",
    "send", "handle", "tool", "api", "the", "a", "to", "for", "of", "by", "v1", "v2", "fn", "func", "request",
}
_NEGATION = re.compile(
    r"\b(not|no|never|unable|cannot|can't|couldn't|could not|wasn't|weren't|isn't|aren't|didn't|don't|doesn't|"
    r"won't|failed|fail|fails|failing|denied|declined|rejected|error|errors|unfortunately|sorry|unsuccessful|"
    r"blocked|nothing|none|pending|yet|"
    r"wasn’t|couldn’t|can’t|didn’t|don’t|won’t)\b|n't\b|n’t\b",
    re.IGNORECASE,
)
_NOT_YET = re.compile(
    r"\b(will|i'll|we'll|i’ll|would|could you|can you|shall|should|let me|going to|want me|like me|if you|"
    r"once|after you|before|need to|needs to|try|trying|attempt|until|unless|when|whenever|if)\b|\?",
    re.IGNORECASE,
)
# Verbs that report an action as done when they stand just before the action's word ("processed the refund").
_DONE_BEFORE = {
    "processed", "issued", "completed", "made", "initiated", "submitted", "sent", "applied", "credited", "granted",
    "given", "gave", "executed", "performed", "finalized", "finalised", "approved", "placed", "booked", "created",
    "opened", "filed", "scheduled", "done", "successfully",
}
# Words that report it as done when they follow the action's word ("your refund has been processed").
_COMPLETED = (
    r"processed|issued|completed|approved|credited|refunded|cancell?ed|sent|done|applied|finali[sz]ed|confirmed|"
    r"granted|made|created|opened|booked|deleted|transferred|reserved|successful|complete|executed|paid|"
    r"paid out|reimbursed|unsubscribed"
)
# Words that report it as done when they follow the action's word ("your refund has been processed"). An auxiliary
# alone is not enough: "has been flagged for review", "was queued" or "was reversed" do not say it was done.
_DONE_AFTER = re.compile(
    r"\W*(?:[\w$.]+\W+){0,3}?(?:(?:has been|have been|had been|was|were|is now|are now|is|are)\s+(?:\w+\s+){0,2}?"
    rf"(?:{_COMPLETED})|went through|has gone through|is on its way|is on the way|succeeded|took effect|"
    rf"has taken effect|is all set|is active|{_COMPLETED})\b",
    re.IGNORECASE,
)
# Words that undo a claim when they follow it at once ("was denied", "was not processed").
_UNDONE = re.compile(r"\b(not|never|denied|declined|rejected|failed|unsuccessful|reversed)\b|n't\b|n’t\b",
                     re.IGNORECASE)
_PERFECT = {"i've", "i’ve", "we've", "we’ve", "have", "has", "been", "was", "were", "is", "successfully", "already",
            "i", "we"}
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
# Clauses: a negation or an apology in one ("Sorry for the wait, ...") says nothing of the next.
_CLAUSE = re.compile(r",?\s+\b(?:but|however|although|though)\b\s*|;\s*|\s[—–-]\s|,\s+", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z'’]*")


def action_stems(tool_name: str) -> list[str]:
    """The words of a tool's name that name its action, shortened to stems: issue_refund -> ['refund']."""
    return list(_action_stems(tool_name))


@functools.lru_cache(maxsize=4096)
def _action_stems(tool_name: str) -> tuple[str, ...]:
    # Asked for every tool call of every trace with the same few tool names: worked out once per name.
    parts = re.split(r"[^A-Za-z]+|(?<=[a-z])(?=[A-Z])", tool_name)
    stems = []
    for p in parts:
        w = p.lower()
        if len(w) < 3 or w in _GENERIC:
            continue
        stems.append(_stem(w))
    return tuple(stems)


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    w = word.lower()
    for suffix in ("ation", "ing", "ed", "es", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 4:
            w = w[: -len(suffix)]
            break
    return w[:-1] if w.endswith("ll") else w  # cancelled, cancellation -> cancel


def _claims_in_clause(clause: str, stems: list[str]) -> bool:
    """Whether the clause reports the action as done. Only the words up to the claim (and the two after it, for
    "was denied") are checked for negation or futurity, so "has been processed and will show" is still a claim."""
    spans = list(_WORD.finditer(clause))
    words = [m.group(0).lower() for m in spans]
    for i, w in enumerate(words):
        if not any(_stem(w).startswith(s) for s in stems):
            continue
        end: int | None = None
        before = words[max(0, i - 4) : i]
        if any(b in _DONE_BEFORE for b in before):
            end = spans[i].end()  # "processed the refund", "I've issued your refund"
        elif w.endswith(("ed", "en")) and (i == 0 or any(b in _PERFECT for b in words[max(0, i - 5) : i])):
            end = spans[i].end()  # "I've refunded", "Refunded!", "has been canceled"
        else:
            m = _DONE_AFTER.match(clause, spans[i].end())
            if m is not None:
                end = m.end()  # "your refund has been processed"
        if end is None:
            continue
        following = [x for x in spans if x.start() >= end][:2]
        after = clause[end : following[-1].end()] if following else ""
        before_claim = clause[:end]
        if not (_NEGATION.search(before_claim) or _NOT_YET.search(before_claim) or _UNDONE.search(after)):
            return True
    return False


def claimed_success(text: str, tool_name: str) -> str | None:
    """The sentence of `text` that claims the tool's action succeeded, or None."""
    return claimed_action(text, action_stems(tool_name))


def claimed_action(text: str, stems: list[str]) -> str | None:
    """The sentence of `text` that reports an action named by one of `stems` as done, or None."""
    if not stems or not text:
        return None
    # A claim needs a word that starts with a stem, so text without any stem in it cannot hold one: a 5 MB answer
    # costs one scan, not a word-by-word reading of every sentence for every action.
    if not any(s in text.lower() for s in stems):
        return None
    for sentence in _SENTENCE.split(text):
        low = sentence.lower()
        if not any(s in low for s in stems):
            continue
        for clause in _CLAUSE.split(sentence):
            if clause and _claims_in_clause(clause, stems):
                return sentence.strip()
    return None


# ---------------------------------------------------------------------------
# What the rules share: the settings, the trace's totals, its tool calls and the assistant's texts.


@dataclass
class RuleResult:
    findings: list[Finding] = field(default_factory=list)
    runs: list[RuleRun] = field(default_factory=list)


class Context:
    """What a rule may ask for besides the trace: the settings, and the totals (computed once, on first use)."""

    def __init__(self, trace: Trace, config: Config | None = None, totals: TraceTotals | None = None,
                 pricer: Pricer | None = None) -> None:
        self.trace = trace
        self.config = config or _DEFAULTS
        self._totals = totals
        self._pricer = pricer
        self._calls: list[Call] | None = None

    def failure(self, step: Step) -> str | None:
        return failure_reason(step, self.config) if step.type == "tool" else None

    @property
    def calls(self) -> list[Call]:
        if self._calls is None:
            self._calls = tool_calls(self.trace)
        return self._calls

    @property
    def totals(self) -> TraceTotals:
        if self._totals is None:
            # store.db imports this module, so its totals are imported here rather than at the top.
            from .db import compute_totals
            from .pricing import default_pricer

            pricer = self._pricer or default_pricer()
            self._totals = compute_totals(self.trace, {s.id: pricer.step_cost(s) for s in self.trace.steps}, [])
        return self._totals


@dataclass
class Call:
    """One tool call: as the model asked for it (`llm`), as it ran (`tool`), or both when they are linked."""

    name: str
    arguments: Any
    index: int  # where it happened: the tool step's position, else the model call's
    llm: Step | None = None
    tool: Step | None = None
    defined_by: Step | None = None  # the model call whose tool definitions apply

    @property
    def evidence(self) -> list[str]:
        return [s.id for s in (self.llm, self.tool) if s is not None]


def tool_calls(trace: Trace) -> list[Call]:
    """Every tool call in the trace, in order: each model request linked to the step that ran it by call ID."""
    calls: list[Call] = []
    asked: dict[str, Call] = {}
    last_defs: Step | None = None
    for i, step in enumerate(trace.steps):
        if step.type == "llm":
            if tool_definitions(step) is not None:
                last_defs = step
            msg = step.output_message
            for tc in msg.tool_calls if msg is not None else []:
                # A call that records no definitions of its own was most likely given the same tools as the
                # last one that did (instrumentations often record them once).
                call = Call(name=tc.name, arguments=tc.arguments, index=i, llm=step, defined_by=last_defs)
                calls.append(call)
                if tc.id:
                    asked.setdefault(tc.id, call)
        elif step.type == "tool":
            linked = asked.get(step.tool_call_id) if step.tool_call_id else None
            if linked is not None and linked.tool is None:
                linked.tool = step
                linked.index = i
                if linked.arguments is None:
                    linked.arguments = step.arguments
            else:
                calls.append(Call(name=step.name or "", arguments=step.arguments, index=i, tool=step,
                                  defined_by=last_defs))
    calls.sort(key=lambda c: c.index)
    return calls


def _definition(d: Any) -> tuple[str | None, Any]:
    """(name, JSON Schema of the arguments) of one tool definition in any of the common shapes."""
    d = json_or_value(d)
    if not isinstance(d, dict):
        return None, None
    fn = d["function"] if isinstance(d.get("function"), dict) else d  # OpenAI nests it under "function"
    name = fn.get("name")
    schema = None
    for key in ("parameters", "input_schema", "inputSchema", "json_schema", "schema"):
        if fn.get(key) is not None:
            schema = json_or_value(fn[key])
            break
    return (name if isinstance(name, str) and name else None), schema


def tool_definitions(step: Step | None) -> dict[str, Any] | None:
    """The tools a model call was given: name -> argument schema (None when a definition has none); None when
    the step records no definitions."""
    if step is None or step.type != "llm":
        return None
    raw = json_or_value(step.metadata.get("tool_definitions"))
    if not isinstance(raw, list) or not raw:
        raw = json_or_value(step.params.get("tools"))
    if not isinstance(raw, list):
        return None
    out: dict[str, Any] = {}
    for d in raw:
        name, schema = _definition(d)
        if name:
            out[name] = schema
    return out or None


def json_or_value(v: Any) -> Any:
    """A value that may arrive as JSON text (tool arguments, tool definitions): parsed when it is JSON."""
    if isinstance(v, str) and v.strip()[:1] in ("{", "["):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _answers(trace: Trace) -> list[tuple[int, str | None, str]]:
    """What the assistant said: (position, step ID, text) of each model output with text, then the trace's output
    when no step already holds it."""
    out: list[tuple[int, str | None, str]] = []
    for i, step in enumerate(trace.steps):
        if step.type != "llm":
            continue
        msg = step.output_message
        if msg is not None and msg.role == "assistant":
            text = msg.text()
            if text:
                out.append((i, step.id, text))
    if isinstance(trace.output, str) and trace.output and not any(t == trace.output for _, _, t in out):
        out.append((len(trace.steps), None, trace.output))
    return out


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _canonical(value: Any) -> str:
    return json.dumps(json_or_value(value), sort_keys=True, ensure_ascii=False, default=str)


def _sentence_at(text: str, start: int, end: int) -> str:
    """The sentence of `text` around [start, end)."""
    left = max(text.rfind(". ", 0, start), text.rfind("! ", 0, start), text.rfind("? ", 0, start),
               text.rfind("\n", 0, start))
    rights = [p for p in (text.find(". ", end), text.find("! ", end), text.find("? ", end), text.find("\n", end))
              if p != -1]
    right = min(rights) + 1 if rights else len(text)
    return text[left + 1 if left != -1 else 0: right].strip()


Outcome = tuple[list[Finding], RuleRun]


def _ran(rule: str) -> RuleRun:
    return RuleRun(rule_id=rule, ran=True)


def _not_run(rule: str, reason: str) -> RuleRun:
    return RuleRun(rule_id=rule, ran=False, reason=reason)


# ---------------------------------------------------------------------------
# The rules.


def _later_texts(trace: Trace, after: int, failed: Step) -> list[tuple[str | None, str]]:
    """What the assistant said after step `after`: each later model call's input history past the failed call's
    result (a trace may record a reply only there), then its output; the trace's output last."""
    out: list[tuple[str | None, str]] = []
    seen: set[str] = set()

    def add(step_id: str | None, text: str) -> None:
        if text and text not in seen:
            seen.add(text)
            out.append((step_id, text))

    for step in trace.steps[after + 1:]:
        if step.type != "llm":
            continue
        if failed.tool_call_id:
            pos = next((k for k, m in enumerate(step.messages) if m.tool_call_id == failed.tool_call_id), None)
            if pos is not None:
                for m in step.messages[pos + 1:]:
                    if m.role == "assistant":
                        add(step.id, m.text())
        msg = step.output_message
        if msg is not None and msg.role == "assistant":
            add(step.id, msg.text())
    if isinstance(trace.output, str):
        add(None, trace.output)
    return out


def success_after_tool_error(trace: Trace, ctx: Context | None = None) -> Outcome:
    rule = "success-after-tool-error"
    ctx = ctx or Context(trace)
    findings: list[Finding] = []
    failed = [(i, s) for i, s in enumerate(trace.steps) if ctx.failure(s)]
    if not failed:
        return findings, _ran(rule)
    checked = False
    seen_tools: set[str] = set()
    for i, step in failed:
        name = step.name or ""
        if name in seen_tools:
            continue
        later = trace.steps[i + 1:]
        if any(s.type == "tool" and s.name == name and not ctx.failure(s) for s in later):
            checked = True
            continue  # a later call of the same tool succeeded: the claim may be true
        texts = _later_texts(trace, i, step)
        if not texts:
            continue
        checked = True
        for step_id, text in texts:
            sentence = claimed_success(text, name)
            if sentence:
                seen_tools.add(name)
                err = step.error.type if step.error and step.error.type else ctx.failure(step)
                findings.append(
                    Finding(
                        rule_id=rule,
                        severity="error",
                        message=f"The assistant claims {name} succeeded, but it failed ({err}).",
                        evidence=[step.id] + ([step_id] if step_id else []),
                        quote=sentence,
                        data={"tool": name, "error": err},
                    )
                )
                break
    if not checked:
        return findings, _not_run(rule, "no assistant text recorded after the failed tool step")
    return findings, _ran(rule)


# Actions whose claims need a tool call behind them when the configuration names none. Conservative on purpose:
# words that are also everyday nouns ("charge", "credit card", "plan") would turn explanations into claims.
DEFAULT_ACTIONS = ("cancel", "refund", "delete", "unsubscribe", "ticket", "book", "reserve", "transfer")


def _action_stem(word: str) -> str:
    stem = _stem(word.strip().lower())
    # "reserve" and "reserved" share "reserv": the action's stem drops a final e so both forms start with it.
    return stem[:-1] if stem.endswith("e") and len(stem) >= 5 else stem


def _does(tool: str, action: str, stem: str, backed_by: dict[str, list[str]]) -> bool:
    return tool in backed_by.get(action, ()) or _named_for(tool, stem)


@functools.lru_cache(maxsize=65536)
def _named_for(tool: str, stem: str) -> bool:
    """Whether a tool's name names the action of this stem (asked for every call of every trace: cached)."""
    return any(s.startswith(stem) or (len(s) >= 4 and stem.startswith(s)) for s in _action_stems(tool))


def unbacked_action_claim(trace: Trace, ctx: Context | None = None) -> Outcome:
    rule = "unbacked-action-claim"
    ctx = ctx or Context(trace)
    settings = ctx.config.rules.unbacked_action_claim
    answers = _answers(trace)
    if not answers:
        return [], _not_run(rule, "no assistant text recorded")
    calls = ctx.calls
    findings: list[Finding] = []
    for action in settings.actions if settings.actions is not None else DEFAULT_ACTIONS:
        stem = _action_stem(action)
        if not stem:
            continue
        doers = [c for c in calls if _does(c.name, action, stem, settings.backed_by)]
        # A call the model asked for whose run is not recorded may have worked: it backs the claim.
        if any(c.tool is None or not ctx.failure(c.tool) for c in doers):
            continue
        for pos, step_id, text in answers:
            sentence = claimed_action(text, [stem])
            if not sentence:
                continue
            if any(c.index < pos for c in doers):
                break  # it was tried and failed before the claim: success-after-tool-error's finding
            findings.append(Finding(
                rule_id=rule, severity="error",
                message=f"The assistant says it did something ({action}) that no successful tool call in the "
                        f"trace did.",
                evidence=[step_id] if step_id else [], quote=sentence, data={"action": action},
            ))
            break
    return findings, _ran(rule)


def tool_error(trace: Trace, ctx: Context | None = None) -> Outcome:
    rule = "tool-error"
    ctx = ctx or Context(trace)
    findings = []
    for step in trace.steps:
        reason = ctx.failure(step)
        if reason is None:
            continue
        kind = step.error.type if step.error and step.error.type else reason
        detail = step.error.message if step.error and step.error.message else None
        if detail is None and step.result is not None:
            detail = step.result if isinstance(step.result, str) else _canonical(step.result)
        findings.append(Finding(
            rule_id=rule, severity="warning", message=f"{step.name or 'A tool'} failed ({kind}).",
            evidence=[step.id], quote=_short(detail) if detail else None,
            data={"tool": step.name, "error": kind, "signal": reason},
        ))
    return findings, _ran(rule)


# Validators by schema text: the same few tool schemas come with every model call, and checking a schema
# costs far more than validating arguments against it. None: the schema itself is unusable.
_VALIDATORS: dict[str, Any] = {}


def _validator(schema: dict[str, Any]) -> Any:
    import jsonschema  # type: ignore[import-untyped]  # only traces with tool definitions pay for it

    key = _canonical(schema)
    if key not in _VALIDATORS:
        if len(_VALIDATORS) >= 512:
            _VALIDATORS.clear()
        try:
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            cls.check_schema(schema)
            _VALIDATORS[key] = cls(schema)
        except Exception:  # a broken schema judges nothing: not the model's fault
            _VALIDATORS[key] = None
    return _VALIDATORS[key]


def _schema_problems(schema: dict[str, Any], value: Any) -> list[str] | None:
    """What in `value` breaks `schema`; None when the schema itself cannot be used (not the model's fault)."""
    validator = _validator(schema)
    if validator is None:
        return None
    try:
        errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    except Exception:  # an unresolvable $ref (never fetched) judges nothing
        return None
    out = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.absolute_path)
        out.append(_short(f"{where}: {e.message}" if where else e.message, 200))
    return out


def malformed_tool_arguments(trace: Trace, ctx: Context | None = None) -> Outcome:
    rule = "malformed-tool-arguments"
    ctx = ctx or Context(trace)
    findings = []
    for call in ctx.calls:
        args = call.arguments
        if args is None:
            continue  # not recorded: nothing to judge
        problems: list[str] = []
        if isinstance(args, str):
            if not args.strip():
                args = {}  # some SDKs send "" for a tool without parameters
            else:
                try:
                    args = json.loads(args)
                except ValueError as exc:
                    problems.append(f"not valid JSON ({exc})")
        if not problems and not isinstance(args, dict):
            kind = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
                type(args), "null" if args is None else type(args).__name__)
            problems.append(f"{kind}, not an object")
        if not problems:
            defs = tool_definitions(call.defined_by)
            schema = defs.get(call.name) if defs else None
            if isinstance(schema, dict):
                problems = _schema_problems(schema, args) or []
        if problems:
            findings.append(Finding(
                rule_id=rule, severity="error",
                message=f"The arguments to {call.name} are malformed: {'; '.join(problems)}.",
                evidence=call.evidence,
                quote=_short(call.arguments if isinstance(call.arguments, str) else _canonical(call.arguments)),
                data={"tool": call.name, "problems": problems},
            ))
    return findings, _ran(rule)


def unknown_tool(trace: Trace, ctx: Context | None = None) -> Outcome:
    rule = "unknown-tool"
    ctx = ctx or Context(trace)
    calls = ctx.calls
    checked = 0
    findings = []
    for call in calls:
        defs = tool_definitions(call.defined_by)
        if defs is None:
            continue
        checked += 1
        if call.name not in defs:
            findings.append(Finding(
                rule_id=rule, severity="warning",
                message=f"The model called {call.name or '(no name)'}, which is not among the tools it was given "
                        f"({', '.join(sorted(defs))}).",
                evidence=call.evidence, quote=call.name, data={"tool": call.name, "defined": sorted(defs)},
            ))
    if calls and not checked:
        return findings, _not_run(rule, "the trace records no tool definitions")
    return findings, _ran(rule)


def _outcome(call: Call, ctx: Context) -> str:
    """What a call came back with, to tell a repeat that changed nothing from a poll that moved on."""
    if call.tool is None:
        return "unknown"
    step = call.tool
    failed = ctx.failure(step)
    if failed:
        return "failed " + _canonical([step.error.model_dump() if step.error else None, step.result])
    return "ok " + _canonical(step.result)


def retry_loop(trace: Trace, ctx: Context | None = None) -> Outcome:
    rule = "retry-loop"
    ctx = ctx or Context(trace)
    threshold = ctx.config.rules.retry_loop.threshold
    calls = ctx.calls
    findings = []
    run: list[Call] = []

    def close() -> None:
        # A loop: enough identical calls, and the last came back as the one before it (a poll that ends with a
        # different answer, success after failures, made progress).
        if len(run) >= threshold and _outcome(run[-1], ctx) == _outcome(run[-2], ctx):
            first = run[0]
            findings.append(Finding(
                rule_id=rule, severity="warning",
                message=f"{first.name} was called {len(run)} times in a row with the same arguments, and the "
                        f"result did not change.",
                evidence=[e for c in run for e in c.evidence],
                quote=_short(f"{first.name}({_canonical(first.arguments)})"),
                data={"tool": first.name, "calls": len(run), "threshold": threshold},
            ))

    for call in calls:
        if run and (call.name != run[-1].name or _canonical(call.arguments) != _canonical(run[-1].arguments)):
            close()
            run = []
        run.append(call)
    if run:
        close()
    return findings, _ran(rule)


_AFFIRM = re.compile(
    r"\b(yes|yeah|yep|yup|sure|ok|okay|confirm|confirmed|i confirm|go ahead|go for it|please do|do it|proceed|"
    r"correct|that's right|that’s right|that is right|absolutely|of course)\b",
    re.IGNORECASE,
)
_DENY = re.compile(
    r"\b(no|nope|nah|not|don't|don’t|do not|wait|hold on|hold off|never ?mind|stop)\b", re.IGNORECASE)
_NOT_DENIAL = re.compile(r"\bno (problem|worries|doubt)\b", re.IGNORECASE)


def _affirms(text: str) -> bool:
    return bool(_AFFIRM.search(text)) and not _DENY.search(_NOT_DENIAL.sub("", text))


def _confirmed(history: list[Message]) -> bool:
    """Whether the user said yes to a question from the assistant: an assistant turn that asks, answered by the
    user's next turn agreeing. The first request itself is not a confirmation."""
    asked = False
    for m in history:
        if m.role == "assistant":
            text = m.text()
            if text:
                asked = "?" in text
        elif m.role == "user":
            if asked and _affirms(m.text()):
                return True
            asked = False
    return False


def unconfirmed_action(trace: Trace, ctx: Context | None = None) -> Outcome:
    rule = "unconfirmed-action"
    ctx = ctx or Context(trace)
    needs = set(ctx.config.confirmation_tools())
    if not needs:
        return [], _not_run(rule, "no tool needs confirmation in the configuration")
    findings = []
    unknown = 0
    calls = [c for c in ctx.calls if c.name in needs]
    for call in calls:
        asker = call.llm or next((s for s in reversed(trace.steps[: call.index]) if s.type == "llm" and s.messages),
                                 None)
        history = list(asker.messages) if asker is not None else []
        if not any(m.role == "user" for m in history):
            unknown += 1
            continue
        if _confirmed(history):
            continue
        request = next((m.text() for m in reversed(history) if m.role == "user" and m.text()), "")
        findings.append(Finding(
            rule_id=rule, severity="error",
            message=f"{call.name} needs the user's confirmation, and the user had not confirmed when it was called.",
            evidence=call.evidence, quote=_short(request) if request else None, data={"tool": call.name},
        ))
    if calls and unknown == len(calls):
        return findings, _not_run(rule, "no conversation recorded before the call")
    return findings, _ran(rule)


_PROMISE_NEGATION = re.compile(
    r"\b(not|no|never|cannot|unable|without|can't|won't|couldn't|don't|doesn't|isn't|aren't|wasn't|"
    r"can’t|won’t|couldn’t|don’t|doesn’t|isn’t|aren’t|wasn’t)\b",
    re.IGNORECASE,
)


# Reassurances that contain a negation but negate nothing that follows.
_REASSURANCE = re.compile(r"\b(don't|don’t|do not|not to) worry\b|\bno (problem|worries|doubt)\b", re.IGNORECASE)
_CLAUSE_END = re.compile(r"[.!?;:\n]\s|\s[—–-]\s|\bbut\b", re.IGNORECASE)


def _negated(text: str, start: int) -> bool:
    """Whether a negation in the six words before `start`, in the same clause, turns the match around ("I can't
    promise a full refund")."""
    clause = _CLAUSE_END.split(text[:start])[-1]
    words = _REASSURANCE.sub(" ", clause).split()[-6:]
    return bool(_PROMISE_NEGATION.search(" ".join(words)))


def _phrase_regex(phrase: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in phrase.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def forbidden_promise(trace: Trace, ctx: Context | None = None) -> Outcome:
    rule = "forbidden-promise"
    ctx = ctx or Context(trace)
    prompt = trace.prompt.name if trace.prompt else None
    version = trace.prompt.version if trace.prompt else None
    promises = ctx.config.promises_for(prompt, version)
    if promises is None or not (promises.phrases or promises.patterns):
        return [], _not_run(rule, f"no forbidden phrases configured for prompt {prompt or '(none)'}")
    answers = _answers(trace)
    if not answers:
        return [], _not_run(rule, "no assistant text recorded")
    checks = [(p, "phrase", _phrase_regex(p)) for p in promises.phrases if p.strip()]
    checks += [(p, "pattern", re.compile(p, re.IGNORECASE)) for p in promises.patterns]
    findings = []
    seen: set[str] = set()
    for _, step_id, text in answers:
        for label, kind, rx in checks:
            for m in rx.finditer(text):
                if _negated(text, m.start()):
                    continue
                sentence = _sentence_at(text, m.start(), m.end())
                if sentence in seen:
                    continue
                seen.add(sentence)
                findings.append(Finding(
                    rule_id=rule, severity="error",
                    message=f"The answer promises what {prompt or 'this feature'} must not ({label!r}).",
                    evidence=[step_id] if step_id else [], quote=_short(sentence),
                    data={"match": label, "kind": kind},
                ))
    return findings, _ran(rule)


def budget_exceeded(trace: Trace, ctx: Context | None = None) -> Outcome:
    rule = "budget-exceeded"
    ctx = ctx or Context(trace)
    prompt = trace.prompt.name if trace.prompt else None
    version = trace.prompt.version if trace.prompt else None
    budget = ctx.config.budget_for(prompt, version)
    if budget is None:
        return [], _not_run(rule, f"no budget configured for prompt {prompt or '(none)'}")
    t = ctx.totals
    llm_ids = [s.id for s in trace.steps if s.type == "llm"]
    tool_ids = [s.id for s in trace.steps if s.type == "tool"]
    def count(v: float) -> str:
        return f"{v:,.0f}"

    # (budget key, words, value, limit, whether the value is only a lower bound, its format, evidence)
    measures: list[tuple[str, str, float | None, float | None, bool, Callable[[float], str], list[str]]] = [
        ("input_tokens", "input tokens", t.input_tokens, budget.input_tokens, t.usage_unknown_steps > 0, count,
         llm_ids),
        ("output_tokens", "output tokens", t.output_tokens, budget.output_tokens, t.usage_unknown_steps > 0, count,
         llm_ids),
        ("cost", "cost", t.cost, budget.cost, t.cost_unknown_steps > 0, lambda v: f"${v:,.4f}", llm_ids),
        ("latency_seconds", "latency", None if t.latency_ms is None else t.latency_ms / 1000,
         budget.latency_seconds, False, lambda v: f"{v:,.1f} s", []),
        ("model_calls", "model calls", t.llm_calls, budget.model_calls, False, count, llm_ids),
        ("tool_calls", "tool calls", t.tool_calls, budget.tool_calls, False, count, tool_ids),
    ]
    over: list[dict[str, Any]] = []
    texts: list[str] = []
    unknown: list[str] = []
    evidence: list[str] = []
    checked = 0
    for metric, words, value, limit, lower_bound, fmt, ids in measures:
        if limit is None:
            continue
        if value is None:
            unknown.append(metric)
            continue
        if value > limit:  # exactly at the limit is within it
            checked += 1
            over.append({"metric": metric, "value": value, "limit": limit})
            texts.append(f"{words} {fmt(value)}{'+' if lower_bound else ''} > {fmt(limit)}")
            evidence = evidence or ids
        elif lower_bound:
            unknown.append(metric)  # the known part is within the limit; the unknown part may not be
        else:
            checked += 1
    findings = []
    if over:
        key = f"{prompt}@{version}" if version else str(prompt)
        findings.append(Finding(
            rule_id=rule, severity="warning", message=f"Over the budget for {key}: " + "; ".join(texts) + ".",
            evidence=evidence, data={"over": over, "unknown": unknown},
        ))
    if not checked:
        why = "unknown " + ", ".join(m.replace("_", " ") for m in unknown) if unknown else "no limit set"
        return findings, _not_run(rule, why)
    return findings, _ran(rule)


def usage_missing(trace: Trace, ctx: Context | None = None) -> Outcome:
    rule = "usage-missing"
    llm = [s for s in trace.steps if s.type == "llm"]
    missing = [s for s in llm if s.usage is None or not s.usage.known]
    # Usage that is there but cannot be priced honestly: half of it, or counts that cannot be true (zero output
    # tokens for an answer that is there, cached beyond input). Each costs "unknown", so each is flagged too.
    doubtful = [s for s in llm if s not in missing and s.usage is not None
                and (s.usage.input_tokens is None or s.usage.output_tokens is None or s.usage_problem)]
    if not missing and not doubtful:
        return [], _ran(rule)
    calls = f"{len(llm)} model call{'s' if len(llm) != 1 else ''}"
    parts = []
    if missing:
        names = ", ".join(sorted({s.model or "(no model)" for s in missing}))
        parts.append(f"{len(missing)} of {calls} {'have' if len(missing) != 1 else 'has'} no usage ({names})")
    if doubtful:
        why = "; ".join(dict.fromkeys(_usage_doubt(s) for s in doubtful))
        parts.append(f"{len(doubtful)} of {calls} {'have' if len(doubtful) != 1 else 'has'} usage that cannot be "
                     f"priced ({why})")
    return [Finding(
        rule_id=rule, severity="info",
        message="; ".join(parts) + ": tokens and cost unknown.",
        evidence=[s.id for s in llm if s in missing or s in doubtful],
        data={"steps": len(missing) + len(doubtful), "missing": len(missing), "doubtful": len(doubtful)},
    )], _ran(rule)


def _usage_doubt(step: Step) -> str:
    usage = step.usage
    if usage is not None and usage.input_tokens is None:
        return "input tokens missing"
    if usage is not None and usage.output_tokens is None:
        return "output tokens missing"
    return step.usage_problem or "usage cannot be true"


# Text in user input or tool output that tries to take over the assistant. Case-insensitive.
INJECTION_PATTERNS = (
    r"\b(?:ignore|disregard|forget|override|bypass)\b[^.!?\n]{0,40}?\b(?:previous|prior|above|earlier|preceding|"
    r"all|any|your|the|these|those|system|developer)\b[^.!?\n]{0,20}?\b(?:instructions?|prompts?|rules|directions|"
    r"guidelines|guardrails|policies|constraints)\b",
    r"\byou are now\b(?:\s+\w+){0,3}?\s+(?:mode|assistant|ai|bot|model|persona|dan|unrestricted|jailbroken|admin|"
    r"administrator|developer|root)\b",
    r"\b(?:system|admin|developer)\s+override\b",
    r"(?m)^\s*(?:#+\s*|\[|<)?(?:system|developer)(?:\]|>)?\s*:",
    r"<\|im_start\|>|<\|system\|>|\[/?INST\]|<</?SYS>>",
    r"\bnew (?:system )?instructions\s*:",
    r"\b(?:reveal|print|show|repeat|output)\s+(?:me\s+)?(?:your|the)\s+(?:system\s+prompt|hidden\s+instructions|"
    r"initial\s+instructions)\b",
)


# Every match of a built-in pattern holds one of these, in any case (tests/test_rules.py checks).
INJECTION_KEYWORDS = ("ignore", "disregard", "forget", "override", "bypass", "you are now", "system", "developer",
                      "<|", "inst]", "<<sys", "<</sys", "instructions", "reveal", "print", "show", "repeat", "output")
_KEYWORD = re.compile("|".join(re.escape(k) for k in INJECTION_KEYWORDS))  # over lowercased text


def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    """Every string inside a value (JSON text read first), to scan each field on its own."""
    value = json_or_value(value)
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict) and depth < 20:
        for v in value.values():
            yield from _strings(v, depth + 1)
    elif isinstance(value, list) and depth < 20:
        for v in value:
            yield from _strings(v, depth + 1)


def _messages(value: Any) -> list[dict[str, Any]] | None:
    """The chat messages of an input that is a conversation ([{role, content}...] or {"messages": [...]})."""
    value = json_or_value(value)
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
        return value
    return None


def _untrusted(trace: Trace) -> Iterator[tuple[str, list[str], str]]:
    """(where, evidence step IDs, text) of what came from outside the app: the user's words and tool output."""
    first_llm = next((s for s in trace.steps if s.type == "llm"), None)
    at = [first_llm.id] if first_llm else []
    if isinstance(trace.input, str):
        yield "the user's input", at, trace.input
    elif trace.input is not None:
        messages = _messages(trace.input)
        if messages is None:
            for text in _strings(trace.input):
                yield "the input", at, text
        else:
            # A conversation as input: the system prompt is the app's own words, not untrusted text.
            for raw in messages:
                if raw.get("role") in ("user", "tool", "function", "ipython"):
                    for text in _strings(raw.get("content")):
                        yield "the input", at, text
    ran = {s.tool_call_id for s in trace.steps if s.type == "tool" and s.tool_call_id}
    for step in trace.steps:
        if step.type in ("tool", "retrieval"):
            for text in _strings(step.result):
                yield f"the output of {step.name or 'a tool'}", [step.id], text
            if step.type == "retrieval":
                for text in _strings(step.output):
                    yield f"the output of {step.name or 'a retrieval'}", [step.id], text
        elif step.type == "llm":
            for m in step.messages:
                if m.role == "user":
                    yield "a user message", [step.id], m.text()
                elif m.role in ("tool", "function", "ipython") and m.tool_call_id not in ran:
                    for text in _strings(m.content):
                        yield f"the output of {m.name or 'a tool'}", [step.id], text


@functools.lru_cache(maxsize=32)
def _injection_regexes(patterns: tuple[str, ...]) -> list[re.Pattern[str]]:
    return [re.compile(p, re.IGNORECASE) for p in patterns]


def prompt_injection(trace: Trace, ctx: Context | None = None) -> Outcome:
    rule = "prompt-injection"
    ctx = ctx or Context(trace)
    settings = ctx.config.rules.prompt_injection
    patterns = [*(INJECTION_PATTERNS if settings.default_patterns else ()), *settings.patterns]
    if not patterns:
        return [], _not_run(rule, "no injection patterns (default_patterns = false and none configured)")
    regexes = _injection_regexes(tuple(patterns))
    texts: dict[str, tuple[str, list[str]]] = {}
    for where, evidence, text in _untrusted(trace):
        if text and text not in texts:  # the conversation so far comes again with every model call: read once
            texts[text] = (where, evidence)
    findings = []
    seen: set[str] = set()
    built_in = len(INJECTION_PATTERNS) if settings.default_patterns else 0
    for text, (where, evidence) in texts.items():
        # Most texts hold none of the words every built-in pattern needs: those are not searched for them. Only
        # for ASCII text, where the patterns' ignoring of case is plain ASCII lowercase (the Kelvin sign matches k).
        skip = built_in if text.isascii() and not _KEYWORD.search(text.lower()) else 0
        for rx in regexes[skip:]:
            m = rx.search(text)
            if m is None:
                continue
            sentence = _short(_sentence_at(text, m.start(), m.end()))
            key = " ".join(sentence.lower().split())
            if key not in seen:  # the same words reach every later model call: one finding
                seen.add(key)
                findings.append(Finding(
                    rule_id=rule, severity="warning",
                    message=f"Text in {where} tries to override the assistant's instructions "
                            f"({_short(m.group(0), 60)!r}).",
                    evidence=evidence, quote=sentence, data={"source": where, "match": _short(m.group(0), 120)},
                ))
            break
    return findings, _ran(rule)


# ---------------------------------------------------------------------------
# The registry and the entry point.


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: Severity  # the default; the configuration may change it
    checks: str  # what it checks, in a sentence, for `loupe rules`
    fn: Callable[[Trace, Context], Outcome]


RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("success-after-tool-error", "success claimed after a tool error", "error",
         "A tool call failed and a later assistant message says that action succeeded.", success_after_tool_error),
    Rule("unbacked-action-claim", "action claimed with no tool call behind it", "error",
         "The assistant says it did something (canceled, refunded, opened a ticket...) and no tool call that does "
         "it succeeded in the trace.", unbacked_action_claim),
    Rule("tool-error", "a tool call failed", "warning",
         "A tool step failed: error status or field, is_error, a non-zero exit code, or the tool's failure_when.",
         tool_error),
    Rule("malformed-tool-arguments", "malformed tool arguments", "error",
         "Tool arguments that are not valid JSON, not an object, or break the tool's JSON Schema when the trace "
         "carries the tool definitions.", malformed_tool_arguments),
    Rule("unknown-tool", "a tool the model was not given", "warning",
         "A call to a tool absent from the definitions the model was given (needs tool definitions in the trace).",
         unknown_tool),
    Rule("retry-loop", "the same call repeated without progress", "warning",
         "The same tool with the same arguments called N times in a row (threshold) with the same result; a poll "
         "that ends with a different answer is not a loop.", retry_loop),
    Rule("unconfirmed-action", "action taken without the user's confirmation", "error",
         "A tool that needs confirmation ([tools.NAME] needs_confirmation) was called before the user said yes to "
         "the assistant's question.", unconfirmed_action),
    Rule("forbidden-promise", "a promise the feature must not make", "error",
         "The answer contains a phrase or pattern configured as forbidden for its prompt.", forbidden_promise),
    Rule("budget-exceeded", "over budget", "warning",
         "Input or output tokens, cost, latency, model calls or tool calls of the trace above the budget for its "
         "prompt (a value at the limit is within it).", budget_exceeded),
    Rule("usage-missing", "model call without usage", "info",
         "A model call that recorded no token usage, so its cost is unknown.", usage_missing),
    Rule("prompt-injection", "prompt injection in input or tool output", "warning",
         "User input or tool/retrieved content that tries to override the instructions (\"ignore previous "
         "instructions\", \"you are now...\", \"system:\").", prompt_injection),
)}

RULE_TITLES = {r.id: r.title for r in RULES.values()}

_DEFAULTS = Config()
_ACTIVE: ContextVar[Config | None] = ContextVar("loupe_rules_config", default=None)


def active_config() -> Config | None:
    """The configuration set by `using_config` around the caller, if any."""
    return _ACTIVE.get()


@contextmanager
def using_config(config: Config | None) -> Iterator[None]:
    """Run the rules with `config` wherever they run without one (the store's ingest) inside this block."""
    token = _ACTIVE.set(config)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def run_rules(trace: Trace, config: Config | None = None, *, totals: TraceTotals | None = None,
              pricer: Pricer | None = None) -> RuleResult:
    """Every rule over the trace, with the configuration's switches and severities. A rule that raises is
    recorded as not run rather than losing the trace."""
    config = config or _ACTIVE.get() or _DEFAULTS
    ctx = Context(trace, config, totals, pricer)
    result = RuleResult()
    for rule in RULES.values():
        settings = config.rule(rule.id)
        if not settings.enabled:
            result.runs.append(_not_run(rule.id, "disabled in the configuration"))
            continue
        try:
            findings, run = rule.fn(trace, ctx)
        except Exception as exc:  # one rule's bug must not keep a trace out of the store
            result.runs.append(_not_run(rule.id, f"the rule failed: {type(exc).__name__}: {exc}"))
            continue
        if settings.severity is not None:
            findings = [f.model_copy(update={"severity": settings.severity}) for f in findings]
        result.findings.extend(findings)
        result.runs.append(run)
    return result
