"""The rules scored on the labelled set (tests/labelled/): per-rule recall and false positives, both perfect."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from store.config import load_config
from store.models import Trace
from store.rules import RULES, run_rules
from tests.labelled import build

ROOT = Path(__file__).resolve().parents[1]
CONFIG = load_config(ROOT / "loupe.example.toml")


def _cases() -> list[dict[str, Any]]:
    out = []
    for path in sorted(build.HERE.glob("*.jsonl")):
        out += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


CASES = _cases()


def test_the_labelled_files_are_what_the_builder_writes() -> None:
    for path, text in build.files().items():
        assert path.exists() and path.read_text(encoding="utf-8") == text, (
            f"{path.name} is stale: run `python tests/labelled/build.py`")


def test_every_rule_has_positives_and_look_alikes() -> None:
    for rule in RULES:
        own = [c for c in CASES if c["id"].startswith(rule + "-")]
        assert any(rule in c["metadata"]["expect"] for c in own), f"{rule}: no case where it must fire"
        assert any(rule not in c["metadata"]["expect"] for c in own), f"{rule}: no look-alike"
    assert len({c["id"] for c in CASES}) == len(CASES)


def score(cases: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per rule: expected findings, true positives, false negatives, false positives (counted per finding)."""
    table = {rule: {"expected": 0, "tp": 0, "fn": 0, "fp": 0, "traces": 0} for rule in RULES}
    for raw in cases:
        result = run_rules(Trace.model_validate(raw), CONFIG)
        got = Counter(f.rule_id for f in result.findings)
        want = Counter(raw["metadata"]["expect"])
        for rule in RULES:
            row = table[rule]
            row["traces"] += raw["id"].startswith(rule + "-")
            row["expected"] += want[rule]
            row["tp"] += min(got[rule], want[rule])
            row["fn"] += max(want[rule] - got[rule], 0)
            row["fp"] += max(got[rule] - want[rule], 0)
    return table


def summary(table: dict[str, dict[str, int]]) -> str:
    lines = [f"{'rule':<26} {'cases':>5} {'expected':>8} {'found':>5} {'recall':>7} {'false +':>7}"]
    for rule, row in table.items():
        recall = row["tp"] / row["expected"] if row["expected"] else 1.0
        lines.append(f"{rule:<26} {row['traces']:>5} {row['expected']:>8} {row['tp']:>5} {recall:>7.0%} "
                     f"{row['fp']:>7}")
    return "\n".join(lines)


def test_recall_and_false_positives_are_perfect(capsys: pytest.CaptureFixture[str]) -> None:
    table = score(CASES)
    with capsys.disabled():
        print("\nLabelled set (tests/labelled/, loupe.example.toml):\n" + summary(table))
    misses = []
    for raw in CASES:
        result = run_rules(Trace.model_validate(raw), CONFIG)
        got = sorted(f.rule_id for f in result.findings)
        if got != raw["metadata"]["expect"]:
            misses.append(f"{raw['id']} ({raw['metadata']['why']}): expected {raw['metadata']['expect']}, got "
                          f"{got}: " + "; ".join(f"{f.rule_id}: {f.message} [{f.quote}]" for f in result.findings))
    assert not misses, "\n".join(misses)
    assert all(row["fn"] == 0 and row["fp"] == 0 for row in table.values()), summary(table)


@pytest.mark.parametrize("raw", CASES, ids=[c["id"] for c in CASES])
def test_each_case(raw: dict[str, Any]) -> None:
    """Findings as labelled, each with evidence steps that exist; rules labelled as unable to run say why."""
    trace = Trace.model_validate(raw)
    result = run_rules(trace, CONFIG)
    assert sorted(f.rule_id for f in result.findings) == raw["metadata"]["expect"], raw["metadata"]["why"]
    ids = {s.id for s in trace.steps}
    for f in result.findings:
        assert f.message and f.severity in ("error", "warning", "info")
        assert set(f.evidence) <= ids, (f.rule_id, f.evidence)
        assert f.evidence or f.rule_id == "budget-exceeded", f"{f.rule_id}: no evidence step"
    runs = {r.rule_id: r for r in result.runs}
    assert list(runs) == list(RULES)
    for rule in raw["metadata"].get("not_run", []):
        assert not runs[rule].ran and runs[rule].reason, rule
    for rule in raw["metadata"]["expect"]:
        assert runs[rule].ran, rule
