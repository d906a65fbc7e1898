"""Rules that flag what went wrong in a trace. Each returns findings with evidence, or says it could not run."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .models import Finding, RuleRun, Step, Trace

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


def failure_reason(step: Step) -> str | None:
    """Why this tool step counts as failed, or None if no structured signal says it failed."""
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


def is_failed(step: Step) -> bool:
    return step.type == "tool" and failure_reason(step) is not None


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
    r"once|after you|before|need to|needs to|try|trying|attempt)\b|\?",
    re.IGNORECASE,
)
# Verbs that report an action as done when they stand just before the action's word ("processed the refund").
_DONE_BEFORE = {
    "processed", "issued", "completed", "made", "initiated", "submitted", "sent", "applied", "credited", "granted",
    "given", "gave", "executed", "performed", "finalized", "finalised", "approved", "placed", "booked", "created",
    "opened", "filed", "scheduled", "done", "successfully",
}
# Words that report it as done when they follow the action's word ("your refund has been processed").
_DONE_AFTER = re.compile(
    r"\W*(?:\w+\W+){0,3}?(has been|have been|had been|was|were|is now|are now|is complete|is completed|"
    r"went through|has gone through|is on its way|is on the way|succeeded|is done|is confirmed|"
    r"is processed|is all set|is active|took effect|has taken effect|processed|issued|completed?|done|"
    r"confirmed|approved|successful)\b",
    re.IGNORECASE,
)
_PERFECT = {"i've", "i’ve", "we've", "we’ve", "have", "has", "been", "was", "were", "is", "successfully", "already"}
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_CLAUSE = re.compile(r",?\s+\b(?:but|however|although|though)\b\s*|;\s*|\s[—–-]\s", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z'’]*")


def action_stems(tool_name: str) -> list[str]:
    """The words of a tool's name that name its action, shortened to stems: issue_refund -> ['refund']."""
    parts = re.split(r"[^A-Za-z]+|(?<=[a-z])(?=[A-Z])", tool_name)
    stems = []
    for p in parts:
        w = p.lower()
        if len(w) < 3 or w in _GENERIC:
            continue
        stems.append(_stem(w))
    return stems


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
        elif w.endswith(("ed", "en")) and (i == 0 or any(b in _PERFECT for b in words[max(0, i - 3) : i])):
            end = spans[i].end()  # "I've refunded", "Refunded!", "has been canceled"
        else:
            m = _DONE_AFTER.match(clause, spans[i].end())
            if m is not None:
                end = m.end()  # "your refund has been processed"
        if end is None:
            continue
        following = [x for x in spans if x.start() >= end][:2]
        region = clause[: following[-1].end() if following else end]
        if not (_NEGATION.search(region) or _NOT_YET.search(region)):
            return True
    return False


def claimed_success(text: str, tool_name: str) -> str | None:
    """The sentence of `text` that claims the tool's action succeeded, or None."""
    stems = action_stems(tool_name)
    if not stems or not text:
        return None
    for sentence in _SENTENCE.split(text):
        for clause in _CLAUSE.split(sentence):
            if clause and _claims_in_clause(clause, stems):
                return sentence.strip()
    return None


# ---------------------------------------------------------------------------
# The rules.


@dataclass
class RuleResult:
    findings: list[Finding] = field(default_factory=list)
    runs: list[RuleRun] = field(default_factory=list)


def _assistant_texts(trace: Trace, after: int) -> list[tuple[str | None, str]]:
    """Assistant texts that come after step index `after`: (step id, text); the trace output last."""
    out: list[tuple[str | None, str]] = []
    for step in trace.steps[after + 1 :]:
        if step.type != "llm":
            continue
        msg = step.output_message
        if msg is not None and msg.role == "assistant":
            text = msg.text()
            if text:
                out.append((step.id, text))
    if isinstance(trace.output, str) and trace.output and not any(t == trace.output for _, t in out):
        out.append((None, trace.output))
    return out


def success_after_tool_error(trace: Trace) -> tuple[list[Finding], RuleRun]:
    rule = "success-after-tool-error"
    findings: list[Finding] = []
    failed = [(i, s) for i, s in enumerate(trace.steps) if is_failed(s)]
    if not failed:
        return findings, RuleRun(rule_id=rule, ran=True)
    checked = False
    seen_tools: set[str] = set()
    for i, step in failed:
        name = step.name or ""
        if name in seen_tools:
            continue
        later = trace.steps[i + 1 :]
        if any(s.type == "tool" and s.name == name and not is_failed(s) for s in later):
            checked = True
            continue  # a later call of the same tool succeeded: the claim may be true
        texts = _assistant_texts(trace, i)
        if not texts:
            continue
        checked = True
        for step_id, text in texts:
            sentence = claimed_success(text, name)
            if sentence:
                seen_tools.add(name)
                err = step.error.type if step.error and step.error.type else failure_reason(step)
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
        return findings, RuleRun(rule_id=rule, ran=False, reason="no assistant text recorded after the failed tool step")
    return findings, RuleRun(rule_id=rule, ran=True)


RULES: dict[str, Callable[[Trace], tuple[list[Finding], RuleRun]]] = {
    "success-after-tool-error": success_after_tool_error,
}

RULE_TITLES = {
    "success-after-tool-error": "success claimed after a tool error",
}


def run_rules(trace: Trace) -> RuleResult:
    result = RuleResult()
    for fn in RULES.values():
        findings, run = fn(trace)
        result.findings.extend(findings)
        result.runs.append(run)
    return result
