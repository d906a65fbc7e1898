"""The rules' configuration: where it is found, what it holds, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.config import Budget, Config, ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_means_the_defaults(tmp_path: Path) -> None:
    cfg = load_config(cwd=tmp_path)
    assert cfg == Config() and cfg.source is None
    assert cfg.rules.retry_loop.threshold == 3 and cfg.confirmation_tools() == []
    assert cfg.budget_for("support_agent", "v7") is None


def test_loupe_toml_in_the_working_directory_wins_over_pyproject(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n[tool.loupe.rules.retry-loop]\nthreshold = 5\n")
    assert load_config(cwd=tmp_path).rules.retry_loop.threshold == 5
    assert load_config(cwd=tmp_path).source == f"{tmp_path / 'pyproject.toml'} [tool.loupe]"
    write(tmp_path / "loupe.toml", "[rules.retry-loop]\nthreshold = 4\n")
    assert load_config(cwd=tmp_path).rules.retry_loop.threshold == 4


def test_a_pyproject_without_tool_loupe_is_not_a_configuration(tmp_path: Path) -> None:
    py = write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n")
    assert load_config(cwd=tmp_path) == Config()
    with pytest.raises(ConfigError, match=r"pyproject.toml: has no \[tool.loupe\] table"):
        load_config(py)


def test_errors_name_the_file_and_every_bad_key(tmp_path: Path) -> None:
    bad = write(tmp_path / "loupe.toml", """
[rules.budget-exceeded.budgets.support_agent]
cost = "cheap"
input_token = 5000
[rules.retry-loops]
threshold = 2
[rules.usage-missing]
severity = "fatal"
[rules.forbidden-promise.prompts."*"]
patterns = ["(unclosed"]
""")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    text = str(exc.value)
    assert text.startswith(f"{bad}: invalid configuration")
    assert "rules.budget-exceeded.budgets.support_agent.cost: Input should be a valid number" in text
    assert "rules.budget-exceeded.budgets.support_agent.input_token: not a known setting" in text
    assert "rules.retry-loops: not a known setting" in text and "rules are: success-after-tool-error" in text
    assert "rules.usage-missing.severity: Input should be 'error', 'warning' or 'info'" in text
    assert "rules.forbidden-promise.prompts.*.patterns.0: not a regular expression" in text


@pytest.mark.parametrize(
    "text,message",
    [
        ("[rules\n", "not valid TOML"),
        ("[rules.retry-loop]\nthreshold = 1\n", "rules.retry-loop.threshold: Input should be greater than or equal to 2"),
        ("[rules.budget-exceeded.budgets.x]\ncost = -1\n", "budgets.x.cost: Input should be greater than or equal to 0"),
        ("[tools.t]\nfailure_when = 3\n", "tools.t.failure_when: Input should be a valid list"),
        ("[tools.t]\nneeds_confirmaton = true\n", "tools.t.needs_confirmaton: not a known setting"),
    ],
)
def test_each_mistake_is_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="loupe.toml: ") as exc:
        load_config(write(tmp_path / "loupe.toml", text))
    assert message in str(exc.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[rules]")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bin.toml")


def test_budgets_merge_from_star_to_name_to_version() -> None:
    cfg = parse_config({"rules": {"budget-exceeded": {"budgets": {
        "*": {"latency_seconds": 60},
        "support_agent": {"input_tokens": 5000, "cost": 0.03},
        "support_agent@v8": {"input_tokens": 4000},
    }}}})
    assert cfg.budget_for("support_agent", "v8") == Budget(input_tokens=4000, cost=0.03, latency_seconds=60)
    assert cfg.budget_for("support_agent", "v7") == Budget(input_tokens=5000, cost=0.03, latency_seconds=60)
    assert cfg.budget_for("other", None) == Budget(latency_seconds=60)
    assert parse_config({}).budget_for("support_agent", "v7") is None


def test_forbidden_phrases_add_up_across_matching_keys() -> None:
    cfg = parse_config({"rules": {"forbidden-promise": {"prompts": {
        "*": {"phrases": ["guarantee"]}, "support_agent": {"phrases": ["full refund"], "patterns": [r"\bfree\b"]},
        "support_agent@v7": {"phrases": ["exception"]}}}}})
    p = cfg.promises_for("support_agent", "v7")
    assert p is not None and p.phrases == ["guarantee", "full refund", "exception"] and p.patterns == [r"\bfree\b"]
    assert cfg.promises_for("other", None) is not None
    assert parse_config({}).promises_for("support_agent", None) is None


def test_failure_when_takes_one_table_or_a_list_of_them() -> None:
    cfg = parse_config({"tools": {"a": {"failure_when": {"status": "declined"}},
                                  "b": {"failure_when": [{"status": "x"}, {"ok": False}]}}})
    assert cfg.tools["a"].failure_when == [{"status": "declined"}]
    assert len(cfg.tools["b"].failure_when) == 2


def test_the_example_configuration_holds_the_issues_examples() -> None:
    cfg = load_config(ROOT / "loupe.example.toml")
    assert cfg.budget_for("support_agent", "v7") == Budget(input_tokens=5000, output_tokens=800, cost=0.03)
    assert cfg.budget_for("research_workflow", None) == Budget(model_calls=8, latency_seconds=30, cost=0.5)
    assert cfg.budget_for("coding_agent", None) == Budget(tool_calls=20, latency_seconds=300)
    assert cfg.confirmation_tools() == ["cancel_subscription"]
    assert cfg.tools["issue_refund"].failure_when == [{"status": ["declined", "failed"]}]
    assert cfg.rules.retry_loop.threshold == 3
