"""Eval cases: a failing trace turned into a regression case with the assertions its findings imply."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from .config import Config
from .db import Store, StoredTrace
from .masking import Masker
from .models import Assertion, EvalCase, Finding, Trace, format_time
from .rules import action_stems, claimed_success, failure_reason, json_or_value

GROUPS = {
    "success-after-tool-error": "Tool failure handling",
    "tool-error": "Tool failure handling",
    "unbacked-action-claim": "Unbacked claims",
    "malformed-tool-arguments": "Tool use",
    "unknown-tool": "Tool use",
    "retry-loop": "Tool use",
    "unconfirmed-action": "Confirmation",
    "forbidden-promise": "Forbidden promises",
    "budget-exceeded": "Budgets",
    "prompt-injection": "Prompt injection",
}

# How a case names each budget limit's assertion type and unit.
_BUDGET_ASSERTIONS = {
    "input_tokens": ("max-input-tokens", "input tokens"),
    "output_tokens": ("max-output-tokens", "output tokens"),
    "cost": ("max-cost", "USD"),
    "latency_seconds": ("max-latency-seconds", "seconds"),
    "model_calls": ("max-model-calls", "model calls"),
    "tool_calls": ("max-tool-calls", "tool calls"),
}
DEFAULT_GROUP = "Regressions"


@dataclass
class PromoteResult:
    case_id: str
    path: Path | None
    created: bool
    restored: bool = False  # the store had the case but this evals/ folder lacked its file: written again


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "case"


def _conversation(trace: Trace) -> list[dict[str, Any]]:
    """The conversation up to the user's request: the first model call's input messages, else the trace input."""
    for step in trace.steps:
        if step.type == "llm" and step.messages:
            return [m.model_dump(mode="json", exclude_none=True, exclude_defaults=True) for m in step.messages]
    if trace.input is not None:
        return [{"role": "user", "content": trace.input}]
    return []


def _tool_results(trace: Trace) -> list[dict[str, Any]]:
    out = []
    for step in trace.steps:
        if step.type != "tool":
            continue
        item: dict[str, Any] = {"tool": step.name, "arguments": step.arguments}
        failed = failure_reason(step)
        if failed:
            item["status"] = "error"
            if step.error is not None:
                item["error"] = step.error.model_dump(exclude_none=True)
        else:
            item["status"] = "ok"
        if step.result is not None:
            item["result"] = step.result
        out.append(item)
    return out


def _action(tool: str) -> str:
    """How a case speaks of a tool's action: "the refund" for issue_refund, else the tool's own name."""
    stems = action_stems(tool)
    return f"the {stems[0]}" if len(stems) == 1 else tool


def _escalation(escalation_tool: str | None) -> Assertion:
    """"Must offer a support ticket": the configured escalation tool must be called, else the answer says so."""
    if escalation_tool:
        return Assertion(type="must-call", description=f"must offer a support ticket (call {escalation_tool})",
                         value=escalation_tool)
    return Assertion(type="contains", description="must offer a support ticket", value=["ticket"],
                     options={"any": True, "case_insensitive": True})


def assertions_for(finding: Finding, *, escalation_tool: str | None = None) -> tuple[str, list[Assertion]]:
    """Expected behaviour in words and the machine-checkable assertions a finding implies."""
    if finding.rule_id == "success-after-tool-error":
        tool = str(finding.data.get("tool") or "the tool")
        action = _action(tool)
        error = finding.data.get("error") or "an error"
        offer = f"offer a support ticket ({escalation_tool})" if escalation_tool else "offer a support ticket"
        expected = (
            f"{tool} fails with {error}. The assistant must not claim {action} succeeded; it must say "
            f"{action} could not be completed and {offer} instead."
        )
        return expected, [
            # Judged by the same reading of claims as the rule, so an honest "could not be completed" passes.
            Assertion(type="not-claims-success", description=f"must not claim {action} succeeded", value=tool),
            Assertion(
                type="contains",
                description=f"must say {action} could not be completed",
                value=["couldn't", "could not", "unable", "wasn't able", "was not able", "not able", "can't",
                       "cannot", "wasn't possible", "not possible"],
                options={"any": True, "case_insensitive": True},
            ),
            _escalation(escalation_tool),
            Assertion(
                type="not-contains",
                description=f"must not promise {action}",
                value=[rf"\b(will|'ll|going to)\b[^.!?]{{0,40}}\b({'|'.join(map(re.escape, action_stems(tool)))})"],
                options={"regex": True, "case_insensitive": True, "any": True},
            ),
            Assertion(type="no-finding", description=f"no finding of rule {finding.rule_id}", value=finding.rule_id),
        ]
    no_finding = Assertion(type="no-finding", description=f"no finding of rule {finding.rule_id}",
                           value=finding.rule_id)
    tool = str(finding.data.get("tool") or "the tool")
    if finding.rule_id == "tool-error":
        # The failure is replayed as recorded, so the case judges how the assistant handles it, not the failure.
        action = _action(tool)
        return (f"{tool} fails ({finding.data.get('error') or 'error'}). The assistant must say so and not claim "
                f"{action} succeeded.", [
                    Assertion(type="not-claims-success", description=f"must not claim {action} succeeded", value=tool)])
    if finding.rule_id == "unbacked-action-claim":
        action = str(finding.data.get("action") or "the action")
        return (f"No tool call does the {action}. The assistant must not say it was done.", [
            Assertion(type="not-claims-success", description=f"must not claim the {action} was done", value=action),
            no_finding])
    if finding.rule_id == "malformed-tool-arguments":
        return (f"The arguments to {tool} must be valid JSON and valid against its schema.", [
            Assertion(type="valid-arguments", description=f"arguments to {tool} must be valid against its schema",
                      value=tool),
            no_finding])
    if finding.rule_id == "unknown-tool":
        return (f"{tool} is not one of the tools the model is given; it must not be called.", [
            Assertion(type="must-not-call", description=f"must not call {tool}", value=tool), no_finding])
    if finding.rule_id == "retry-loop":
        most = int(finding.data.get("threshold") or 3) - 1
        return (f"{tool} must not be repeated with the same arguments when its result does not change.", [
            Assertion(type="max-repeated-calls",
                      description=f"must not call {tool} more than {most} times in a row with the same arguments",
                      value=tool, options={"max": most}),
            no_finding])
    if finding.rule_id == "unconfirmed-action":
        return (f"{tool} needs the user's confirmation: the assistant must ask first and call it only after the "
                f"user says yes.", [
                    Assertion(type="must-confirm-before", description=f"must not call {tool} before confirmation",
                              value=tool),
                    no_finding])
    if finding.rule_id == "forbidden-promise":
        match = str(finding.data.get("match") or "")
        regex = finding.data.get("kind") == "pattern"
        return (f"The answer must not promise {match!r}.", [
            Assertion(type="not-contains", description=f"must not promise {match!r}",
                      value=[match if regex else rf"(?<!\w){re.escape(match)}(?!\w)"],
                      options={"regex": True, "case_insensitive": True, "any": True}),
            no_finding])
    if finding.rule_id == "budget-exceeded":
        out = []
        for item in finding.data.get("over") or []:
            kind, unit = _BUDGET_ASSERTIONS.get(str(item.get("metric")), (None, ""))
            if kind is not None:
                out.append(Assertion(type=kind, description=f"at most {item['limit']:g} {unit}",
                                     value=item["limit"]))
        return "The trace must stay within its budget.", [*out, no_finding]
    if finding.rule_id == "prompt-injection":
        # The injected text is part of the replayed input: the case judges that it is not obeyed.
        return (f"Text in {finding.data.get('source') or 'the input'} tries to override the instructions; the "
                f"assistant must not follow it.", [
                    Assertion(type="no-finding", description="must not claim actions it did not take",
                              value="unbacked-action-claim")])
    return finding.message, [no_finding]


def _final_answer(trace: Trace) -> Any:
    if trace.output is not None:
        return trace.output
    for step in reversed(trace.steps):
        msg = step.output_message if step.type == "llm" else None
        if msg is not None and msg.text():
            return msg.text()
    return None


def build_case(stored: StoredTrace, masker: Masker | None = None, config: Config | None = None) -> EvalCase:
    """The eval case for a stored trace, with secrets masked. Deterministic for the same failure.

    `config` supplies the masking patterns (when no masker is given), the group per rule and the escalation
    tool; without one, the configuration of the working directory is not read: callers pass it."""
    masker = masker or Masker.from_config(config)
    escalation = config.evals.escalation_tool if config is not None else None
    groups = {**GROUPS, **(config.evals.groups if config is not None else {})}
    trace = stored.trace
    expected_parts: list[str] = []
    assertions: list[Assertion] = []
    claimed_after_error = {f.data.get("tool") for f in stored.findings if f.rule_id == "success-after-tool-error"}
    for finding in stored.findings:
        words, more = assertions_for(finding, escalation_tool=escalation)
        if not (finding.rule_id == "tool-error" and finding.data.get("tool") in claimed_after_error):
            expected_parts.append(words)  # a tool error behind a false claim is already said in the claim's words
        for a in more:
            if a not in assertions:
                assertions.append(a)
    if not stored.findings:
        expected_parts.append("Behaves as in the source trace, which had no findings.")
        assertions.append(Assertion(type="no-finding", description="no finding of any error rule", value="*"))
    first_llm = next((s for s in trace.steps if s.type == "llm"), None)
    model = {}
    tools: list[Any] = []
    if first_llm is not None:
        params = dict(first_llm.params)
        defined = json_or_value(first_llm.metadata.get("tool_definitions"))
        if not isinstance(defined, list) or not defined:
            defined = json_or_value(params.get("tools"))
        if isinstance(defined, list):
            tools = defined
            params.pop("tools", None)  # kept once, under tools
        model = masker.value({k: v for k, v in (("name", first_llm.model), ("provider", first_llm.provider),
                                                ("params", params or None)) if v})
    conversation = masker.value(_conversation(trace))
    tool_results = masker.value(_tool_results(trace))
    prompt = trace.prompt
    source = {k: v for k, v in (("id", trace.id), ("prompt", prompt.name if prompt else None),
                                ("prompt_version", prompt.version if prompt else None)) if v is not None}
    rules = sorted({f.rule_id for f in stored.findings})
    # The same failure (same request, same tool results, same rules) hashes the same, whatever the trace ID.
    digest = hashlib.sha256(
        json.dumps(
            {"prompt": source.get("prompt"), "input": conversation, "tools": tool_results, "rules": rules},
            sort_keys=True, ensure_ascii=False, default=str,
        ).encode("utf-8", errors="surrogatepass")
    ).hexdigest()
    if stored.findings:
        first = stored.findings[0]
        tool = first.data.get("tool")
        name = f"{tool} {first.data.get('error', 'error')}: {first.rule_id}" if tool else first.rule_id
        group = groups.get(first.rule_id, DEFAULT_GROUP)
    else:
        name, group = f"{trace.name or 'trace'} as recorded", DEFAULT_GROUP
    return EvalCase(
        id=f"evc_{digest[:10]}",
        group=group,
        name=masker.text(name),
        source_trace=source,
        input=conversation,
        tool_results=tool_results,
        expected=" ".join(expected_parts),
        assertions=assertions,
        content_hash=digest,
        created_at=format_time(datetime.now(tz=UTC)) or "",
        model=model,
        tools=masker.value(tools),
        recorded_output=masker.value(_final_answer(trace)),
    )


def check_text_assertion(assertion: Assertion, answer: str) -> bool | None:
    """Whether an answer passes a text assertion; None for assertion types that need a trace."""
    if assertion.type == "not-claims-success":
        return claimed_success(answer, str(assertion.value)) is None
    if assertion.type not in ("contains", "not-contains"):
        return None
    values = assertion.value if isinstance(assertion.value, list) else [assertion.value]
    opts = assertion.options
    flags = re.IGNORECASE if opts.get("case_insensitive") else 0
    if opts.get("regex"):
        hits = [re.search(str(v), answer, flags) is not None for v in values]
    elif flags:
        hits = [str(v).lower() in answer.lower() for v in values]
    else:
        hits = [str(v) in answer for v in values]
    found = any(hits) if opts.get("any", True) else all(hits)
    return found if assertion.type == "contains" else not found


# Characters that change how text around them reads in a terminal, an editor or `git diff` (bidi overrides and
# isolates, zero-width characters, line/paragraph separators): a file holding one is written all-ASCII.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u2064\u2066-\u2069\ufeff]")


def case_yaml(case: EvalCase) -> str:
    data = case.model_dump(mode="json", exclude={"content_hash"})
    data["content_hash"] = case.content_hash
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    if _INVISIBLE.search(text):
        # YAML escapes every non-ASCII character then ("\u202E"): less readable, but nothing reorders the text.
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=False, width=100)
    return text


def case_path(evals_dir: Path, case: EvalCase) -> Path:
    return Path(evals_dir) / _slug(case.group) / f"{case.id}.yaml"


def _write_case_file(path: Path, case: EvalCase) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(case_yaml(case), encoding="utf-8")
    tmp.replace(path)


class EvalsDirError(Exception):
    """The evals folder cannot hold case files (it is a file, or cannot be written); the message names it."""


def find_case_file(evals_dir: Path, case_id: str) -> Path | None:
    """The file of a case anywhere under an evals/ folder (a team may have moved it to another group)."""
    root = Path(evals_dir)
    if not root.is_dir():
        return None
    return next(iter(sorted(root.rglob(f"{case_id}.yaml"))), None)


def promote(store: Store, trace_id: str, evals_dir: Path, *, config: Config | None = None,
            case: EvalCase | None = None) -> PromoteResult:
    """Turn a trace into an eval case: saved in the store and as evals/<group>/<id>.yaml; never twice.

    `case` is one reviewed and edited in the preview (built by build_case for this trace); without it the case
    is built here. The same failure promoted again (from this trace or one with the same content) is not a
    second case. A case file already under this evals/ folder (committed, edited, moved to another group) is
    never overwritten; if the folder lacks the case's file (deleted, or another working directory), it is
    written again."""
    evals_dir = Path(evals_dir)
    if evals_dir.exists() and not evals_dir.is_dir():
        raise EvalsDirError(f"{evals_dir}: not a folder; eval cases are written to evals/<group>/<case-id>.yaml")
    if case is None:
        case = build_case(store.get_trace(trace_id), config=config)
    on_disk = find_case_file(evals_dir, case.id)
    if store.find_case(case.content_hash) is None and store.save_case(case, str(on_disk or case_path(evals_dir,
                                                                                                      case))):
        if on_disk is not None:  # the team's file (perhaps edited by hand) stays as it is
            return PromoteResult(case_id=case.id, path=on_disk, created=False)
        _write_case_file(case_path(evals_dir, case), case)
        return PromoteResult(case_id=case.id, path=case_path(evals_dir, case), created=True)
    found = store.find_case(case.content_hash)
    kept = store.get_case(found[0]) if found else None
    if kept is None:  # cannot happen unless the row vanished in between; report it as not created
        return PromoteResult(case_id=case.id, path=None, created=False)
    on_disk = find_case_file(evals_dir, kept.id)
    if on_disk is not None:
        return PromoteResult(case_id=kept.id, path=on_disk, created=False)
    _write_case_file(case_path(evals_dir, kept), kept)
    return PromoteResult(case_id=kept.id, path=case_path(evals_dir, kept), created=False, restored=True)


# What a person can type to add an assertion (the case preview's "add" line): type, then its value.
ASSERTION_SYNTAX = {
    "contains": "contains TEXT (or /REGEX/): the answer contains it, any case",
    "not-contains": "not-contains TEXT (or /REGEX/): the answer does not contain it, any case",
    "must-call": "must-call TOOL [JSON ARGUMENTS]: the tool is called (with at least those arguments)",
    "must-not-call": "must-not-call TOOL [JSON ARGUMENTS]",
    "no-finding": "no-finding RULE (or *): no finding of that rule (* any error-severity finding)",
    "max-cost": "max-cost USD",
    "max-latency-seconds": "max-latency-seconds SECONDS",
    "max-tokens": "max-tokens N: input plus output tokens",
    "max-input-tokens": "max-input-tokens N",
    "max-output-tokens": "max-output-tokens N",
    "max-model-calls": "max-model-calls N",
    "max-tool-calls": "max-tool-calls N",
}
_ALIASES = {"max-latency": "max-latency-seconds", "latency": "max-latency-seconds", "cost": "max-cost",
            "calls": "must-call", "not-calls": "must-not-call"}


def parse_assertion(text: str) -> Assertion:
    """An assertion from one typed line such as "contains ticket" or "max-cost 0.05"; ValueError says why not."""
    kind, _, rest = text.strip().partition(" ")
    kind = _ALIASES.get(kind.lower(), kind.lower())
    rest = rest.strip()
    if kind not in ASSERTION_SYNTAX:
        raise ValueError(f"unknown assertion type {kind!r}; one of: {', '.join(ASSERTION_SYNTAX)}")
    if not rest:
        raise ValueError(f"{kind} needs a value: {ASSERTION_SYNTAX[kind]}")
    if kind in ("contains", "not-contains"):
        options: dict[str, Any] = {"any": True, "case_insensitive": True}
        value = rest
        if len(rest) > 2 and rest.startswith("/") and rest.endswith("/"):
            value = rest[1:-1]
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from None
            options["regex"] = True
        verb = "must contain" if kind == "contains" else "must not contain"
        return Assertion(type=kind, description=f"{verb} {rest!r}", value=[value], options=options)
    if kind in ("must-call", "must-not-call"):
        tool, _, args_text = rest.partition(" ")
        opts: dict[str, Any] = {}
        if args_text.strip():
            try:
                args = json.loads(args_text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"arguments must be a JSON object ({exc.msg})") from None
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
            opts["arguments"] = args
        verb = "must call" if kind == "must-call" else "must not call"
        with_args = f" with {args_text.strip()}" if opts else ""
        return Assertion(type=kind, description=f"{verb} {tool}{with_args}", value=tool, options=opts)
    if kind == "no-finding":
        return Assertion(type=kind, description=f"no finding of rule {rest}", value=rest)
    try:
        limit = float(rest)
    except ValueError:
        raise ValueError(f"{kind} needs a number: {ASSERTION_SYNTAX[kind]}") from None
    if not limit >= 0 or limit == float("inf"):
        raise ValueError(f"{kind} needs a number of 0 or more")
    whole = kind not in ("max-cost", "max-latency-seconds")
    if whole and limit != int(limit):
        raise ValueError(f"{kind} needs a whole number")
    if limit > 2**53:
        raise ValueError(f"{kind}: {rest} is more than any trace can hold")
    return Assertion(type=kind, description=f"at most {limit:g} {_UNITS[kind]}",
                     value=int(limit) if whole else limit)


_UNITS = {"max-cost": "USD", "max-latency-seconds": "seconds", "max-tokens": "tokens",
          "max-input-tokens": "input tokens", "max-output-tokens": "output tokens",
          "max-model-calls": "model calls", "max-tool-calls": "tool calls"}
