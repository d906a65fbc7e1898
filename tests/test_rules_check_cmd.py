"""`loupe check` and `loupe rules`, registered on a Typer app of the test's own and driven with CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sample_traces import generate
from store.db import Store
from store.importers import ingest_paths
from store.models import Trace
from store.rules import RULES
from tests.conftest import make_trace
from tui.check_cmd import register

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "loupe.example.toml"
SAMPLES = Path(generate.__file__).with_name("support_agent.jsonl")
runner = CliRunner()


def make_app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    register(app)
    return app


APP = make_app()


def invoke(*args: str) -> Any:
    return runner.invoke(APP, list(args))


def store_with(path: Path, *traces: dict[str, Any]) -> Path:
    with Store(path) as s:
        s.insert_traces([Trace.model_validate(t) for t in traces])
    return path


@pytest.fixture
def db(tmp_path: Path, seed: dict[str, Any]) -> Path:
    # The seed (errors and a warning) and two clean traces.
    return store_with(tmp_path / "c.db", seed, make_trace(1, "v6"), make_trace(2, "v6"))


@pytest.fixture(autouse=True)
def _no_config_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # loupe.toml is looked up in the working directory: the repo's own files must not leak in.
    monkeypatch.chdir(tmp_path)


def test_both_commands_are_registered() -> None:
    result = invoke("--help")
    assert result.exit_code == 0 and "check" in result.output and "rules" in result.output


def test_check_exits_1_on_errors_and_prints_the_summary(db: Path) -> None:
    result = invoke("check", "--db", str(db))
    assert result.exit_code == 1, result.output
    out = result.output
    assert "Checked 3 traces: 1 trace with findings, 3 findings." in out
    assert "support_agent@v7" in out and "success-after-tool-error" in out and "unbacked-action-claim" in out
    assert "not run: budget-exceeded on 3 traces (no budget configured for prompt support_agent)" in out
    assert "FAIL: 2 findings at or above error." in out


def test_fail_on_sets_the_gate(tmp_path: Path, seed: dict[str, Any]) -> None:
    seed["output"] = seed["steps"][3]["output"]["content"] = "I couldn't process the refund."
    db = store_with(tmp_path / "w.db", seed)  # only a warning left: the failed tool call
    assert invoke("check", "--db", str(db)).exit_code == 0
    assert invoke("check", "--db", str(db), "--fail-on", "warning").exit_code == 1
    assert invoke("check", "--db", str(db), "--fail-on", "info").exit_code == 1
    ok = invoke("check", "--db", str(db), "--prompt-version", "v6")
    assert ok.exit_code == 0 and "Checked 0 traces" in ok.output and "OK: no finding at or above error." in ok.output


def test_usage_and_input_errors(db: Path, tmp_path: Path) -> None:
    bad = invoke("check", "--db", str(db), "--fail-on", "fatal")
    assert bad.exit_code == 2 and "--fail-on must be error, warning or info" in bad.output
    assert invoke("check", "--db", str(db), "--status", "meh").exit_code == 2
    assert invoke("check", "--db", str(tmp_path / "none.db")).exit_code == 3
    (tmp_path / "junk.db").write_text("not sqlite at all, not at all")
    assert invoke("check", "--db", str(tmp_path / "junk.db")).exit_code == 3
    (tmp_path / "loupe.toml").write_text("[rules.budget-exceeded.budgets.support_agent]\ncost = 'cheap'\n")
    broken = invoke("check", "--db", str(db))
    assert broken.exit_code == 3
    assert "rules.budget-exceeded.budgets.support_agent.cost: Input should be a valid number" in broken.output
    assert invoke("rules").exit_code == 3
    assert invoke("check", "--db", str(db), "--config", str(tmp_path / "nope.toml")).exit_code == 3


def test_check_json(db: Path) -> None:
    result = invoke("check", "--db", str(db), "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["traces"] == 3 and data["traces_with_findings"] == 1 and data["failed"] is True
    assert data["fail_on"] == "error"
    rows = {r["rule_id"]: r for r in data["summary"]}
    assert rows["success-after-tool-error"] == {"rule_id": "success-after-tool-error", "severity": "error",
                                                "findings": 1, "traces": 1, "by_version": {"support_agent@v7": 1}}
    assert set(rows) == {"success-after-tool-error", "unbacked-action-claim", "tool-error"}
    [f] = [f for f in data["findings"] if f["rule_id"] == "success-after-tool-error"]
    assert f["trace_id"] == "trc_7J4k9" and f["evidence"] == ["s3", "s4"] and f["prompt"]["version"] == "v7"
    not_run = {r["rule_id"]: r for r in data["not_run"]}
    assert not_run["unconfirmed-action"]["traces"] == 3


def test_filters_choose_the_traces(db: Path) -> None:
    data = json.loads(invoke("check", "--db", str(db), "--json", "--rule", "tool-error").output)
    assert data["traces"] == 1
    data = json.loads(invoke("check", "--db", str(db), "--json", "--prompt-version", "v6").output)
    assert data["traces"] == 2 and data["findings"] == [] and data["failed"] is False


def test_rerun_applies_a_changed_configuration_to_the_stored_findings(db: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "strict.toml"
    cfg.write_text('[rules.tool-error]\nseverity = "error"\n[rules.success-after-tool-error]\nenabled = false\n'
                   '[rules.budget-exceeded.budgets.support_agent]\ninput_tokens = 1000\n')
    result = invoke("check", "--db", str(db), "--rerun", "--config", str(cfg), "--json")
    assert result.exit_code == 1
    rows = {(r["rule_id"], r["severity"]): r["findings"] for r in json.loads(result.stdout)["summary"]}
    assert rows == {("tool-error", "error"): 1, ("unbacked-action-claim", "error"): 1,
                    ("budget-exceeded", "warning"): 1}
    with Store(db) as s:  # stored, not only reported
        stored = s.get_trace("trc_7J4k9")
        assert sorted(f.rule_id for f in stored.findings) == ["budget-exceeded", "tool-error", "unbacked-action-claim"]
        assert any(r.rule_id == "success-after-tool-error" and not r.ran for r in stored.rule_runs)
    # Without --rerun, check reports what is stored.
    again = json.loads(invoke("check", "--db", str(db), "--json").stdout)
    assert {r["rule_id"] for r in again["summary"]} == {"tool-error", "unbacked-action-claim", "budget-exceeded"}


def test_rerun_with_violations_looks_at_the_new_findings(db: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text("[rules.budget-exceeded.budgets.support_agent]\ninput_tokens = 50\n")
    data = json.loads(invoke("check", "--db", str(db), "--rerun", "--config", str(cfg), "--violations",
                             "--json").stdout)
    assert data["traces"] == 3  # the clean traces are over this budget once re-run


def test_check_over_the_sample_store_matches_the_expected_findings(tmp_path: Path) -> None:
    with Store(tmp_path / "demo.db") as s:
        ingest_paths(s, [SAMPLES])
    result = invoke("check", "--db", str(tmp_path / "demo.db"), "--rerun", "--config", str(EXAMPLE), "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    got: dict[str, list[str]] = {}
    for f in data["findings"]:
        got.setdefault(f["trace_id"], []).append(f["rule_id"])
    raw = [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    expected = {t["id"]: t["metadata"]["expected_findings"] for t in raw if t["metadata"]["expected_findings"]}
    assert {k: sorted(v) for k, v in got.items()} == expected
    assert data["traces"] == len(raw)


def test_trace_text_in_the_table_is_inert(tmp_path: Path) -> None:
    evil = make_trace(5, "[bold]v9[/bold]\x1b[31m", steps=[
        {"id": "t", "type": "tool", "name": "x[/]", "status": "error"}])
    db = store_with(tmp_path / "e.db", evil)
    result = invoke("check", "--db", str(db), "--fail-on", "warning")
    assert result.exit_code == 1
    assert "[bold]v9[/bold]" in result.output and "\x1b" not in result.output
    data = invoke("check", "--db", str(db), "--json").stdout
    assert data.isascii() and "\\u001b" in data


def test_rules_lists_every_rule_with_its_settings(tmp_path: Path) -> None:
    plain = invoke("rules")
    assert plain.exit_code == 0, plain.output
    for rule_id in RULES:
        assert rule_id in plain.output
    assert "none found (the defaults)" in plain.output
    data = json.loads(invoke("rules", "--config", str(EXAMPLE), "--json").stdout)
    assert data["config"] == str(EXAMPLE)
    by_id = {r["rule_id"]: r for r in data["rules"]}
    assert list(by_id) == list(RULES)
    assert by_id["success-after-tool-error"]["default_severity"] == "error"
    assert by_id["unconfirmed-action"]["settings"] == ["needs confirmation: cancel_subscription"]
    assert "support_agent: input tokens 5000, output tokens 800, cost 0.03" in by_id["budget-exceeded"]["settings"]
    assert by_id["retry-loop"]["settings"] == ["threshold: 3 calls"]
    (tmp_path / "loupe.toml").write_text('[rules.usage-missing]\nseverity = "warning"\n[rules.retry-loop]\n'
                                         'enabled = false\n')
    here = json.loads(invoke("rules", "--json").stdout)
    rows = {r["rule_id"]: r for r in here["rules"]}
    assert rows["usage-missing"]["severity"] == "warning" and rows["usage-missing"]["default_severity"] == "info"
    assert rows["retry-loop"]["enabled"] is False
    shown = invoke("rules").output
    assert "(default info)" in shown and "disabled" in shown
