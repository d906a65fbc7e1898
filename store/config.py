"""The rules' settings: `loupe.toml` (or `[tool.loupe]` in pyproject.toml), validated so a mistake names its key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .models import Severity

CONFIG_NAME = "loupe.toml"
PYPROJECT = "pyproject.toml"


class ConfigError(Exception):
    """The configuration cannot be read or is invalid; the message names the file and the key."""


class _Strict(BaseModel):
    # extra="forbid": a misspelt key is an error that names it, never a setting silently ignored.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _regex(v: str) -> str:
    try:
        re.compile(v)
    except re.error as exc:
        raise ValueError(f"not a regular expression ({exc})") from None
    return v


Regex = Annotated[str, AfterValidator(_regex)]
Count = Annotated[int, Field(ge=0)]
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _conditions(v: Any) -> Any:
    # One table is one condition; an array of tables lists alternatives.
    return [v] if isinstance(v, dict) else v


class ToolSettings(_Strict):
    """What loupe should know about one tool."""

    # Alternatives (any may match); within one, every key must equal (a list value: any of its values). Dotted
    # keys reach into nested objects: {"error.code" = "card_declined"}.
    failure_when: Annotated[list[dict[str, Any]], BeforeValidator(_conditions)] = Field(default_factory=list)
    needs_confirmation: bool = False


class RuleSettings(_Strict):
    enabled: bool = True
    severity: Severity | None = None  # None: the rule's default


class UnbackedSettings(RuleSettings):
    # The actions whose claims need a successful tool call behind them; None: the built-in list.
    actions: list[str] | None = None
    # Action word -> tools that do it, for tools whose names do not say so (ticket = ["escalate_to_human"]).
    backed_by: dict[str, list[str]] = Field(default_factory=dict)


class RetryLoopSettings(RuleSettings):
    threshold: int = Field(default=3, ge=2)


class Budget(_Strict):
    """Limits for one trace; a trace exactly at a limit is within it."""

    input_tokens: Count | None = None
    output_tokens: Count | None = None
    cost: Amount | None = None  # USD
    latency_seconds: Amount | None = None
    model_calls: Count | None = None
    tool_calls: Count | None = None


class BudgetSettings(RuleSettings):
    # Keyed by prompt name, "name@version" (overrides the name's limits one by one), or "*" (every prompt).
    budgets: dict[str, Budget] = Field(default_factory=dict)


class Promises(_Strict):
    phrases: list[str] = Field(default_factory=list)  # case-insensitive, whole words
    patterns: list[Regex] = Field(default_factory=list)  # regular expressions, case-insensitive


class ForbiddenPromiseSettings(RuleSettings):
    # Keyed like budgets: prompt name, "name@version" or "*"; every matching entry applies.
    prompts: dict[str, Promises] = Field(default_factory=dict)


class InjectionSettings(RuleSettings):
    patterns: list[Regex] = Field(default_factory=list)  # added to the built-in patterns
    default_patterns: bool = True


class Rules(_Strict):
    success_after_tool_error: RuleSettings = Field(default_factory=RuleSettings, alias="success-after-tool-error")
    unbacked_action_claim: UnbackedSettings = Field(default_factory=UnbackedSettings, alias="unbacked-action-claim")
    tool_error: RuleSettings = Field(default_factory=RuleSettings, alias="tool-error")
    malformed_tool_arguments: RuleSettings = Field(default_factory=RuleSettings, alias="malformed-tool-arguments")
    unknown_tool: RuleSettings = Field(default_factory=RuleSettings, alias="unknown-tool")
    retry_loop: RetryLoopSettings = Field(default_factory=RetryLoopSettings, alias="retry-loop")
    unconfirmed_action: RuleSettings = Field(default_factory=RuleSettings, alias="unconfirmed-action")
    forbidden_promise: ForbiddenPromiseSettings = Field(default_factory=ForbiddenPromiseSettings,
                                                        alias="forbidden-promise")
    budget_exceeded: BudgetSettings = Field(default_factory=BudgetSettings, alias="budget-exceeded")
    usage_missing: RuleSettings = Field(default_factory=RuleSettings, alias="usage-missing")
    prompt_injection: InjectionSettings = Field(default_factory=InjectionSettings, alias="prompt-injection")

    def get(self, rule_id: str) -> RuleSettings:
        return getattr(self, rule_id.replace("-", "_"), None) or RuleSettings()


Ratio = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class EvalSettings(_Strict):
    """Eval cases: their groups and the pass rate each group must reach for a release."""

    default_gate: Ratio = 0.9
    gates: dict[str, Ratio] = Field(default_factory=dict)  # group name -> pass rate needed (0..1)
    groups: dict[str, str] = Field(default_factory=dict)  # rule ID -> the group its cases go to
    # Groups that must reach their gate for `loupe evals run` / `loupe gate` to pass; empty: every group.
    required: list[str] = Field(default_factory=list)
    escalation_tool: str | None = None  # e.g. "create_support_ticket": the tool a case expects on failure

    def gate_for(self, group: str) -> float:
        return self.gates.get(group, self.default_gate)


class MaskingSettings(_Strict):
    """What is masked before an eval case is written, beyond the built-in secrets and personal details."""

    patterns: list[Regex] = Field(default_factory=list)  # e.g. "cus_\\w+": customer IDs
    builtin: bool = True  # emails, phones, cards, API keys, bearer tokens, JWTs, secrets, SSNs, IBANs


class GateSettings(_Strict):
    """The release gate (`loupe gate`): how far a candidate may drift from its baseline."""

    max_cost_increase: Amount = 0.2  # cost per trace (mean) at most 20% above the baseline's
    max_p95_latency_increase: Amount = 0.2
    # Traces with error-severity findings: rate points above the baseline, so at most 1 (100 points).
    max_error_rate_increase: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    cost_per_trace: Amount | None = None  # absolute ceilings (USD, seconds); used without a baseline too
    p95_latency_seconds: Amount | None = None


class Config(_Strict):
    rules: Rules = Field(default_factory=Rules)
    tools: dict[str, ToolSettings] = Field(default_factory=dict)
    evals: EvalSettings = Field(default_factory=EvalSettings)
    masking: MaskingSettings = Field(default_factory=MaskingSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    source: Annotated[str | None, Field(exclude=True)] = None  # the file it was read from, for messages

    def rule(self, rule_id: str) -> RuleSettings:
        return self.rules.get(rule_id)

    def tool(self, name: str | None) -> ToolSettings | None:
        return self.tools.get(name) if name else None

    def confirmation_tools(self) -> list[str]:
        return sorted(name for name, t in self.tools.items() if t.needs_confirmation)

    def budget_for(self, prompt: str | None, version: str | None) -> Budget | None:
        """The limits for a prompt: "*", then its name, then name@version, each overriding limit by limit."""
        keys = ["*"]
        if prompt:
            keys.append(prompt)
            if version:
                keys.append(f"{prompt}@{version}")
        merged: dict[str, Any] = {}
        found = False
        for key in keys:
            b = self.rules.budget_exceeded.budgets.get(key)
            if b is not None:
                found = True
                merged.update(b.model_dump(exclude_none=True))
        return Budget(**merged) if found else None

    def promises_for(self, prompt: str | None, version: str | None) -> Promises | None:
        keys = ["*"] + ([prompt] if prompt else []) + ([f"{prompt}@{version}"] if prompt and version else [])
        entries = [p for k in keys if (p := self.rules.forbidden_promise.prompts.get(k)) is not None]
        if not entries:
            return None
        return Promises(phrases=[x for p in entries for x in p.phrases],
                        patterns=[x for p in entries for x in p.patterns])


def _key_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _message(err: dict[str, Any]) -> str:
    if err.get("type") == "extra_forbidden":
        return "not a known setting"
    msg = str(err.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


def parse_config(data: dict[str, Any], source: str = CONFIG_NAME) -> Config:
    """A Config from the parsed TOML table; a ConfigError names the file and each bad key."""
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        lines = [f"{_key_path(e['loc'])}: {_message(dict(e))}" for e in exc.errors()]
        extra = [e for e in exc.errors() if e.get("type") == "extra_forbidden" and tuple(e["loc"])[:1] == ("rules",)]
        hint = ""
        if extra:
            known = ", ".join(f.alias or n for n, f in Rules.model_fields.items())
            hint = f"\n  (rules are: {known})"
        raise ConfigError(f"{source}: invalid configuration\n  " + "\n  ".join(lines) + hint) from None
    return cfg.model_copy(update={"source": source})


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def load_config(path: Path | str | None = None, *, cwd: Path | str | None = None) -> Config:
    """The configuration from `path` (a loupe.toml, or a pyproject.toml's [tool.loupe]); with no path, loupe.toml
    in `cwd`, else pyproject.toml's [tool.loupe] there, else the defaults."""
    if path is not None:
        p = Path(path)
        data = _read_toml(p)
        if p.name == PYPROJECT:
            table = data.get("tool", {}).get("loupe")
            if table is None:
                raise ConfigError(f"{p}: has no [tool.loupe] table")
            return parse_config(_table(table, p, "tool.loupe"), f"{p} [tool.loupe]")
        return parse_config(data, str(p))
    here = Path(cwd) if cwd is not None else Path.cwd()
    found = find_config(here)
    return Config() if found is None else load_config(found)


def find_config(cwd: Path) -> Path | None:
    """loupe.toml in `cwd`, else its pyproject.toml when that has a [tool.loupe] table; None when neither."""
    own = cwd / CONFIG_NAME
    if own.exists():
        return own
    py = cwd / PYPROJECT
    if py.is_file():
        data = _read_toml(py)
        if isinstance(data.get("tool"), dict) and "loupe" in data["tool"]:
            return py
    return None


def _table(value: Any, path: Path, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key} must be a table")
    return value
