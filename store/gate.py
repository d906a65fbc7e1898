"""The release gate: a candidate prompt version checked against its baseline (evals, error findings, cost, latency)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .config import Config
from .db import Store
from .versions import VersionKey, VersionStats, previous_version, round_ms, version_stats

if TYPE_CHECKING:
    from .eval_run import EvalReport
    from .models import EvalCase

Status = Literal["pass", "fail", "warn", "unknown"]
# "unknown" fails the gate like "fail": a number loupe does not know is not a pass. "warn" does not.
FAILING: tuple[Status, ...] = ("fail", "unknown")

EvalRunner = Callable[..., "EvalReport"]


@dataclass
class GateCheck:
    """One line of the checklist: what was checked, how it went, and the numbers behind it."""

    check: str  # "evals: refunds", "error findings", "cost per trace", "p95 latency"
    status: Status
    summary: str  # the numbers, in words
    data: dict[str, Any] = field(default_factory=dict)
    # Set when the number covers only some traces ("on 2 of 3 traces: 1 unknown"): a pass on what is known,
    # which the checklist and its last line say out loud.
    partial: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "status": self.status, "summary": self.summary, "partial": self.partial,
                "data": self.data}


@dataclass
class GateReport:
    candidate: VersionStats
    baseline: VersionStats | None
    baseline_source: Literal["given", "previous"] | None  # "previous": the version first seen before the candidate
    checks: list[GateCheck]
    evals: EvalReport | None = None

    @property
    def passed(self) -> bool:
        return not any(c.status in FAILING for c in self.checks)

    @property
    def baseline_note(self) -> str:
        prompt = self.candidate.key.prompt or "(no prompt)"
        if self.baseline is None:
            return f"no baseline: no version of {prompt} was first seen before {self.candidate.key.label}"
        if self.baseline_source == "previous":
            return (f"baseline {self.baseline.key.label}: the version of {prompt} first seen before the candidate "
                    "(--baseline chooses another)")
        return f"baseline {self.baseline.key.label}"

    def to_json(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.key.label,
            "baseline": None if self.baseline is None else self.baseline.key.label,
            "baseline_source": self.baseline_source, "baseline_note": self.baseline_note,
            "passed": self.passed, "checks": [c.to_json() for c in self.checks],
            "evals": None if self.evals is None else self._evals_json(self.evals),
        }

    def _evals_json(self, evals: EvalReport) -> dict[str, Any]:
        """The eval run as the gate judged it: `passed` and `status` agree with the eval lines of the checklist (no
        eval case at all is a warning there, not a failure), while `run_passed` keeps the run's own verdict."""
        lines = [c for c in self.checks if c.check == "evals" or c.check.startswith("evals: ")]
        status: Status = next((s for s in ("fail", "unknown", "warn") if any(c.status == s for c in lines)), "pass")
        return {**evals.to_json(), "passed": status not in FAILING, "status": status, "run_passed": evals.passed}


def pct(rate: float | None, *, down: bool = False) -> str:
    """A rate as a percentage with one decimal; `down` rounds down, next to a gate (89.96% must not read as the
    90% it misses). "?" when unknown."""
    if rate is None:
        return "?"
    return f"{math.floor(rate * 1000 + 1e-9) / 10:.1f}%" if down else f"{rate * 100:.1f}%"


def usd(value: float | None) -> str:
    """USD with three significant digits below a dollar ($0.00248), cents above; "?" when unknown."""
    if value is None:
        return "?"
    if value == 0:
        return "$0"
    if abs(value) < 1:
        return f"${value:.{min(-math.floor(math.log10(abs(value))) + 2, 12)}f}"
    return f"${value:,.2f}"


def duration(ms: float | None, sep: str = "") -> str:
    """A latency from milliseconds to days, in the unit that keeps it short: 850ms, 3.72s, 9.4m, 2.5h, 393.0d
    (`sep` goes between number and unit). "?" when unknown."""
    if ms is None:
        return "?"
    for limit, div, unit, digits in ((1_000, 1, "ms", 0), (60_000, 1_000, "s", 2), (3_600_000, 60_000, "m", 1),
                                     (48 * 3_600_000, 3_600_000, "h", 1)):
        if abs(ms) < limit:
            return f"{ms / div:,.{digits}f}{sep}{unit}"
    return f"{ms / 86_400_000:,.1f}{sep}d"


def seconds(ms: float | None) -> str:
    """The gate's latencies: seconds with two decimals up to a minute, then minutes, hours or days."""
    if ms is None:
        return "?"
    return f"{ms / 1000:.2f} s" if abs(ms) < 60_000 else duration(ms, " ")


def run_gate(store: Store, candidate: VersionKey, baseline: VersionKey | None = None, *, config: Config | None = None,
             cases: list[EvalCase] | None = None, record: bool = True,
             run_evals: EvalRunner | None = None) -> GateReport:
    """Every check of the release gate for `candidate` against `baseline` (default: the version of the same prompt
    first seen before it). `cases` are the eval cases (default: the store's); `record` keeps the eval results."""
    config = config or Config()
    source: Literal["given", "previous"] | None = "given"
    if baseline is None:
        baseline = previous_version(store, candidate)
        source = "previous" if baseline is not None else None
    cand = version_stats(store, candidate)
    base = version_stats(store, baseline) if baseline is not None else None
    if run_evals is None:
        from .eval_run import run_evals as default_runner

        run_evals = default_runner
    # Exact references: a version holding "@" is not split again on the way.
    evals = run_evals(store, candidate.ref, None if baseline is None else baseline.ref, config=config,
                      cases=cases, record=record)
    checks = [*eval_checks(evals), error_check(cand, base, config), cost_check(cand, base, config),
              latency_check(cand, base, config)]
    return GateReport(cand, base, source, checks, evals)


def eval_checks(report: EvalReport) -> list[GateCheck]:
    """One line per eval group. With no eval cases at all the line is a warning, not a failure: the other checks
    still gate a release before the first case exists (a group named in evals.required with no case fails)."""
    if not report.groups:
        return [GateCheck("evals", "warn", "no eval cases (press e on a failing trace, or loupe promote, to make "
                          "one)", {"cases": 0})]
    out = []
    for g in report.groups:
        c = g.candidate
        parts = [f"{c.passed}/{c.run} passed ({pct(c.rate, down=True)}), gate {g.gate * 100:g}%"]
        if c.not_run:
            parts.append(f"{c.not_run} not run")
        if g.baseline is not None:
            parts.append(f"baseline {g.baseline.passed}/{g.baseline.run} ({pct(g.baseline.rate, down=True)})")
        if g.note and g.note not in parts:
            parts.append(g.note)
        if g.cases == 0:
            parts = [f"no cases, and the group is required (evals.required), gate {g.gate * 100:g}%"]
        status: Status = "pass" if g.passed else ("fail" if g.required else "warn")
        out.append(GateCheck(f"evals: {g.group}", status, "; ".join(parts), g.to_json()))
    return out


def error_check(cand: VersionStats, base: VersionStats | None, config: Config) -> GateCheck:
    """Traces with an error-severity finding: the candidate's rate at most the baseline's plus
    gate.max_error_rate_increase (rate points)."""
    allowed = config.gate.max_error_rate_increase
    c = cand.error_findings
    data: dict[str, Any] = {"candidate": c.to_json(), "max_increase": allowed}
    mine = f"{c.count:,}/{c.of:,} traces ({pct(c.rate)})"
    if base is None:
        return GateCheck("error findings", "warn", f"{mine}; no baseline to compare with", data)
    b = base.error_findings
    data["baseline"] = b.to_json()
    if c.rate is None or b.rate is None:
        return GateCheck("error findings", "unknown", f"{mine}; baseline {b.count:,}/{b.of:,}", data)
    limit = b.rate + allowed
    status: Status = "pass" if c.rate <= limit + 1e-12 else "fail"
    return GateCheck("error findings", status,
                     f"{mine} vs baseline {b.count:,}/{b.of:,} ({pct(b.rate)}); at most {pct(limit)} allowed "
                     f"(+{allowed * 100:g} points)", {**data, "limit": limit})


def _partial_note(known: int, unknown: int, what: str) -> str:
    return f"; {unknown:,} of {known + unknown:,} traces with unknown {what} left out" if unknown else ""


def _partial(known: int, unknown: int) -> str | None:
    return f"on {known:,} of {known + unknown:,} traces: {unknown:,} unknown" if unknown and known else None


def cost_check(cand: VersionStats, base: VersionStats | None, config: Config) -> GateCheck:
    """Mean cost per trace within gate.cost_per_trace when set, else within +gate.max_cost_increase of the
    baseline's. Traces with an unknown cost are left out of the mean (and said so); when no cost is known the
    check is "unknown", which fails the gate."""
    mean = cand.cost.mean.value
    note = _partial_note(cand.cost.known, cand.cost.unknown, "cost")
    data: dict[str, Any] = {"candidate": cand.cost.to_json()}
    if mean is None:
        return GateCheck("cost per trace", "unknown", f"unknown: no trace of {cand.key.label} has a known cost"
                         + note, data)
    check = _cost_check(cand, base, config, mean, note, data)
    check.partial = _partial(cand.cost.known, cand.cost.unknown)
    return check


def _cost_check(cand: VersionStats, base: VersionStats | None, config: Config, mean: float, note: str,
                data: dict[str, Any]) -> GateCheck:
    g = config.gate
    baseline = None if base is None else (
        base.cost.mean.value, base.cost.to_json(), _partial_note(base.cost.known, base.cost.unknown,
                                                                 "cost in the baseline"))
    return _against(_COST, mean, note, data, g.cost_per_trace, "gate.cost_per_trace", baseline,
                    g.max_cost_increase)


@dataclass(frozen=True)
class _Measure:
    """How a gate check against a limit names and shows its value."""

    name: str
    kind: str  # in "the baseline's ... is unknown"
    show: Callable[[float], str]
    lead: str  # before the value: "mean " for a mean
    from_zero: str  # the change when the baseline is zero
    limit_key: str
    limit_json: Callable[[float], Any]
    note_when_base_unknown: bool  # whether the candidate's partial note follows "the baseline's ... is unknown"


def _against(m: _Measure, value: float, note: str, data: dict[str, Any], fixed: float | None, setting: str,
             base: tuple[float | None, Any, str] | None, increase: float) -> GateCheck:
    """The rule the cost and latency checks share: within the fixed limit when the configuration sets one, else
    within +increase of the baseline's value; "warn" with neither, "unknown" when the baseline's is unknown.
    `base`: the baseline's value, its JSON and the note on its own unknown part."""
    if fixed is not None:
        status: Status = "pass" if value <= fixed else "fail"
        return GateCheck(m.name, status, f"{m.lead}{m.show(value)}, limit {m.show(fixed)} ({setting})" + note,
                         {**data, m.limit_key: m.limit_json(fixed)})
    if base is None:
        return GateCheck(m.name, "warn", f"{m.lead}{m.show(value)}; no baseline and no {setting} to compare with"
                         + note, data)
    bvalue, bjson, bnote = base
    data["baseline"] = bjson
    if bvalue is None:
        return GateCheck(m.name, "unknown", f"{m.lead}{m.show(value)}; the baseline's {m.kind} is unknown"
                         + (note if m.note_when_base_unknown else ""), data)
    limit = bvalue * (1 + increase)
    status = "pass" if value <= limit else "fail"
    change = f"{(value / bvalue - 1) * 100:+.1f}%" if bvalue else m.from_zero
    return GateCheck(m.name, status,
                     f"{m.lead}{m.show(value)} vs baseline {m.show(bvalue)} ({change}); at most {m.show(limit)} "
                     f"(+{increase * 100:g}%)" + note + bnote, {**data, m.limit_key: m.limit_json(limit)})


_COST = _Measure("cost per trace", "cost", usd, "mean ", "from $0", "limit", lambda v: v, True)
_LATENCY = _Measure("p95 latency", "latency", seconds, "", "from 0", "limit_ms", round_ms, False)


def latency_check(cand: VersionStats, base: VersionStats | None, config: Config) -> GateCheck:
    """p95 latency within gate.p95_latency_seconds when set, else within +gate.max_p95_latency_increase of the
    baseline's."""
    p95 = cand.latency.p95.value
    note = _partial_note(cand.latency.known, cand.latency.unknown, "latency")
    data: dict[str, Any] = {"candidate": cand.latency.to_json()}
    if p95 is None:
        return GateCheck("p95 latency", "unknown", f"unknown: no trace of {cand.key.label} has start and end times",
                         data)
    check = _latency_check(cand, base, config, p95, note, data)
    check.partial = _partial(cand.latency.known, cand.latency.unknown)
    return check


def _latency_check(cand: VersionStats, base: VersionStats | None, config: Config, p95: float, note: str,
                   data: dict[str, Any]) -> GateCheck:
    g = config.gate
    fixed = None if g.p95_latency_seconds is None else g.p95_latency_seconds * 1000
    baseline = None if base is None else (base.latency.p95.value, base.latency.to_json(), "")
    return _against(_LATENCY, p95, note, data, fixed, "gate.p95_latency_seconds", baseline,
                    g.max_p95_latency_increase)
