"""`loupe evals list|export|run`, driven through the loupe app with typer's CliRunner."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from store.db import Store
from store.evals import promote
from store.models import Trace
from tests.conftest import make_trace
from tui import cli

runner = CliRunner()
HONEST = ("I'm sorry, I couldn't process the refund: the request was refused. Would you like me to open a support "
          "ticket so our billing team can look at it?")
# What must never reach the terminal from a case or a trace: C0 controls but newline and tab, DEL, C1 controls.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def invoke(*args: str) -> Any:
    return runner.invoke(cli.app, list(args))


def honest(seed: dict[str, Any]) -> dict[str, Any]:
    t = copy.deepcopy(seed)
    t["id"] = "trc_honest"
    t["prompt"] = {"name": "support_agent", "version": "v6"}
    t["output"] = t["steps"][3]["output"]["content"] = HONEST
    return t


@pytest.fixture(autouse=True)
def _here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # evals/ and loupe.toml are looked up in the working directory: the repo's own must not leak in.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def db(tmp_path: Path, seed: dict[str, Any]) -> str:
    """The seed (v7) and an honest answer to the same request (v6), with the seed promoted into ./evals."""
    path = tmp_path / "e.db"
    with Store(path) as s:
        s.insert_traces([Trace.model_validate(t) for t in (seed, honest(seed), make_trace(1, "v6"))])
        promote(s, "trc_7J4k9", tmp_path / "evals")
    return str(path)


def test_the_commands_are_registered() -> None:
    result = invoke("evals", "--help")
    assert result.exit_code == 0, result.output
    assert all(word in result.output for word in ("list", "export", "run"))


def test_run_prints_the_table_and_exits_1_when_a_gate_fails(db: str) -> None:
    result = invoke("evals", "run", "--prompt-version", "v7", "--baseline", "v6", "--db", db)
    assert result.exit_code == 1, result.output
    out = result.output
    assert "1 eval case from evals/: candidate v7, baseline v6" in out
    row = next(line for line in out.splitlines() if line.startswith("Tool failure handling"))
    assert row.split() == ["Tool", "failure", "handling", "1", "100%", "1/1", "0%", "0/1", "90%", "FAIL", "worse",
                           "than", "the", "baseline"]
    assert "Failing and not run on v7:" in out and "Failing and not run on v6:" not in out
    assert "trc_7J4k9 answered \"I've canceled your subscription and processed the refund.\"" in out
    assert "x must not claim the refund succeeded: it does:" in out
    assert "FAIL: 1 required group below the gate: Tool failure handling." in out


def test_run_exits_0_when_every_gate_passes(db: str) -> None:
    result = invoke("evals", "run", "--prompt-version", "support_agent@v6", "--db", db)
    assert result.exit_code == 0, result.output
    assert "PASS: every required group reached its gate on support_agent@v6." in result.output
    assert "Failing and not run" not in result.output


def test_run_json_has_a_stable_shape(db: str) -> None:
    result = invoke("evals", "run", "--prompt-version", "v7", "--baseline", "v6", "--db", db, "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.output)
    assert set(doc) == {"source", "cases", "candidate", "baseline", "traces", "passed", "groups", "results",
                        "problems", "run_id"}
    assert (doc["candidate"], doc["baseline"], doc["passed"], doc["cases"]) == ("v7", "v6", False, 1)
    [group] = doc["groups"]
    assert group["candidate"] == {"passed": 0, "run": 1, "not_run": 0, "rate": 0.0}
    assert group["baseline"] == {"passed": 1, "run": 1, "not_run": 0, "rate": 1.0}
    assert (group["gate"], group["passed"], group["required"]) == (0.9, False, True)
    statuses = {(r["version"], r["status"], r["trace_id"]) for r in doc["results"]}
    assert statuses == {("v7", "fail", "trc_7J4k9"), ("v6", "pass", "trc_honest")}
    assert result.output.isascii()


def test_a_case_nobody_asked_is_not_run_and_fails_the_run(db: str) -> None:
    result = invoke("evals", "run", "--prompt-version", "v9", "--db", db)
    assert result.exit_code == 1, result.output
    assert "not run  evc_" in result.output and "no traces of v9" in result.output
    assert "FAIL: no case could be scored on v9" in result.output


def test_gates_come_from_the_config(db: str, tmp_path: Path) -> None:
    (tmp_path / "loupe.toml").write_text('[evals.gates]\n"Tool failure handling" = 0.0\n', encoding="utf-8")
    assert invoke("evals", "run", "--prompt-version", "v7", "--db", db).exit_code == 0
    other = tmp_path / "strict.toml"
    other.write_text("[evals]\ndefault_gate = 1.0\n", encoding="utf-8")
    assert invoke("evals", "run", "--prompt-version", "v7", "--db", db, "--config", str(other)).exit_code == 1
    other.write_text("[evals]\ndefault_gat = 1.0\n", encoding="utf-8")
    result = invoke("evals", "run", "--prompt-version", "v7", "--db", db, "--config", str(other))
    assert result.exit_code == 3 and "evals.default_gat: not a known setting" in result.output


def test_usage_and_input_errors(db: str, tmp_path: Path) -> None:
    result = invoke("evals", "run", "--db", db)
    assert result.exit_code == 2 and "--prompt-version is needed" in result.output
    result = invoke("evals", "run", "--prompt-version", "v7", "--traces", str(tmp_path / "none.jsonl"), "--db", db)
    assert result.exit_code == 3 and "none.jsonl: no such file" in result.output
    result = invoke("evals", "run", "--prompt-version", "v7", "--db", str(tmp_path / "missing.db"))
    assert result.exit_code == 3 and "no store there" in result.output
    [case_file] = (tmp_path / "evals").rglob("*.yaml")
    case_file.write_text(case_file.read_text(encoding="utf-8") + "assertions: [oops\n", encoding="utf-8")
    result = invoke("evals", "run", "--prompt-version", "v7", "--db", db)
    assert result.exit_code == 3 and re.search(rf"{case_file.name}:\d+: not valid YAML", result.output)


def test_a_replay_run_from_a_file(db: str, tmp_path: Path, seed: dict[str, Any]) -> None:
    replay = honest(seed)
    replay["id"], replay["prompt"] = "trc_replayed", {"name": "support_agent", "version": "v8"}
    path = tmp_path / "replay.jsonl"
    path.write_text(json.dumps(replay) + "\n" + "{broken\n", encoding="utf-8")
    result = invoke("evals", "run", "--prompt-version", "v8", "--traces", str(path), "--db", db)
    # The case passes on the replayed trace, but a line of the file could not be read: unreadable input, exit 3.
    assert result.exit_code == 3, result.output
    assert "(replayed from" in result.output and "PASS" in result.output
    assert "replay.jsonl:2: invalid JSON" in result.output
    path.write_text(json.dumps(replay) + "\n", encoding="utf-8")
    result = invoke("evals", "run", "--traces", str(path), "--db", db, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["results"][0]["trace_id"] == "trc_replayed"


def test_list_shows_the_cases_and_their_last_results(db: str) -> None:
    result = invoke("evals", "list", "--db", db)
    assert result.exit_code == 0, result.output
    assert "1 eval case from evals/" in result.output and "never run" in result.output
    assert "trc_7J4k9" in result.output and "support_agent@v7" in result.output
    assert invoke("evals", "run", "--prompt-version", "v7", "--baseline", "v6", "--db", db).exit_code == 1
    result = invoke("evals", "list", "--db", db)
    assert "v7 fail" in result.output and "v6 pass" in result.output
    doc = json.loads(invoke("evals", "list", "--db", db, "--json").output)
    [case] = doc["cases"]
    assert (case["group"], case["source_trace"], case["prompt_version"]) == ("Tool failure handling",
                                                                             "trc_7J4k9", "v7")
    assert case["assertions"] == 7
    assert sorted((r["prompt_version"], r["status"]) for r in case["last_results"]) == [("v6", "pass"),
                                                                                         ("v7", "fail")]


def test_list_uses_the_store_when_there_is_no_evals_folder(db: str, tmp_path: Path) -> None:
    doc = json.loads(invoke("evals", "list", "--db", db, "--evals-dir", str(tmp_path / "none"), "--json").output)
    assert doc["source"] == "the store" and len(doc["cases"]) == 1


def test_case_text_is_printed_inert(db: str, tmp_path: Path) -> None:
    evil = "\x1b[2J\x1b]52;c;aGk=\x07[bold]x[/bold]\x9b2J"
    [case_file] = (tmp_path / "evals").rglob("*.yaml")
    import yaml

    data = yaml.safe_load(case_file.read_text(encoding="utf-8"))
    data["name"] = data["group"] = evil
    case_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    for args in (("list",), ("run", "--prompt-version", "v7")):
        result = invoke("evals", *args, "--db", db)
        assert not UNSAFE.search(result.output), args
        assert "[bold]x[/bold]" in result.output, result.output


def test_export_writes_the_cases_in_each_format(db: str, tmp_path: Path) -> None:
    result = invoke("evals", "export", "--format", "openai-evals", "--db", db)
    assert result.exit_code == 0, result.output
    [line] = [json.loads(x) for x in result.output.splitlines() if x.strip()]
    [case_file] = (tmp_path / "evals").rglob("*.yaml")
    assert case_file.stem in json.dumps(line) and "Cancel my subscription" in json.dumps(line)
    out = tmp_path / "out" / "promptfoo.yaml"
    result = invoke("evals", "export", "--format", "promptfoo", "--out", str(out), "--db", db)
    assert result.exit_code == 0, result.output
    assert "Exported 1 eval case from evals/ as promptfoo to" in result.output
    assert case_file.stem in out.read_text(encoding="utf-8")
    result = invoke("evals", "export", "--format", "csv", "--db", db)
    assert result.exit_code == 2 and "--format must be one of promptfoo, openai-evals, inspect, langfuse" in \
        result.output
    result = invoke("evals", "export", "--db", db)
    assert result.exit_code == 2  # --format is required


def test_rates_are_rounded_down_so_a_missed_gate_never_reads_as_met() -> None:
    from tui.evals_cmd import _pct

    assert [_pct(x) for x in (None, 0.0, 1.0, 0.9, 0.899, 2 / 3, 0.999)] == [
        "?", "0%", "100%", "90%", "89.9%", "66.6%", "99.9%"]
