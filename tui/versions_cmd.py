"""`loupe versions` (prompt versions side by side, or two compared) and `loupe gate` (the release gate)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .check_cmd import ConfigOpt, _load_config
from .options import DbOpt, JsonOpt, PromptOpt, SinceOpt, UntilOpt, VersionOpt

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from store.db import Store
    from store.gate import GateReport
    from store.versions import Comparison, MetricDelta, Percentile, Rate, VersionKey, VersionStats

STATUS_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "unknown": "bold red"}
STATUS_WORD = {"pass": "PASS", "fail": "FAIL", "warn": "WARN", "unknown": "UNKNOWN"}


def _console() -> Console:
    from rich.console import Console

    console = Console(highlight=False, markup=False, emoji=False, soft_wrap=False)
    if not console.is_terminal and console.width < 120:
        console.width = 120  # piped: room for a few versions side by side
    return console


def _resolve(store: Store, ref: str, prompt: str | None, flag: str) -> VersionKey:
    """A version argument, or exit 2 saying why (unknown, or a bare version several prompts have)."""
    from store.versions import AmbiguousVersion, VersionNotFound, resolve_version

    from .cli import EXIT_USAGE, _err

    if not ref.strip():
        _err(f"{flag} cannot be empty")
        raise typer.Exit(EXIT_USAGE)
    try:
        return resolve_version(store, ref, prompt)
    except AmbiguousVersion as exc:
        _err(f"{flag} {ref!r} is a version of more than one prompt; say which: "
             + ", ".join(c.label for c in exc.candidates))
        raise typer.Exit(EXIT_USAGE) from exc
    except VersionNotFound as exc:
        _err(f"{flag} {ref!r}: no stored trace has that prompt version (loupe versions lists them)")
        raise typer.Exit(EXIT_USAGE) from exc


# ------------------------------------------------------------------------------------------------ cells


def _rate_cell(rate: Rate | None, *, show_count: bool = True) -> Text:
    from rich.text import Text

    from store.gate import pct

    if rate is None or rate.rate is None:
        return Text("?" if rate is not None else "-", "dim")
    text = Text(pct(rate.rate))
    if show_count:
        text.append(f" {rate.count:,}", "dim")
    return text


def _cost_cell(value: float | None) -> Text:
    from rich.text import Text

    from .format import fmt_cost

    return Text(fmt_cost(value), "dim" if value is None else "")


def _pct_cell(p: Percentile, fmt: str) -> Text:
    from rich.text import Text

    from .format import fmt_cost, fmt_latency

    if p.value is None:
        return Text("?", "dim")
    return Text(fmt_cost(p.value) if fmt == "usd" else fmt_latency(p.value))


def _tokens_cell(mean: float | None, share: float | None, what: str) -> Text:
    from rich.text import Text

    if mean is None:
        return Text("?", "dim")
    text = Text(f"{mean:,.0f}")
    text.append(f" ({'?' if share is None else f'{share * 100:.0f}%'} {what})", "dim")
    return text


def _calls_cell(mean: float | None, most: int | None) -> Text:
    from rich.text import Text

    if mean is None:
        return Text("?", "dim")
    return Text(f"{mean:.1f}").append(f" (max {most if most is not None else '?'})", "dim")


def _when(iso: str | None) -> Text:
    from rich.text import Text

    from .format import fmt_time

    return Text(fmt_time(iso)[:16], "" if iso else "dim")


def _version_rows(versions: list[VersionStats]) -> list[tuple[str, list[Text]]]:
    """The table's rows, one metric per row, one cell per version."""
    from rich.text import Text

    from .format import fmt_cost, one_line

    def row(label: str, cells: list[Text]) -> tuple[str, list[Text]]:
        return label, cells

    rows = [
        row("traces", [Text(f"{v.traces:,}", "bold") for v in versions]),
        row("first seen", [_when(v.first_seen) for v in versions]),
        row("last seen", [_when(v.last_seen) for v in versions]),
        row("models", [Text(", ".join(one_line(m or "?", 24) for m, _ in v.models[:3])
                            + (f" +{len(v.models) - 3}" if len(v.models) > 3 else "")) for v in versions]),
        row("with findings", [_rate_cell(v.findings) for v in versions]),
        row("error findings", [_rate_cell(v.error_findings) for v in versions]),
        row("tool errors", [_rate_cell(v.tool_errors) for v in versions]),
        row("eval pass rate", [_rate_cell(v.evals) if v.evals is None else
                               _rate_cell(v.evals, show_count=False).append(f" {v.evals.count}/{v.evals.of}", "dim")
                               for v in versions]),
        row("cost/trace mean", [_cost_cell(v.cost.mean.value) for v in versions]),
        row("cost/trace p50", [_pct_cell(v.cost.p50, "usd") for v in versions]),
        row("cost/trace p95", [_pct_cell(v.cost.p95, "usd") for v in versions]),
        # A total that leaves out unknown costs is a lower bound: "+" like every partial sum in loupe.
        row("cost total", [Text(fmt_cost(v.cost.total, v.cost.partial)) for v in versions]),
        row("cost unknown", [Text(f"partial: {v.cost.unknown:,} of {v.traces:,}", "yellow") if v.cost.partial
                             else Text("-", "dim") for v in versions]),
        row("input tokens", [_tokens_cell(v.tokens.input.value, v.tokens.cached_share, "cached") for v in versions]),
        row("output tokens", [_tokens_cell(v.tokens.output.value, v.tokens.reasoning_share, "reasoning")
                              for v in versions]),
        row("usage unknown", [Text(f"{v.tokens.unknown:,} of {v.traces:,}", "yellow") if v.tokens.unknown
                              else Text("-", "dim") for v in versions]),
        row("latency p50", [_pct_cell(v.latency.p50, "ms") for v in versions]),
        row("latency p95", [_pct_cell(v.latency.p95, "ms") for v in versions]),
        row("latency p99", [_pct_cell(v.latency.p99, "ms") for v in versions]),
        row("model calls", [_calls_cell(v.model_calls.mean.value, v.model_calls.max) for v in versions]),
        row("tool calls", [_calls_cell(v.tool_calls.mean.value, v.tool_calls.max) for v in versions]),
    ]
    for rule in sorted({r for v in versions for r in v.rules}):
        rows.append(row(f"rule {rule}", [_rate_cell(v.rules.get(rule)) if rule in v.rules else Text("-", "dim")
                                         for v in versions]))
    for metric in sorted({m for v in versions for m in v.budgets}):
        rows.append(row(f"over budget: {metric.replace('_', ' ')}",
                        [_rate_cell(v.budgets.get(metric)) if metric in v.budgets else Text("-", "dim")
                         for v in versions]))
    return rows


def _print_table(versions: list[VersionStats], described: str) -> None:
    from rich.table import Table
    from rich.text import Text

    from .format import one_line, plural, scrub

    console = _console()
    head = Text(plural(len(versions), "prompt version"))
    if described:
        head.append(f" ({one_line(described, 200)})", "dim")
    console.print(scrub(head))
    if not versions:
        console.print(Text("No traces match."))
        return
    # One table per prompt, its versions in the order they were first seen, the metrics down the side.
    by_prompt: dict[str | None, list[VersionStats]] = {}
    for v in versions:
        by_prompt.setdefault(v.key.prompt, []).append(v)
    for prompt, group in by_prompt.items():
        table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold", title_justify="left",
                      title=scrub(Text(one_line(prompt if prompt is not None else "(no prompt)", 60), "bold cyan")))
        table.add_column(Text(""), no_wrap=True, style="dim")
        for v in group:
            table.add_column(Text(one_line(v.key.version if v.key.version is not None else "(no version)", 30)),
                             justify="right", overflow="fold")
        for label, cells in _version_rows(group):
            table.add_row(Text(label), *(scrub(c) for c in cells))
        console.print(table)
        console.print()
    console.print(Text("Rates: share of traces (count after it). Cost and tokens per trace over the traces where "
                       "they are known; a total marked + leaves unknown costs out.", "dim"), soft_wrap=True)


def _delta_text(m: MetricDelta) -> tuple[Text, Text]:
    from rich.text import Text

    from .format import fmt_cost, fmt_latency

    d = m.delta
    if d is None:
        return Text("?", "dim"), Text("", "dim")
    if m.unit == "usd":
        absolute = ("+" if d >= 0 else "-") + fmt_cost(abs(d))
    elif m.unit == "ms":
        absolute = ("+" if d >= 0 else "-") + fmt_latency(abs(d))
    elif m.unit in ("rate", "share"):
        absolute = f"{d * 100:+.1f} pts"
    elif m.unit in ("traces", "tokens"):
        absolute = f"{d:+,.0f}"
    else:
        absolute = f"{d:+,.1f}"
    pct = m.delta_pct
    return Text(absolute), Text("" if pct is None else f"{pct:+.1f}%", "dim")


def _value_text(m: MetricDelta, value: float | None) -> Text:
    from rich.text import Text

    from store.gate import pct

    from .format import fmt_cost, fmt_latency

    if value is None:
        return Text("?", "dim")
    if m.unit == "usd":
        return Text(fmt_cost(value))
    if m.unit == "ms":
        return Text(fmt_latency(value))
    if m.unit in ("rate", "share"):
        return Text(pct(value))
    if m.unit in ("traces", "tokens"):
        return Text(f"{value:,.0f}")
    return Text(f"{value:,.1f}")


def comparison_table(cmp: Comparison) -> Table:
    """The comparison as a Rich table: metric, A, B, B - A, %, and the better side with its note."""
    from rich.table import Table
    from rich.text import Text

    from .format import one_line, scrub

    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column(Text("metric"), no_wrap=True)
    table.add_column(Text(f"A {one_line(cmp.a.key.version or '(no version)', 20)}"), justify="right")
    table.add_column(Text(f"B {one_line(cmp.b.key.version or '(no version)', 20)}"), justify="right")
    table.add_column(Text("B - A"), justify="right")
    table.add_column(Text("%"), justify="right")
    table.add_column(Text("better"))
    for m in cmp.metrics:
        absolute, relative = _delta_text(m)
        if m.better is None:
            better = Text("-" if m.lower_is_better is not None else "", "dim")
        elif m.clear:
            better = Text(m.better.upper(), "bold green")
        else:
            better = Text(m.better.upper() + "?", "dim")
        if m.note:
            better.append("  " + m.note, "dim")
        table.add_row(Text(m.label), scrub(_value_text(m, m.a)), scrub(_value_text(m, m.b)), absolute, relative,
                      better)
    return table


COMPARE_NOTE = ("better: the side with the better value; \"?\" and a note where the samples cannot tell (fewer than 30, "
                "or 95% intervals that overlap: Wilson score for rates, mean ± 1.96·sd/√n for means, order statistics "
                "for percentiles). Tokens and calls have no better side: cost and latency say what they cost.")


def comparison_head(cmp: Comparison, described: str = "") -> Text:
    from rich.text import Text

    from .format import one_line, scrub

    head = Text("Comparing ")
    head.append(one_line(cmp.a.key.label, 60), "bold")
    head.append(" (A) with ")
    head.append(one_line(cmp.b.key.label, 60), "bold")
    head.append(" (B)")
    if described:
        head.append(f" ({one_line(described, 200)})", "dim")
    return scrub(head)


def _print_comparison(cmp: Comparison, described: str) -> None:
    from rich.text import Text

    console = _console()
    console.print(comparison_head(cmp, described))
    console.print(comparison_table(cmp))
    console.print(Text(COMPARE_NOTE, "dim"), soft_wrap=True)


# ------------------------------------------------------------------------------------------------ commands


def versions(
    db: DbOpt = None,
    prompt: PromptOpt = None,
    prompt_version: VersionOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    compare: Annotated[tuple[str, str] | None, typer.Option(
        "--compare", help="Two versions side by side with deltas: A B (each VERSION or NAME@VERSION).",
        show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per prompt version: traces, findings, tool errors, eval pass rate, cost, tokens, latency and calls per trace,
    budget breaches. With --compare A B, the two side by side with deltas and the better side."""
    from store.db import TraceFilter
    from store.versions import VersionNotFound, version_stats, version_table
    from store.versions import compare as compare_stats

    from .cli import _filter, _open_store

    flt = _filter(prompt_version, prompt, None, None, False, None, None, since, until)
    store = _open_store(db)
    try:
        if compare is not None:
            a_key = _resolve(store, compare[0], prompt, "--compare")
            b_key = _resolve(store, compare[1], prompt, "--compare")
            # A and B name the versions; the other filters of a comparison are the time range.
            time_only = TraceFilter(since=since, until=until)
            a, b = version_stats(store, a_key, time_only), version_stats(store, b_key, time_only)
            result = compare_stats(a, b)
            if as_json:
                sys.stdout.write(json.dumps(result.to_json(), indent=2, ensure_ascii=True) + "\n")
            else:
                _print_comparison(result, time_only.describe() + _range(since, until))
            return
        table = version_table(store, flt)
    except VersionNotFound as exc:  # a version with traces, but none in --since/--until
        from .cli import EXIT_USAGE, _err

        _err(f"--compare {exc.ref}: no traces of it{_range(since, until).replace(';', '')}")
        raise typer.Exit(EXIT_USAGE) from exc
    finally:
        store.close()
    if as_json:
        doc = {"filter": {"prompt": prompt, "prompt_versions": flt.prompt_versions, "since": since, "until": until},
               "versions": [v.to_json() for v in table]}
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=True) + "\n")
        return
    _print_table(table, flt.describe() + _range(since, until))


def _range(since: str | None, until: str | None) -> str:
    parts = ([f"since {since}"] if since else []) + ([f"until {until}"] if until else [])
    return ("; " if parts else "") + "; ".join(parts)


def gate(
    candidate: Annotated[str, typer.Option("--candidate", help="The version to release: VERSION or NAME@VERSION.",
                                           show_default=False)],
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="The version to compare with. Default: the version of the same prompt first seen "
        "before the candidate.", show_default=False)] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    evals_dir: Annotated[Path, typer.Option(
        "--evals-dir", help="The folder of case files; when it holds cases they are the ones scored, otherwise the "
        "store's are.")] = Path("evals"),
    record: Annotated[bool, typer.Option("--record/--no-record", help="Save the eval results in the store.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """The release gate: eval groups at their gates, error findings no more often than the baseline's (within
    gate.max_error_rate_increase), cost per trace and p95 latency within their limits or +20% of the baseline.
    Exit 1 when a check fails or its number is unknown, 0 when all pass (warnings allowed)."""
    from store.gate import run_gate

    from .cli import EXIT_FINDINGS, EXIT_USAGE, _err, _open_store
    from .evals_cmd import _cases

    cfg = _load_config(config)
    store = _open_store(db)
    try:
        cand = _resolve(store, candidate, None, "--candidate")
        base = _resolve(store, baseline, cand.prompt, "--baseline") if baseline is not None else None
        if base == cand:
            _err("--baseline is the candidate itself; give an earlier version")
            raise typer.Exit(EXIT_USAGE)
        cases, _source = _cases(store, evals_dir)
        report = run_gate(store, cand, base, config=cfg, cases=cases, record=record)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2, ensure_ascii=True) + "\n")
    else:
        _print_gate(report)
    if not report.passed:
        raise typer.Exit(EXIT_FINDINGS)


def _print_gate(report: GateReport) -> None:
    from rich.table import Table
    from rich.text import Text

    from .format import one_line, plural, scrub

    console = _console()
    head = Text("Release gate for ")
    head.append(one_line(report.candidate.key.label, 80), "bold")
    head.append(f" ({plural(report.candidate.traces, 'trace')})")
    console.print(scrub(head))
    console.print(scrub(Text(one_line(report.baseline_note, 300), "dim")))
    table = Table(show_edge=False, pad_edge=False, box=None, show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for c in report.checks:
        table.add_row(Text(STATUS_WORD[c.status], STATUS_STYLE[c.status]), Text(one_line(c.check, 40), "bold"),
                      scrub(Text(one_line(c.summary, 400))))
    console.print(table)
    failed = [c for c in report.checks if c.status == "fail"]
    unknown = [c for c in report.checks if c.status == "unknown"]
    warned = [c for c in report.checks if c.status == "warn"]
    extra = f" ({plural(len(warned), 'warning')})" if warned else ""
    if report.passed:
        console.print(Text(f"PASS: every check passed{extra}.", "green"))
    else:
        why = [plural(len(failed), "check") + " failed"] if failed else []
        if unknown:
            why.append(f"{plural(len(unknown), 'number')} unknown (unknown is not a pass)")
        console.print(Text("FAIL: " + ", ".join(why) + extra + ".", "bold red"))


def register(app: typer.Typer) -> None:
    """Add `versions` and `gate` to the loupe command line."""
    app.command()(versions)
    app.command()(gate)
