"""The rules over a store: re-run them with the current settings, and sum up findings for `loupe check`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .db import Store, TraceFilter
from .models import SEVERITY_RANK, Finding, Severity
from .rules import DEFAULT_ACTIONS, RULES, using_config

NO_VERSION = "(no version)"


@dataclass
class RerunCounts:
    traces: int = 0
    findings_before: int = 0
    findings_after: int = 0
    failed: list[tuple[str, str | None, str]] = field(default_factory=list)


def _ids(store: Store, flt: TraceFilter | None) -> list[str]:
    # Collected first: re-writing a trace changes its finding count, which --violations and --rule filter on.
    return [row.id for row in store.iter_traces(flt)]


def rerun(store: Store, flt: TraceFilter | None, config: Config, *, batch: int = 200,
          on_batch: Callable[[int], None] | None = None) -> RerunCounts:
    """Run the rules again, with `config`, over the traces that match and store the new findings. Each trace is
    written again whole (costs and totals too): the store keeps no findings apart from their trace."""
    counts = RerunCounts()
    ids = _ids(store, flt)
    for start in range(0, len(ids), batch):
        traces = []
        for tid in ids[start:start + batch]:
            stored = store.get_trace(tid)
            counts.findings_before += len(stored.findings)
            traces.append(stored.trace)
        with using_config(config):
            written = store.insert_traces(traces)
        counts.traces += written.traces
        counts.findings_after += written.findings
        counts.failed.extend(written.failed)
        if on_batch is not None:
            on_batch(written.traces)
    return counts


@dataclass
class TraceFinding:
    trace_id: str
    prompt: str | None
    version: str | None
    finding: Finding

    def to_json(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "prompt": {"name": self.prompt, "version": self.version},
                **self.finding.model_dump(mode="json")}


@dataclass
class CheckReport:
    """What `loupe check` says: findings by rule and prompt version, the rules that could not run, and whether
    the gate fails."""

    fail_on: Severity
    traces: int = 0
    traces_with_findings: int = 0
    findings: list[TraceFinding] = field(default_factory=list)
    not_run: dict[str, Counter[str]] = field(default_factory=dict)  # rule -> reason -> traces

    @property
    def failing(self) -> list[TraceFinding]:
        floor = SEVERITY_RANK[self.fail_on]
        return [f for f in self.findings if SEVERITY_RANK.get(f.finding.severity, 0) >= floor]

    @property
    def failed(self) -> bool:
        return bool(self.failing)

    def versions(self) -> list[str]:
        return sorted({version_label(f.prompt, f.version) for f in self.findings})

    def rows(self) -> list[tuple[str, str, int, int, dict[str, int]]]:
        """(rule, severity, findings, traces, findings per prompt version), worst severity first, then by rule."""
        groups: dict[tuple[str, str], list[TraceFinding]] = {}
        for f in self.findings:
            groups.setdefault((f.finding.rule_id, f.finding.severity), []).append(f)
        order = {rid: i for i, rid in enumerate(RULES)}
        out = []
        for (rule, severity), items in sorted(
            groups.items(), key=lambda kv: (-SEVERITY_RANK.get(kv[0][1], 0), order.get(kv[0][0], len(order)), kv[0][0])
        ):
            per: Counter[str] = Counter(version_label(f.prompt, f.version) for f in items)
            out.append((rule, severity, len(items), len({f.trace_id for f in items}), dict(per)))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "traces": self.traces,
            "traces_with_findings": self.traces_with_findings,
            "fail_on": self.fail_on,
            "failed": self.failed,
            "summary": [{"rule_id": r, "severity": s, "findings": n, "traces": t, "by_version": per}
                        for r, s, n, t, per in self.rows()],
            "not_run": [{"rule_id": r, "traces": sum(c.values()), "reasons": dict(c)}
                        for r, c in sorted(self.not_run.items())],
            "findings": [f.to_json() for f in self.findings],
        }


def version_label(prompt: str | None, version: str | None) -> str:
    return f"{prompt or '(no prompt)'}@{version or NO_VERSION}"


def check(store: Store, flt: TraceFilter | None, fail_on: Severity) -> CheckReport:
    """The stored findings and rule runs of the traces that match."""
    report = CheckReport(fail_on=fail_on)
    for stored in _stored(store, flt):
        report.traces += 1
        trace = stored.trace
        prompt = trace.prompt.name if trace.prompt else None
        version = trace.prompt.version if trace.prompt else None
        if stored.findings:
            report.traces_with_findings += 1
        report.findings.extend(TraceFinding(trace.id, prompt, version, f) for f in stored.findings)
        for run in stored.rule_runs:
            if not run.ran:
                report.not_run.setdefault(run.rule_id, Counter())[run.reason or "no reason given"] += 1
    return report


def _stored(store: Store, flt: TraceFilter | None) -> Iterator[Any]:
    for tid in _ids(store, flt):
        yield store.get_trace(tid)


def rule_settings(rule_id: str, config: Config) -> list[str]:
    """The settings of one rule, in words, for `loupe rules`."""
    rules = config.rules
    out: list[str] = []
    if rule_id in ("success-after-tool-error", "tool-error"):
        failing = {name: t.failure_when for name, t in sorted(config.tools.items()) if t.failure_when}
        out += [f"{name} fails when its result has {' or '.join(_condition(c) for c in conds)}"
                for name, conds in failing.items()]
    elif rule_id == "unbacked-action-claim":
        unbacked = rules.unbacked_action_claim
        actions = unbacked.actions if unbacked.actions is not None else list(DEFAULT_ACTIONS)
        out.append("actions: " + ", ".join(actions) + ("" if unbacked.actions is not None else " (built in)"))
        out += [f"{action} is done by: {', '.join(tools)}" for action, tools in sorted(unbacked.backed_by.items())]
    elif rule_id == "retry-loop":
        out.append(f"threshold: {rules.retry_loop.threshold} calls")
    elif rule_id == "unconfirmed-action":
        tools = config.confirmation_tools()
        out.append("needs confirmation: " + ", ".join(tools) if tools else
                   "not configured: no tool has needs_confirmation = true, so the rule does not run")
    elif rule_id == "forbidden-promise":
        prompts = rules.forbidden_promise.prompts
        if not prompts:
            out.append("not configured: no forbidden phrases, so the rule does not run")
        for key, p in sorted(prompts.items()):
            items = [repr(x) for x in p.phrases] + [f"/{x}/" for x in p.patterns]
            out.append(f"{key}: {', '.join(items) or '(none)'}")
    elif rule_id == "budget-exceeded":
        budgets = rules.budget_exceeded.budgets
        if not budgets:
            out.append("not configured: no budgets, so the rule does not run")
        for key, b in sorted(budgets.items()):
            limits = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in b.model_dump(exclude_none=True).items())
            out.append(f"{key}: {limits or '(no limits)'}")
    elif rule_id == "prompt-injection":
        injection = rules.prompt_injection
        out.append("built-in patterns: " + ("on" if injection.default_patterns else "off"))
        out += [f"pattern /{p}/" for p in injection.patterns]
    elif rule_id in ("malformed-tool-arguments", "unknown-tool"):
        out.append("uses the tool definitions recorded in the trace" if rule_id == "unknown-tool"
                   else "JSON Schema checks need the tool definitions recorded in the trace")
    return out


def _condition(cond: dict[str, Any]) -> str:
    return " and ".join(f"{k} = {' or '.join(map(repr, v)) if isinstance(v, list) else repr(v)}"
                        for k, v in cond.items())
