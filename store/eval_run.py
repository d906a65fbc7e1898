"""The offline eval runner: eval cases scored against recorded traces of a prompt version, per group and gate."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .config import Config, ToolSettings
from .db import NO_PROMPT, NO_VERSION, EvalResultRow, Store, StoredTrace, TraceFilter, VersionRef, compute_totals
from .evals import check_text_assertion
from .masking import Masker
from .models import Assertion, EvalCase, Message, Step, Trace, format_time
from .pricing import Pricer, default_pricer
from .rules import (
    RULES,
    Call,
    Context,
    action_stems,
    claimed_success,
    failure_reason,
    json_or_value,
    run_rules,
    tool_calls,
    tool_definitions,
)

PASS, FAIL, NOT_RUN = "pass", "fail", "not run"
CASE_SUFFIXES = (".yaml", ".yml")


class CaseFileError(ValueError):
    """An eval case file cannot be read; the message names the file, the line when known, and the field."""


class EvalRunError(ValueError):
    """The traces to score cannot be read (a --traces file); the message names the file."""


# ------------------------------------------------------------------------------------------------ results


@dataclass
class Rate:
    passed: int = 0
    run: int = 0
    not_run: int = 0

    @property
    def rate(self) -> float | None:
        """Passed over run; None when no case ran (unknown, never 0% or 100%)."""
        return self.passed / self.run if self.run else None

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "run": self.run, "not_run": self.not_run, "rate": self.rate}


@dataclass
class CaseResult:
    case_id: str
    group: str
    name: str
    version: str | None  # the version spec it was scored against, as given ("v7", "support_agent@v7")
    status: str  # "pass" | "fail" | "not run"
    trace_id: str | None  # the trace scored; with several, the first that failed (else the first)
    failed: list[str] = field(default_factory=list)  # the failed assertions, in words, with what was found
    reason: str | None = None  # why it did not run
    traces: list[str] = field(default_factory=list)  # every trace scored: the case passes only if all pass
    failed_by_trace: dict[str, list[str]] = field(default_factory=dict)  # the traces that failed, and how
    answers: dict[str, str | None] = field(default_factory=dict)  # each failed trace's final answer

    def to_json(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "group": self.group, "name": self.name, "version": self.version,
                "status": self.status, "trace_id": self.trace_id, "traces": self.traces, "failed": self.failed,
                "failed_by_trace": self.failed_by_trace, "answers": self.answers, "reason": self.reason}


@dataclass
class GroupResult:
    group: str
    cases: int
    gate: float
    candidate: Rate
    baseline: Rate | None
    passed: bool
    note: str
    required: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "cases": self.cases, "gate": self.gate, "required": self.required,
                "candidate": self.candidate.to_json(),
                "baseline": self.baseline.to_json() if self.baseline is not None else None,
                "passed": self.passed, "note": self.note}


@dataclass
class EvalReport:
    candidate: str
    baseline: str | None
    groups: list[GroupResult]
    results: list[CaseResult]
    traces_path: str | None = None  # a replay run: the candidate's traces came from this file
    problems: list[str] = field(default_factory=list)  # lines of a --traces file that could not be read
    run_id: str | None = None  # set when the results were recorded in the store

    @property
    def passed(self) -> bool:
        """Every required group reached its gate; a run that scored no case at all did not pass."""
        required = [g for g in self.groups if g.required]
        if not required or not any(g.candidate.run for g in self.groups):
            return False
        return all(g.passed for g in required)

    def results_for(self, version: str | None) -> list[CaseResult]:
        return [r for r in self.results if r.version == version]

    def to_json(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "baseline": self.baseline, "traces": self.traces_path,
                "passed": self.passed, "groups": [g.to_json() for g in self.groups],
                "results": [r.to_json() for r in self.results], "problems": self.problems,
                "run_id": self.run_id}


# ------------------------------------------------------------------------------------------------ cases


def _yaml_line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f":{mark.line + 1}" if mark is not None else ""


def read_case_file(path: Path) -> EvalCase:
    """One case from its YAML file; a CaseFileError names the file, the line (YAML errors) and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(f"{path}: cannot be read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CaseFileError(f"{path}{_yaml_line(exc)}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise CaseFileError(f"{path}: an eval case must be a mapping of fields, not {type(data).__name__}")
    try:
        return EvalCase.model_validate(data)
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors())
        raise CaseFileError(f"{path}: not a valid eval case ({bad})") from None


def case_files(evals_dir: Path) -> list[Path]:
    """The case files under an evals/ folder, in a stable order (group folder, then case file)."""
    root = Path(evals_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in CASE_SUFFIXES
                  and not p.name.startswith("."))


def read_cases(evals_dir: Path) -> list[EvalCase]:
    """Every case in an evals/ folder. The same case ID in two files is an error naming both."""
    seen: dict[str, Path] = {}
    out = []
    for path in case_files(evals_dir):
        case = read_case_file(path)
        if case.id in seen:
            raise CaseFileError(f"{path}: case ID {case.id} is also in {seen[case.id]}")
        seen[case.id] = path
        out.append(case)
    return out


def load_cases_for_run(store: Store | None, evals_dir: Path | None) -> tuple[list[EvalCase], str]:
    """The cases a command works on, and where they came from: the YAML files in `evals_dir` when it has any
    (the folder a team commits is the source of truth), else the cases in the store."""
    if evals_dir is not None and Path(evals_dir).exists() and not Path(evals_dir).is_dir():
        raise CaseFileError(f"{evals_dir}: not a folder of eval cases")
    if evals_dir is not None and case_files(evals_dir):
        cases = read_cases(evals_dir)
        return cases, f"{evals_dir}/"
    return (store.list_cases() if store is not None else []), "the store"


# ------------------------------------------------------------------------------------------------ matching

_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9]*(?:_[A-Z][A-Z0-9]*)*)_\d+>")


def masker_for(config: Config | None) -> Masker:
    """The masker promotion uses, so a trace's request is masked the way a case's was."""
    return Masker.from_config(config)


def normalise(text: str, config: Config | None = None) -> str:
    """Text as requests are compared: masked, placeholders without their numbers (the numbers depend on the
    order things were masked in), case-folded, whitespace collapsed."""
    masked = masker_for(config).text(text)
    return " ".join(_PLACEHOLDER.sub(r"<\1>", masked).casefold().split())


def _message_text(m: Any) -> str:
    if isinstance(m, Message):
        return m.text()
    if isinstance(m, dict):
        try:
            return Message.model_validate(m).text()
        except ValidationError:
            content = m.get("content")
            return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False, default=str)
    return str(m)


def _user_texts(messages: Iterable[Any]) -> list[str]:
    out = []
    for m in messages:
        role = m.role if isinstance(m, Message) else (m.get("role") if isinstance(m, dict) else None)
        if role == "user":
            out.append(_message_text(m))
    return out


def case_request(case: EvalCase) -> list[str]:
    """The user's turns of the case's conversation: what a trace must have been asked to run the case."""
    return _user_texts(case.input)


def trace_request(trace: Trace) -> list[str]:
    """The user's turns as the trace's first model call saw them, else the trace's input (as promotion reads it)."""
    for step in trace.steps:
        if step.type == "llm" and step.messages:
            return _user_texts(step.messages)
    if trace.input is None:
        return []
    if isinstance(trace.input, list):
        texts = _user_texts(trace.input)
        if texts:
            return texts
    return [trace.input if isinstance(trace.input, str) else json.dumps(trace.input, ensure_ascii=False, default=str)]


def request_key(turns: list[str], config: Config | None = None) -> str | None:
    """The normalised request; None when there is none (a case or trace without a user turn matches nothing)."""
    normalised = [normalise(t, config) for t in turns]
    return "\n".join(normalised) if any(normalised) else None


@dataclass(frozen=True)
class VersionSpec:
    """A --prompt-version value: "v7" (any prompt) or "support_agent@v7"."""

    text: str
    name: str | None
    version: str | None
    named: bool  # whether the prompt name was given

    @classmethod
    def parse(cls, text: str) -> VersionSpec:
        if isinstance(text, VersionRef):  # one exact (name, version), whatever either holds (the gate's)
            return cls(text, text.name, text.version, True)
        # As TraceFilter reads it: split at the last "@" (a prompt name may hold one, "team@acme@v9").
        if "@" in text:
            name, _, version = text.rpartition("@")
            return cls(text, None if name == NO_PROMPT else name, _version_or_none(version), True)
        return cls(text, None, _version_or_none(text), False)

    def matches(self, trace: Trace) -> bool:
        name = trace.prompt.name if trace.prompt else None
        version = trace.prompt.version if trace.prompt else None
        return version == self.version and (not self.named or name == self.name)

    def filter(self) -> TraceFilter:
        return TraceFilter(prompt_versions=[self.text])


def _version_or_none(v: str) -> str | None:
    return None if v in (NO_VERSION, "") else v


class TraceSource:
    """The traces of one version, by request: read from the store, or from a file for a replay run."""

    def __init__(self, config: Config | None, pricer: Pricer) -> None:
        self.config = config
        self.pricer = pricer
        self.by_request: dict[str, list[tuple[str, str | None]]] = {}  # key -> [(trace ID, prompt name)]
        self.count = 0
        self.prompts: set[str | None] = set()  # the prompt names of the traces

    def add(self, trace_id: str, trace: Trace) -> None:
        self.count += 1
        self.prompts.add(trace.prompt.name if trace.prompt else None)
        key = request_key(trace_request(trace), self.config)
        if key is not None:
            self.by_request.setdefault(key, []).append((trace_id, trace.prompt.name if trace.prompt else None))

    def matching(self, case: EvalCase) -> list[str]:
        """IDs of the traces asked the case's request, of the case's prompt when both name one."""
        key = request_key(case_request(case), self.config)
        if key is None:
            return []
        prompt = case.source_trace.get("prompt")
        return [tid for tid, name in self.by_request.get(key, [])
                if prompt is None or name is None or name == prompt]

    def get(self, trace_id: str) -> StoredTrace:
        raise NotImplementedError


class StoreTraces(TraceSource):
    def __init__(self, store: Store, spec: VersionSpec, config: Config | None, pricer: Pricer) -> None:
        super().__init__(config, pricer)
        self.store = store
        # The whole version is read once, keeping only each trace's request; scored traces are read again.
        for summary in store.iter_traces(spec.filter()):
            self.add(summary.id, store.get_trace(summary.id).trace)

    def get(self, trace_id: str) -> StoredTrace:
        return self.store.get_trace(trace_id)


class FileTraces(TraceSource):
    """A replay run's traces, from any file loupe ingests; the rules run on them here, as at ingest."""

    def __init__(self, path: Path, spec: VersionSpec | None, config: Config | None, pricer: Pricer) -> None:
        super().__init__(config, pricer)
        from .importers import FormatError, read_path  # the importers depend on the store package, not the reverse
        from .importers.base import ImportResult

        self.traces: dict[str, Trace] = {}
        result = ImportResult()
        try:
            for trace in read_path(Path(path), "auto", result):
                if spec is None or spec.matches(trace):
                    self.traces[trace.id] = trace  # the same ID twice: the later record, as ingest keeps it
        except FormatError as exc:
            raise EvalRunError(str(exc)) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise EvalRunError(f"{path}: cannot be read ({exc})") from None
        except (RecursionError, OverflowError, ValueError, MemoryError) as exc:
            raise EvalRunError(f"{path}: stopped reading ({type(exc).__name__}: {str(exc)[:200]})") from None
        self.problems = [str(p) for p in result.problems]
        for trace_id, trace in self.traces.items():
            self.add(trace_id, trace)

    def get(self, trace_id: str) -> StoredTrace:
        return derive(self.traces[trace_id], self.config, self.pricer)


def derive(trace: Trace, config: Config | None = None, pricer: Pricer | None = None) -> StoredTrace:
    """What the store would derive from a trace at ingest (costs, totals, findings), without storing it."""
    pricer = pricer or default_pricer()
    costs = {s.id: pricer.step_cost(s) for s in trace.steps}
    totals = compute_totals(trace, costs, [])
    rules = run_rules(trace, config or Config(), totals=totals, pricer=pricer)
    totals.findings = len(rules.findings)
    return StoredTrace(trace=trace, costs=costs, totals=totals, findings=rules.findings, rule_runs=rules.runs,
                       ingested_at="")


# ------------------------------------------------------------------------------------------------ scoring


def final_answer(trace: Trace) -> str | None:
    """The assistant's last words: the trace's output, else the last model call's text."""
    if isinstance(trace.output, str) and trace.output.strip():
        return trace.output
    for step in reversed(trace.steps):
        msg = step.output_message if step.type == "llm" else None
        if msg is not None and msg.text():
            return msg.text()
    if trace.output is not None and not isinstance(trace.output, str):
        return json.dumps(trace.output, ensure_ascii=False, default=str)
    return None


def _quote(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return json.dumps(text if len(text) <= limit else text[: limit - 1] + "…", ensure_ascii=False)


def _text_miss(a: Assertion, answer: str) -> str:
    """What the answer lacks (contains) or has (not-contains), in a few words."""
    values = [str(v) for v in (a.value if isinstance(a.value, list) else [a.value])]
    flags = re.IGNORECASE if a.options.get("case_insensitive") else 0
    if a.options.get("regex"):
        found = [m.group(0) for v in values if (m := re.search(v, answer, flags)) is not None]
    else:
        found = [v for v in values if (v.lower() in answer.lower() if flags else v in answer)]
    if a.type == "not-contains":
        return "the answer has " + ", ".join(_quote(f, 80) for f in found[:3])
    if a.options.get("any", True) or not found:
        return "the answer has none of " + ", ".join(_quote(v, 40) for v in values[:6]) + (
            ", …" if len(values) > 6 else "")
    missing = [v for v in values if v not in found]
    return "the answer lacks " + ", ".join(_quote(v, 40) for v in missing[:6])


def _comparable(value: Any, config: Config | None) -> Any:
    """A value as recorded arguments are compared with a case's: JSON text parsed, strings masked like the case."""
    value = json_or_value(value)
    if isinstance(value, str):
        return _PLACEHOLDER.sub(r"<\1>", masker_for(config).text(value))
    if isinstance(value, dict):
        return {k: _comparable(v, config) for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v, config) for v in value]
    return value


def subset(want: Any, got: Any) -> bool:
    """Whether `got` has everything `want` has: keys of objects recursively, anything else equal."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and subset(v, got[k]) for k, v in want.items())
    if isinstance(want, float) or isinstance(got, float):
        return not isinstance(want, bool) and not isinstance(got, bool) and want == got
    return bool(want == got)


def _tool_and_arguments(a: Assertion) -> tuple[str, Any]:
    """must-call's target: a tool name, or {"tool": ..., "arguments": ...}; options.arguments works too."""
    value = a.value
    if isinstance(value, dict):
        return str(value.get("tool") or value.get("name") or ""), value.get("arguments", a.options.get("arguments"))
    return str(value or ""), a.options.get("arguments")


def _calls_to(calls: list[Call], tool: str, arguments: Any, config: Config | None) -> list[Call]:
    hits = [c for c in calls if c.name == tool]
    if arguments is None:
        return hits
    want = _comparable(arguments, config)
    return [c for c in hits if subset(want, _comparable(c.arguments, config))]


def _does(call: Call, value: str, calls: list[Call]) -> bool:
    """Whether a call does what a not-claims-success assertion names: a tool (by its name), or an action word
    ("cancel", from the unbacked-action-claim rule) that the call's name says it does."""
    if any(c.name == value for c in calls):
        return call.name == value  # "cancel_subscription" is backed by that tool, not by get_subscription_plan
    wanted = action_stems(value)
    if len(wanted) != 1:
        return False
    return any(s.startswith(wanted[0]) or (len(s) >= 4 and wanted[0].startswith(s)) for s in action_stems(call.name))


def _max_value(a: Assertion) -> float | None:
    v = a.options.get("max", a.value)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _fmt(v: float) -> str:
    return f"{v:,.6g}"


def _case_schemas(case: EvalCase) -> dict[str, Any] | None:
    # The case's tool definitions, read the way the rules read a model call's.
    return tool_definitions(Step(id="case", type="llm", metadata={"tool_definitions": case.tools})) \
        if case.tools else None


def _argument_problems(arguments: Any, schema: Any) -> list[str]:
    args = arguments
    if isinstance(args, str):
        if not args.strip():
            args = {}
        else:
            try:
                args = json.loads(args)
            except ValueError as exc:
                return [f"not valid JSON ({exc})"]
    if not isinstance(args, dict):
        return [f"{'null' if args is None else type(args).__name__}, not an object"]
    if not isinstance(schema, dict):
        return []
    import jsonschema  # type: ignore[import-untyped]

    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
        errors = sorted(cls(schema).iter_errors(args), key=lambda e: [str(p) for p in e.absolute_path])
    except Exception:  # a broken schema, or a $ref that would need fetching, judges nothing
        return []
    out = []
    for e in errors[:3]:
        where = ".".join(str(p) for p in e.absolute_path)
        out.append(f"{where}: {e.message}" if where else e.message)
    return out


def _longest_repeat(calls: list[Call], tool: str) -> int:
    best = run = 0
    prev: str | None = None
    for c in calls:
        key = c.name + "\x00" + json.dumps(json_or_value(c.arguments), sort_keys=True, default=str)
        run = run + 1 if key == prev else 1
        prev = key
        if c.name == tool:
            best = max(best, run)
    return best


def _unknown_part(n: int, what: str) -> str:
    return f"{n} model call{'s' if n != 1 else ''} without {what}"


def check_assertion(a: Assertion, case: EvalCase, stored: StoredTrace, *, config: Config | None = None,
                    calls: list[Call] | None = None) -> str | None:
    """None when the trace passes the assertion, else why it fails. Missing data fails with that reason: an
    assertion that cannot be judged never passes."""
    trace, totals = stored.trace, stored.totals
    calls = calls if calls is not None else tool_calls(trace)
    kind = a.type
    if kind in ("contains", "not-contains", "not-claims-success"):
        answer = final_answer(trace)
        if answer is None:
            return "no final answer recorded"
        if kind == "not-claims-success":
            value = str(a.value or "")
            sentence = claimed_success(answer, value)
            if sentence is None:
                return None
            # A claim a successful call in this trace backs is true, not the failure the case guards against.
            if any(_does(c, value, calls) and c.tool is not None and not failure_reason(c.tool, config) for c in calls):
                return None
            return f"it does: {_quote(sentence)}"
        try:
            if check_text_assertion(a, answer):
                return None
            return _text_miss(a, answer)
        except re.error as exc:  # a hand-edited case file: its pattern judges nothing
            return f"cannot be judged: not a regular expression ({exc})"
    if kind in ("must-call", "must-not-call"):
        tool, arguments = _tool_and_arguments(a)
        hits = _calls_to(calls, tool, arguments, config)
        if kind == "must-call":
            if hits:
                return None
            others = [c for c in calls if c.name == tool]
            return (f"{tool} was called, never with the arguments {json.dumps(arguments, default=str)}" if others
                    else f"{tool} was not called")
        if not hits:
            return None
        return f"{tool} was called {len(hits)} time{'s' if len(hits) != 1 else ''}"
    if kind == "no-finding":
        rule = str(a.value or "*")
        if rule == "*":
            errors = [f for f in stored.findings if f.severity == "error"]
            return (None if not errors else
                    "error findings: " + ", ".join(sorted({f.rule_id for f in errors})))
        found = [f for f in stored.findings if f.rule_id == rule]
        if found:
            return found[0].message
        run = next((r for r in stored.rule_runs if r.rule_id == rule), None)
        if run is None:
            return f"rule {rule} did not run on this trace" + ("" if rule in RULES else " (no such rule)")
        if not run.ran:
            return f"rule {rule} could not run: {run.reason}"
        return None
    if kind == "max-cost":
        limit = _max_value(a)
        if limit is None:
            return f"the limit {a.value!r} is not a number"
        if totals.cost is not None and totals.cost > limit:
            return f"cost ${totals.cost:,.6f}{'+' if totals.cost_partial else ''} > ${_fmt(limit)}"
        if totals.cost is None or totals.cost_partial:
            n = totals.cost_unknown_steps
            return "cannot be judged: the cost is unknown" + (f" ({_unknown_part(n, 'a known cost')})" if n else "")
        return None
    if kind == "max-latency-seconds":
        limit = _max_value(a)
        if limit is None:
            return f"the limit {a.value!r} is not a number"
        if totals.latency_ms is None:
            return "cannot be judged: the latency is unknown"
        seconds = totals.latency_ms / 1000
        return None if seconds <= limit else f"latency {seconds:,.2f} s > {_fmt(limit)} s"
    if kind in ("max-input-tokens", "max-output-tokens", "max-tokens"):
        limit = _max_value(a)
        if limit is None:
            return f"the limit {a.value!r} is not a number"
        words = {"max-input-tokens": "input tokens", "max-output-tokens": "output tokens",
                 "max-tokens": "tokens"}[kind]
        parts = {"max-input-tokens": [totals.input_tokens], "max-output-tokens": [totals.output_tokens],
                 "max-tokens": [totals.input_tokens, totals.output_tokens]}[kind]
        known = sum(p for p in parts if p is not None)
        partial = totals.usage_unknown_steps > 0 or any(p is None for p in parts)
        if known > limit:
            return f"{words} {known:,}{'+' if partial else ''} > {_fmt(limit)}"
        if partial:
            n = totals.usage_unknown_steps
            return f"cannot be judged: {words} unknown" + (f" ({_unknown_part(n, 'usage')})" if n else "")
        return None
    if kind in ("max-model-calls", "max-tool-calls"):
        limit = _max_value(a)
        if limit is None:
            return f"the limit {a.value!r} is not a number"
        n, words = (totals.llm_calls, "model calls") if kind == "max-model-calls" else (totals.tool_calls,
                                                                                        "tool calls")
        return None if n <= limit else f"{n} {words} > {_fmt(limit)}"
    if kind == "max-repeated-calls":
        limit = _max_value(a)
        if limit is None:
            return f"the limit {a.options.get('max', a.value)!r} is not a number"
        tool = str(a.value) if not isinstance(a.value, (int, float)) else str(a.options.get("tool") or "")
        n = _longest_repeat(calls, tool)
        return None if n <= limit else f"{tool} was called {n} times in a row with the same arguments"
    if kind == "must-confirm-before":
        tool = str(a.value or "")
        if not any(c.name == tool for c in calls):
            return None
        # The unconfirmed-action rule, with this tool as one that needs the user's yes.
        cfg = (config or Config()).model_copy(update={"tools": {tool: ToolSettings(needs_confirmation=True)}})
        findings, run = RULES["unconfirmed-action"].fn(trace, Context(trace, cfg))
        if findings:
            return findings[0].message
        if not run.ran:
            return f"cannot be judged: {run.reason}"
        return None
    if kind == "valid-arguments":
        tool = str(a.value or "")
        schemas = _case_schemas(case)
        bad = []
        for c in calls:
            if c.name != tool or c.arguments is None:
                continue
            schema = schemas.get(tool) if schemas else None
            if schema is None:
                defs = tool_definitions(c.defined_by)
                schema = defs.get(tool) if defs else None
            bad.extend(_argument_problems(c.arguments, schema))
        return None if not bad else "; ".join(bad[:3])
    return f"cannot be judged: unknown assertion type {kind!r}"


def score_trace(case: EvalCase, stored: StoredTrace, *, config: Config | None = None) -> tuple[bool, list[str]]:
    """Whether a trace passes every assertion of the case, and the failed ones as "description: why"."""
    calls = tool_calls(stored.trace)
    failed = []
    for a in case.assertions:
        why = check_assertion(a, case, stored, config=config, calls=calls)
        if why is not None:
            failed.append(f"{a.description}: {why}")
    if not case.assertions:
        failed.append("the case has no assertions: nothing to judge")
    return not failed, failed


# ------------------------------------------------------------------------------------------------ the run


def _score_case(case: EvalCase, source: TraceSource, label: str, config: Config | None) -> CaseResult:
    result = CaseResult(case_id=case.id, group=case.group, name=case.name, version=label, status=NOT_RUN,
                        trace_id=None)
    ids = source.matching(case)
    if not ids:
        result.reason = (f"no trace of {label} was asked the case's request" if source.count
                         else f"no traces of {label}")
        return result
    result.traces = ids
    first_failed: str | None = None
    for tid in ids:
        stored = source.get(tid)
        ok, failed = score_trace(case, stored, config=config)
        if not ok:
            first_failed = first_failed or tid
            result.failed.extend(f"{tid}: {f}" if len(ids) > 1 else f for f in failed)
            result.failed_by_trace[tid] = failed
            result.answers[tid] = final_answer(stored.trace)
    result.status = FAIL if first_failed else PASS
    result.trace_id = first_failed or ids[0]
    return result


def _rate(results: list[CaseResult]) -> Rate:
    return Rate(passed=sum(r.status == PASS for r in results), run=sum(r.status != NOT_RUN for r in results),
                not_run=sum(r.status == NOT_RUN for r in results))


def _groups(cases: list[EvalCase], results: list[CaseResult], candidate: str, baseline: str | None,
            config: Config) -> list[GroupResult]:
    settings = config.evals
    names = list(dict.fromkeys([c.group for c in cases]))
    names += [g for g in settings.required if g not in names]  # a required group with no case still counts
    required = set(settings.required) if settings.required else set(names)
    out = []
    for name in names:
        cand = _rate([r for r in results if r.group == name and r.version == candidate])
        base = _rate([r for r in results if r.group == name and r.version == baseline]) if baseline else None
        gate = settings.gate_for(name)
        n = sum(c.group == name for c in cases)
        rate = cand.rate
        if n == 0:
            passed, note = False, "no cases"
        elif rate is None:
            passed, note = False, "not run: no trace matched any case"
        else:
            passed = rate >= gate
            notes = []
            if cand.not_run:
                notes.append(f"{cand.not_run} not run")
            if base is not None and base.rate is not None and rate < base.rate:
                notes.append("worse than the baseline")
            note = ", ".join(notes)
        out.append(GroupResult(group=name, cases=n, gate=gate, candidate=cand, baseline=base, passed=passed,
                               note=note, required=name in required))
    return out


def iter_result_rows(report: EvalReport, cases: list[EvalCase]) -> Iterator[tuple[str, EvalResultRow]]:
    """(version spec, row) for each result, as the store records them."""
    by_id = {c.id: c for c in cases}
    for r in report.results:
        if r.version is None:
            continue
        spec = VersionSpec.parse(r.version)
        case = by_id.get(r.case_id)
        prompt = spec.name if spec.named else (case.source_trace.get("prompt") if case else None)
        yield r.version, EvalResultRow(
            case_id=r.case_id, group=r.group, prompt_name=prompt, prompt_version=spec.version, trace_id=r.trace_id,
            status=r.status, data={k: v for k, v in (("failed", r.failed), ("reason", r.reason),
                                                     ("traces", r.traces), ("replay", report.traces_path)) if v})


def run_evals(store: Store, candidate: str | None, baseline: str | None = None, *, config: Config | None = None,
              traces_path: Path | None = None, cases: list[EvalCase] | None = None,
              record: bool = True) -> EvalReport:
    """Score every case against the candidate's traces (and the baseline's), per group against its gate.

    The candidate's traces are the stored traces of that prompt version, or with `traces_path` the traces in that
    file (of that version when one is given: a replay run). A case runs against the traces asked its request;
    with several, it passes only if every one passes. `record` saves each result in the store."""
    config = config or Config()
    pricer = store.pricer if store is not None else default_pricer()
    cases = store.list_cases() if cases is None else cases
    spec = VersionSpec.parse(candidate) if candidate is not None else None
    problems: list[str] = []
    source: TraceSource
    if traces_path is not None:
        files = FileTraces(Path(traces_path), spec, config, pricer)
        problems = files.problems
        source = files
        label = candidate if candidate is not None else str(traces_path)
    else:
        if spec is None:
            raise ValueError("a candidate version is needed unless the traces come from a file")
        source = StoreTraces(store, spec, config, pricer)
        label = spec.text
    cases = in_scope(cases, spec, source)
    results = [_score_case(c, source, label, config) for c in cases]
    if baseline is not None:
        base_source = StoreTraces(store, VersionSpec.parse(baseline), config, pricer)
        results += [_score_case(c, base_source, baseline, config) for c in cases]
    report = EvalReport(candidate=label, baseline=baseline, groups=_groups(cases, results, label, baseline, config),
                        results=results, traces_path=str(traces_path) if traces_path is not None else None,
                        problems=problems)
    if record and cases:
        _record(store, report, cases, replayed_without_version=traces_path is not None and candidate is None)
    return report


def in_scope(cases: list[EvalCase], spec: VersionSpec | None, source: TraceSource) -> list[EvalCase]:
    """The cases that belong to the candidate's prompt: a case made from another prompt's trace is out of scope,
    neither run nor "not run". The prompt is the one the candidate names, else the one its traces have; a case or
    a candidate without a prompt name keeps every case."""
    if spec is not None and spec.named:
        prompts = {spec.name}
    elif source.count:
        prompts = source.prompts
    else:
        return cases  # no trace to tell the prompt by: every case is "not run", and says why
    if None in prompts:
        return cases
    return [c for c in cases if c.source_trace.get("prompt") is None or c.source_trace.get("prompt") in prompts]


def _record(store: Store, report: EvalReport, cases: list[EvalCase], *, replayed_without_version: bool) -> None:
    ran_at = format_time(datetime.now(tz=UTC)) or ""
    run_id = "run_" + uuid.uuid4().hex[:12]
    per_version: dict[str, list[EvalResultRow]] = {}
    for version, row in iter_result_rows(report, cases):
        if replayed_without_version and version == report.candidate:
            continue  # a replay of no named version has no version to attach its results to
        per_version.setdefault(version, []).append(row)
    # One run ID per version scored: the store keeps one row per case per run.
    for i, (_version, rows) in enumerate(per_version.items()):
        store.save_eval_results(f"{run_id}.{i}", ran_at, rows)
    report.run_id = run_id
