"""`loupe check` (the rules as a CI gate) and `loupe rules` (what each rule checks, with its settings)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

if TYPE_CHECKING:
    from store.checks import CheckReport
    from store.config import Config
    from store.models import Severity

from .options import (
    DbOpt,
    JsonOpt,
    ModelOpt,
    PromptOpt,
    RuleOpt,
    SearchOpt,
    SinceOpt,
    StatusOpt,
    UntilOpt,
    VersionOpt,
    ViolationsOpt,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="The rules' configuration: a loupe.toml, or a pyproject.toml with [tool.loupe]. "
                 "Default: loupe.toml here, else [tool.loupe] in ./pyproject.toml, else the defaults.",
                 show_default=False),
]

SEVERITIES = ("error", "warning", "info")
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
SHOWN_FINDINGS = 20  # findings at or above --fail-on listed under the table; --json has them all


def _load_config(path: Path | None) -> Config:
    from store.config import ConfigError, load_config

    from .cli import EXIT_INPUT, _err

    try:
        return load_config(path)
    except ConfigError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_INPUT) from exc


def check(
    db: DbOpt = None,
    prompt_version: VersionOpt = None,
    prompt: PromptOpt = None,
    model: ModelOpt = None,
    status: StatusOpt = None,
    violations: ViolationsOpt = False,
    rule: RuleOpt = None,
    search: SearchOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    fail_on: Annotated[
        str, typer.Option("--fail-on", help="Exit 1 when a finding of this severity or worse exists: error, "
                          "warning or info.")
    ] = "error",
    rerun: Annotated[
        bool, typer.Option("--rerun", help="Run the rules again over the matching traces with the current "
                           "configuration, and store the new findings, before checking.")
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the stored traces against the rules: a summary by rule and prompt version; exit 1 on findings at or
    above --fail-on, 3 when the configuration or the store cannot be read."""
    from store import checks

    from .cli import EXIT_FINDINGS, EXIT_INPUT, EXIT_USAGE, _err, _filter, _open_store, verdict_before_printing

    if fail_on not in SEVERITIES:
        _err(f"--fail-on must be error, warning or info, not {fail_on!r}")
        raise typer.Exit(EXIT_USAGE)
    flt = _filter(prompt_version, prompt, model, status, violations, rule, search, since, until)
    cfg = _load_config(config)
    store = _open_store(db)
    try:
        if rerun:
            # --violations and --rule choose from the new findings: every trace the other filters match is re-run.
            counts = checks.rerun(store, dataclasses.replace(flt, violations=False, rule=None), cfg)
            for tid, _source, why in counts.failed:
                _err(f"{tid}: {why}")
            if not as_json:
                from .format import plural

                sys.stderr.write(f"Re-ran the rules over {plural(counts.traces, 'trace')}: "
                                 f"{plural(counts.findings_before, 'finding')} before, "
                                 f"{counts.findings_after:,} now\n")
            if counts.failed:
                raise typer.Exit(EXIT_INPUT)
        report = checks.check(store, flt, cast("Severity", fail_on))  # one of SEVERITIES, checked above
    finally:
        store.close()
    verdict_before_printing(EXIT_FINDINGS if report.failed else 0)
    if as_json:
        # ASCII-only: trace text in messages and quotes reaches the terminal as \u escapes, never raw.
        sys.stdout.write(json.dumps(report.to_json(), indent=2, ensure_ascii=True) + "\n")
    else:
        _print_report(report, flt.describe())
    if report.failed:
        raise typer.Exit(EXIT_FINDINGS)


def _print_report(report: CheckReport, described: str) -> None:
    from rich.table import Table
    from rich.text import Text

    from .format import one_line, plural, scrub, stdout_console

    console = stdout_console(soft_wrap=False)
    if not console.is_terminal and console.width < 120:
        console.width = 120
    head = Text(f"Checked {plural(report.traces, 'trace')}")
    if described:
        head.append(f" ({one_line(described, 200)})", "dim")
    head.append(f": {plural(report.traces_with_findings, 'trace')} with findings, "
                f"{plural(len(report.findings), 'finding')}.")
    console.print(scrub(head))
    rows = report.rows()
    if rows:
        versions = report.versions()
        table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
        table.add_column(Text("rule"))
        table.add_column(Text("severity"))
        table.add_column(Text("findings"), justify="right")
        table.add_column(Text("traces"), justify="right")
        for v in versions:
            table.add_column(Text(one_line(v, 32)), justify="right")
        for rule_id, severity, n, traces, per in rows:
            table.add_row(
                Text(one_line(rule_id, 40)), Text(severity, SEVERITY_STYLE.get(severity, "")), Text(f"{n:,}"),
                Text(f"{traces:,}"), *(Text(f"{per[v]:,}" if per.get(v) else "-", "" if per.get(v) else "dim")
                                       for v in versions),
            )
        console.print(table)
    for rule_id, reasons in sorted(report.not_run.items()):
        for reason, n in reasons.most_common():
            line = Text("not run: ", "dim")
            line.append(one_line(rule_id, 40))
            line.append(f" on {plural(n, 'trace')} ({one_line(reason, 160)})", "dim")
            console.print(scrub(line))
    failing = report.failing
    for f in failing[:SHOWN_FINDINGS]:
        line = Text("  ")
        line.append(one_line(f.trace_id, 34), "bold")
        line.append("  ")
        line.append(f.finding.severity, SEVERITY_STYLE.get(f.finding.severity, ""))
        line.append(f"  {one_line(f.finding.rule_id, 40)}  ")
        line.append(one_line(f.finding.message, 200))
        console.print(scrub(line), soft_wrap=True)
    if len(failing) > SHOWN_FINDINGS:
        console.print(Text(f"  … and {len(failing) - SHOWN_FINDINGS:,} more (--json lists every finding)", "dim"))
    if failing:
        console.print(Text(f"FAIL: {plural(len(failing), 'finding')} at or above {report.fail_on}.", "bold red"))
    else:
        console.print(Text(f"OK: no finding at or above {report.fail_on}.", "green"))


def rules(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """List the rules: what each checks, its default severity, and its settings in the configuration."""
    del db  # accepted like on every command; the rules do not depend on the store
    from store.checks import rule_settings
    from store.rules import RULES

    cfg = _load_config(config)
    entries: list[dict[str, Any]] = []
    for r in RULES.values():
        s = cfg.rule(r.id)
        entries.append({
            "rule_id": r.id, "title": r.title, "checks": r.checks, "default_severity": r.severity,
            "severity": s.severity or r.severity, "enabled": s.enabled, "settings": rule_settings(r.id, cfg),
        })
    if as_json:
        sys.stdout.write(json.dumps({"config": cfg.source, "rules": entries}, indent=2, ensure_ascii=True) + "\n")
        return
    from rich.table import Table
    from rich.text import Text

    from .format import inert, stdout_console

    console = stdout_console()
    if not console.is_terminal and console.width < 120:
        console.width = 120  # piped: room for the rule IDs and a readable description
    console.print(Text("Configuration: " + (inert(cfg.source) if cfg.source else "none found (the defaults)"),
                       "dim"))
    table = Table(show_lines=True, header_style="bold")
    table.add_column(Text("rule"), no_wrap=True, min_width=24)
    table.add_column(Text("severity"), no_wrap=True)
    table.add_column(Text("checks"), ratio=3)
    table.add_column(Text("settings"), ratio=2, overflow="fold")
    for e in entries:
        sev = Text(str(e["severity"]), SEVERITY_STYLE.get(str(e["severity"]), ""))
        if e["severity"] != e["default_severity"]:
            sev.append(f"\n(default {e['default_severity']})", "dim")
        if not e["enabled"]:
            sev = Text("disabled", "dim")
        table.add_row(Text(str(e["rule_id"]), "bold"), sev, Text(str(e["checks"])),
                      Text(inert("\n".join(e["settings"])) if e["settings"] else "-"))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `check` and `rules` to the loupe command line."""
    app.command()(check)
    app.command()(rules)
