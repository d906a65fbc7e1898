"""The release gate (store.gate and `loupe gate`): each check's pass, fail, warning and unknown, and the exit code."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from store.config import ConfigError, parse_config
from store.db import Store
from store.eval_run import EvalReport, GroupResult, Rate
from store.evals import promote
from store.gate import run_gate
from store.models import Trace
from store.versions import VersionKey
from tests.conftest import make_trace
from tests.test_versions import store_with, trace
from tui import cli

runner = CliRunner()
V1, V2 = VersionKey("support_agent", "v1"), VersionKey("support_agent", "v2")
HONEST = ("I'm sorry, I couldn't process the refund: the request was refused. Would you like me to open a support "
          "ticket so our billing team can look at it?")


def invoke(*args: str) -> Any:
    return runner.invoke(cli.app, list(args))


@pytest.fixture(autouse=True)
def _here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # evals/ and loupe.toml are looked up in the working directory: the repo's own must not leak in.
    monkeypatch.chdir(tmp_path)


def no_evals(store: Store, candidate: str, baseline: str | None, **kw: Any) -> EvalReport:
    return EvalReport(candidate=candidate, baseline=baseline, groups=[], results=[])


def releases(tmp_path: Path, *, base: dict[str, Any], cand: dict[str, Any], n: int = 10) -> Store:
    """n traces of v1 (first seen on the 3rd) and of v2 (the 5th), each made with `trace(**base)` / `trace(**cand)`."""
    traces = [trace(i, "v1", day=3, minute=i, **base) for i in range(n)]
    traces += [trace(100 + i, "v2", day=5, minute=i, **cand) for i in range(n)]
    return store_with(tmp_path / "g.db", traces)


def checks(report: Any) -> dict[str, tuple[str, str]]:
    return {c.check: (c.status, c.summary) for c in report.checks}


# ---------------------------------------------------------------------------------------------- each check


@pytest.mark.parametrize(("cand_cost", "status"), [(0.0119, "pass"), (0.012, "pass"), (0.0121, "fail")])
def test_cost_within_twenty_percent_of_the_baseline(tmp_path: Path, cand_cost: float, status: str) -> None:
    s = releases(tmp_path, base={"cost": 0.01}, cand={"cost": cand_cost})
    report = run_gate(s, V2, run_evals=no_evals)
    got, summary = checks(report)["cost per trace"]
    assert got == status, summary
    assert summary.startswith(f"mean ${cand_cost:.4f} vs baseline")
    assert "vs baseline $0.0100" in summary and "at most $0.0120 (+20%)" in summary
    assert report.passed is (status == "pass")  # evals only warn: no eval cases


def test_an_absolute_cost_limit_wins_over_the_baseline(tmp_path: Path) -> None:
    s = releases(tmp_path, base={"cost": 0.001}, cand={"cost": 0.01})
    cfg = parse_config({"gate": {"cost_per_trace": 0.02}})
    status, summary = checks(run_gate(s, V2, config=cfg, run_evals=no_evals))["cost per trace"]
    assert status == "pass" and "limit $0.0200 (gate.cost_per_trace)" in summary
    cfg = parse_config({"gate": {"cost_per_trace": 0.005}})
    assert checks(run_gate(s, V2, config=cfg, run_evals=no_evals))["cost per trace"][0] == "fail"


def test_an_unknown_cost_is_not_a_pass(tmp_path: Path) -> None:
    s = releases(tmp_path, base={"cost": 0.01}, cand={"cost": None})
    report = run_gate(s, V2, run_evals=no_evals)
    status, summary = checks(report)["cost per trace"]
    assert status == "unknown" and summary.startswith("unknown: no trace of support_agent@v2 has a known cost")
    assert not report.passed
    # Partly unknown: judged on the known ones, and said so.
    traces = [trace(200 + i, "v2", day=6, minute=i, cost=0.01) for i in range(3)]
    s.insert_traces([Trace.model_validate(t) for t in traces])
    status, summary = checks(run_gate(s, V2, run_evals=no_evals))["cost per trace"]
    assert status == "pass" and "10 of 13 traces with unknown cost left out" in summary


@pytest.mark.parametrize(("seconds", "status"), [(2.4, "pass"), (2.5, "fail")])
def test_p95_latency_within_twenty_percent(tmp_path: Path, seconds: float, status: str) -> None:
    s = releases(tmp_path, base={"seconds": 2.0}, cand={"seconds": seconds})
    got, summary = checks(run_gate(s, V2, run_evals=no_evals))["p95 latency"]
    assert got == status, summary
    assert "vs baseline 2.00 s" in summary and "at most 2.40 s (+20%)" in summary
    cfg = parse_config({"gate": {"p95_latency_seconds": 3}})
    got, summary = checks(run_gate(s, V2, config=cfg, run_evals=no_evals))["p95 latency"]
    assert got == "pass" and "limit 3.00 s (gate.p95_latency_seconds)" in summary


def test_error_findings_no_more_often_than_the_baseline(tmp_path: Path) -> None:
    # Tool errors made error-severity by the configuration: the findings the check counts.
    severe = parse_config({"rules": {"tool-error": {"severity": "error"}}})
    traces = [trace(i, "v1", day=3, minute=i, tools=1, tool_error=i == 0) for i in range(11)]
    traces += [trace(100 + i, "v2", day=5, minute=i, tools=1, tool_error=i < 2) for i in range(10)]
    s = store_with(tmp_path / "g.db", traces, rules_config=severe)
    status, summary = checks(run_gate(s, V2, run_evals=no_evals))["error findings"]
    assert status == "fail", summary
    assert summary == "2/10 traces (20.0%) vs baseline 1/11 (9.1%); at most 9.1% allowed (+0 points)"
    cfg = parse_config({"gate": {"max_error_rate_increase": 0.15}})
    assert checks(run_gate(s, V2, config=cfg, run_evals=no_evals))["error findings"][0] == "pass"


def test_without_a_baseline_the_comparisons_only_warn(tmp_path: Path) -> None:
    s = store_with(tmp_path / "g.db", [trace(i, "v1", minute=i) for i in range(3)])
    report = run_gate(s, V1, run_evals=no_evals)
    assert report.baseline is None and report.baseline_source is None
    assert "no baseline: no version of support_agent was first seen before support_agent@v1" == report.baseline_note
    assert {c: st for c, (st, _) in checks(report).items()} == {
        "evals": "warn", "error findings": "warn", "cost per trace": "warn", "p95 latency": "warn"}
    assert report.passed  # warnings do not fail the gate


def test_eval_groups_each_get_a_line(tmp_path: Path) -> None:
    s = releases(tmp_path, base={}, cand={})

    def evals(store: Store, candidate: str, baseline: str | None, **kw: Any) -> EvalReport:
        assert (candidate, baseline, kw["record"]) == ("support_agent@v2", "support_agent@v1", False)
        return EvalReport(candidate, baseline, groups=[
            GroupResult("refunds", 20, 0.9, Rate(18, 20), Rate(17, 20), True, ""),
            GroupResult("tone", 10, 0.9, Rate(8, 9, 1), None, False, "1 not run"),
            GroupResult("extra", 5, 0.9, Rate(1, 5), None, False, "", required=False),
            GroupResult("escalation", 0, 0.95, Rate(), None, False, "no cases"),
        ], results=[])

    report = run_gate(s, V2, record=False, run_evals=evals)
    got = checks(report)
    assert got["evals: refunds"] == ("pass", "18/20 passed (90.0%), gate 90%; baseline 17/20 (85.0%)")
    assert got["evals: tone"] == ("fail", "8/9 passed (88.8%), gate 90%; 1 not run")
    assert got["evals: extra"][0] == "warn"  # not a required group
    assert got["evals: escalation"] == ("fail", "no cases, and the group is required (evals.required), gate 95%")
    assert not report.passed


# ---------------------------------------------------------------------------------------------- loupe gate


@pytest.fixture
def db(tmp_path: Path, seed: dict[str, Any]) -> str:
    """v6: an honest answer to the seed's request and a small trace (first seen on Jan 1); v7: the seed, which claims
    the refund that failed, promoted into ./evals."""
    honest = copy.deepcopy(seed)
    honest["id"] = "trc_honest"
    honest["prompt"] = {"name": "support_agent", "version": "v6"}
    honest["output"] = honest["steps"][3]["output"]["content"] = HONEST
    path = tmp_path / "e.db"
    with Store(path) as s:
        s.insert_traces([Trace.model_validate(t) for t in (seed, honest, make_trace(1, "v6"))])
        promote(s, "trc_7J4k9", tmp_path / "evals")
    return str(path)


def test_gate_fails_a_release_that_claims_a_failed_refund(db: str) -> None:
    result = invoke("gate", "--candidate", "v7", "--db", db)
    assert result.exit_code == 1, result.output
    lines = [" ".join(line.split()) for line in result.output.splitlines()]
    assert lines[0] == "Release gate for support_agent@v7 (1 trace)"
    assert lines[1] == ("baseline support_agent@v6: the version of support_agent first seen before the candidate "
                        "(--baseline chooses another)")
    assert lines[2] == ("FAIL evals: Tool failure handling 0/1 passed (0.0%), gate 90%; baseline 1/1 (100.0%); worse "
                        "than the baseline")
    assert lines[3] == "FAIL error findings 1/1 traces (100.0%) vs baseline 0/2 (0.0%); at most 0.0% allowed (+0 points)"
    assert lines[4].startswith("FAIL cost per trace mean $0.00271 vs baseline $0.00136 (+98.5%); at most $0.00164")
    assert lines[5] == "PASS p95 latency 3.72 s vs baseline 3.72 s (+0.0%); at most 4.46 s (+20%)"
    assert lines[6] == "FAIL: 3 checks failed."


def test_gate_passes_a_release_no_worse_than_its_baseline(db: str) -> None:
    result = invoke("gate", "--candidate", "support_agent@v6", "--baseline", "v7", "--db", db)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == "baseline support_agent@v7"
    assert "PASS evals: Tool failure handling 1/1 passed (100.0%)" in " ".join(result.output.split())
    assert result.output.splitlines()[-1] == "PASS: every check passed."


def test_gate_json_for_ci(db: str) -> None:
    result = invoke("gate", "--candidate", "v7", "--db", db, "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.output)
    assert set(doc) == {"candidate", "baseline", "baseline_source", "baseline_note", "passed", "checks", "evals"}
    assert (doc["candidate"], doc["baseline"], doc["baseline_source"], doc["passed"]) == (
        "support_agent@v7", "support_agent@v6", "previous", False)
    assert [c["check"] for c in doc["checks"]] == ["evals: Tool failure handling", "error findings", "cost per trace",
                                                   "p95 latency"]
    assert {c["status"] for c in doc["checks"]} <= {"pass", "fail", "warn", "unknown"}
    assert doc["evals"]["groups"][0]["candidate"]["passed"] == 0
    assert result.output.isascii()


def test_gate_usage_and_input_errors(db: str, tmp_path: Path) -> None:
    Store(db).insert_traces([Trace.model_validate(make_trace(5, "v6", prompt={"name": "triage", "version": "v6"}))])
    ambiguous = invoke("gate", "--candidate", "v6", "--db", db)
    assert ambiguous.exit_code == 2 and "'support_agent@v6', 'triage@v6'" in ambiguous.output
    assert invoke("gate", "--candidate", "v6", "--prompt", "triage", "--db", db, "--no-record").exit_code in (0, 1)
    assert invoke("gate", "--candidate", "v9", "--db", db).exit_code == 2
    same = invoke("gate", "--candidate", "v7", "--baseline", "support_agent@v7", "--db", db)
    assert same.exit_code == 2 and "the candidate itself" in same.output
    assert invoke("gate", "--db", db).exit_code == 2  # --candidate is required
    assert invoke("gate", "--candidate", "v7", "--db", str(tmp_path / "none.db")).exit_code == 3
    (tmp_path / "loupe.toml").write_text("[gate]\nmax_cost_increse = 0.1\n")
    bad = invoke("gate", "--candidate", "v7", "--db", db)
    assert bad.exit_code == 3 and "gate.max_cost_increse: not a known setting" in bad.output


def test_gate_records_eval_results_unless_told_not_to(db: str) -> None:
    assert invoke("gate", "--candidate", "v7", "--db", db, "--no-record").exit_code == 1
    with Store(db) as s:
        assert s.last_eval_results() == []
    assert invoke("gate", "--candidate", "v7", "--db", db).exit_code == 1
    with Store(db) as s:
        assert {(r.prompt_version, r.status) for r in s.last_eval_results()} == {("v7", "fail"), ("v6", "pass")}


# ---------------------------------------------------------------------------------------------- what a tester found


def test_cases_of_another_prompt_are_out_of_scope_not_failed(db: str) -> None:
    """A case made from a support_agent trace says nothing about prompt solo: no eval case is a warning."""
    solo = make_trace(7, "v1", id="trc_solo", prompt={"name": "solo", "version": "v1"})
    Store(db).insert_traces([Trace.model_validate(solo)])
    result = invoke("gate", "--candidate", "solo@v1", "--db", db)
    assert result.exit_code == 0, result.output
    assert "evals: Tool failure handling" not in result.output and "0/0" not in result.output
    lines = [" ".join(x.split()) for x in result.output.splitlines()]
    assert lines[2].startswith("WARN evals no eval cases")
    doc = json.loads(invoke("gate", "--candidate", "solo@v1", "--db", db, "--json").output)
    [evals] = [c for c in doc["checks"] if c["check"] == "evals"]
    # The eval run's verdict in the JSON agrees with its checklist line.
    assert (evals["status"], doc["evals"]["status"], doc["evals"]["passed"]) == ("warn", "warn", True)
    # `loupe evals run` scopes the cases the same way; the candidate's own prompt still counts its cases.
    from store.eval_run import read_cases, run_evals

    with Store(db) as s:
        cases = read_cases(Path("evals"))
        assert len(cases) == 1
        assert run_evals(s, "solo@v1", config=None, cases=cases, record=False).groups == []
        assert [g.candidate.run for g in run_evals(s, "support_agent@v7", cases=cases, record=False).groups] == [1]
        assert [g.candidate.run for g in run_evals(s, "v7", cases=cases, record=False).groups] == [1]


def test_a_failing_eval_line_makes_the_json_evals_fail_too(db: str) -> None:
    doc = json.loads(invoke("gate", "--candidate", "v7", "--db", db, "--json", "--no-record").output)
    assert (doc["evals"]["status"], doc["evals"]["passed"], doc["evals"]["run_passed"]) == ("fail", False, False)


def test_a_partly_unknown_cost_passes_out_loud(tmp_path: Path) -> None:
    s = releases(tmp_path, base={"cost": 0.01}, cand={"cost": 0.01}, n=2)
    s.insert_traces([Trace.model_validate(trace(300, "v2", day=5, minute=30, cost=None))])
    report = run_gate(s, V2, run_evals=no_evals)
    [cost] = [c for c in report.checks if c.check == "cost per trace"]
    assert (cost.status, cost.partial) == ("pass", "on 2 of 3 traces: 1 unknown")
    assert cost.to_json()["partial"] == "on 2 of 3 traces: 1 unknown"
    s.close()
    result = invoke("gate", "--candidate", "v2", "--db", str(tmp_path / "g.db"))
    assert result.exit_code == 0, result.output
    lines = [" ".join(x.split()) for x in result.output.splitlines()]
    assert next(x for x in lines if "cost per trace" in x).startswith(
        "PASS cost per trace (on 2 of 3 traces: 1 unknown) mean $0.0100")
    assert lines[-1] == "PASS: every check passed (1 warning; cost per trace on 2 of 3 traces: 1 unknown)."


def test_max_error_rate_increase_is_a_rate_at_most_one() -> None:
    assert parse_config({"gate": {"max_error_rate_increase": 1}}).gate.max_error_rate_increase == 1
    with pytest.raises(ConfigError, match="max_error_rate_increase: Input should be less than or equal to 1"):
        parse_config({"gate": {"max_error_rate_increase": 5}})


def test_huge_latencies_read_in_hours_and_days() -> None:
    from store.gate import duration, seconds

    assert seconds(3720.0) == "3.72 s"
    assert seconds(33_955_200_000.0) == "393.0 d"  # was "33955200.00 s"
    assert seconds(9_000_000.0) == "2.5 h" and seconds(600_000.0) == "10.0 m"
    assert duration(565_920 * 60_000.0) == "393.0d" and duration(850.0) == "850ms" and duration(None) == "?"
