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
    from .format import stdout_console

    console = stdout_console(soft_wrap=False)
    if not console.is_terminal and console.width < 120:
        console.width = 120  # piped: room for a few versions side by side
    return console


def _resolve(store: Store, ref: str, prompt: str | None, flag: str) -> VersionKey:
    """A version argument, or exit 2 saying why (unknown, or a bare version several prompts have)."""
    from store.versions import AmbiguousVersion, VersionNotFound, resolve_version

    from .cli import EXIT_USAGE, _err

    if not ref:  # never stripped: "v1 " is its own version, as the filters read it
        _err(f"{flag} cannot be empty")
        raise typer.Exit(EXIT_USAGE)
    try:
        return resolve_version(store, ref, prompt)
    except AmbiguousVersion as exc:
        _err(f"{flag} {ref!r} names more than one prompt version: "
             + ", ".join(repr(c.label) for c in exc.candidates)
             + "; say which with NAME@VERSION, or with --prompt NAME and the bare version")
        raise typer.Exit(EXIT_USAGE) from exc
    except VersionNotFound as exc:
        _err(f"{flag} {ref!r}: no stored trace has that prompt version (loupe versions lists them)")
        raise typer.Exit(EXIT_USAGE) from exc


def _check_time(flag: str, value: str | None) -> None:
    """--since/--until: an ISO time, or exit 2 naming the option and showing what one looks like."""
    from store.models import parse_time

    from .cli import EXIT_USAGE, _err

    if value is None:
        return
    try:
        ok = parse_time(value) is not None
    except (ValueError, OverflowError):
        ok = False
    if not ok:
        _err(f"{flag} {value!r} is not an ISO date or time; for example {flag} 2026-01-09 or "
             f"{flag} 2026-01-09T10:00 (UTC unless it says +HH:MM)")
        raise typer.Exit(EXIT_USAGE)


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

    from store.gate import duration

    from .format import fmt_cost

    if p.value is None:
        return Text("?", "dim")
    return Text(fmt_cost(p.value) if fmt == "usd" else duration(p.value))


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


def _unknown_cell(unknown: int, traces: int, some: str = "") -> Text:
    """How many traces a number leaves out: "-" for none, "all 3 unknown" for every one, else "1 of 3"."""
    from rich.text import Text

    if not unknown:
        return Text("-", "dim")
    if unknown >= traces:
        return Text(f"all {traces:,} unknown", "yellow")
    return Text(f"{some}{unknown:,} of {traces:,}", "yellow")


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
        row("cost unknown", [_unknown_cell(v.cost.unknown, v.traces, "partial: ") for v in versions]),
        row("input tokens", [_tokens_cell(v.tokens.input.value, v.tokens.cached_share, "cached") for v in versions]),
        row("output tokens", [_tokens_cell(v.tokens.output.value, v.tokens.reasoning_share, "reasoning")
                              for v in versions]),
        row("usage unknown", [_unknown_cell(v.tokens.unknown, v.traces) for v in versions]),
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

    from store.gate import duration

    from .format import fmt_cost

    d = m.delta
    if d is None:
        return Text("?", "dim"), Text("", "dim")
    if m.unit == "usd":
        absolute = ("+" if d >= 0 else "-") + fmt_cost(abs(d))
    elif m.unit == "ms":
        absolute = ("+" if d >= 0 else "-") + duration(abs(d))
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

    from store.gate import duration, pct

    from .format import fmt_cost

    if value is None:
        return Text("?", "dim")
    if m.unit == "usd":
        return Text(fmt_cost(value))
    if m.unit == "ms":
        return Text(duration(value))
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

    # One space between columns and no wrapping in the numbers: 80 columns keep every metric on one line.
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold", padding=(0, 1, 0, 0))
    table.add_column(Text("metric"), no_wrap=True)
    table.add_column(Text(f"A {one_line(cmp.a.key.version or '(no version)', 20)}"), justify="right", no_wrap=True)
    table.add_column(Text(f"B {one_line(cmp.b.key.version or '(no version)', 20)}"), justify="right", no_wrap=True)
    table.add_column(Text("B - A"), justify="right", no_wrap=True)
    table.add_column(Text("%"), justify="right", no_wrap=True)
    table.add_column(Text("better"), no_wrap=True)
    for m in cmp.metrics:
        absolute, relative = _delta_text(m)
        if m.better is None:
            better = Text("-" if m.lower_is_better is not None else "", "dim")
        elif m.clear:
            better = Text(m.better.upper(), "bold green")
        else:
            better = Text(m.better.upper() + "?", "dim")
        if m.short_note:
            # A few characters: the legend under the table says what they mean (80 columns keep one line a metric).
            better.append(" " + m.short_note, "dim")
        table.add_row(Text(m.label), scrub(_value_text(m, m.a)), scrub(_value_text(m, m.b)), absolute, relative,
                      better)
    return table


COMPARE_NOTE = ("better: the side with the better value; \"?\" where the samples cannot tell: n<30 = fewer than 30 "
                "on a side; CIs overlap = the 95% intervals overlap (Wilson score for rates, mean ± 1.96·sd/√n for "
                "means, order statistics for percentiles); no CI = no interval to compare. Tokens and calls have no "
                "better side: cost and latency say what they cost.")


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
        "--compare", help="Two versions side by side with deltas: A B, each NAME@VERSION (the name, \"@\" and the "
        "version, exactly as `loupe versions` lists them; either may hold \"@\") or a VERSION only one prompt has. "
        "With --prompt NAME, a bare VERSION is that prompt's version spelt exactly so: the way to name a version "
        "that holds \"@\" when NAME@VERSION could mean two.", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per prompt version: traces, findings, tool errors, eval pass rate, cost, tokens, latency and calls per trace,
    budget breaches. With --compare A B, the two side by side with deltas and the better side."""
    from store.db import TraceFilter
    from store.versions import VersionNotFound, version_stats, version_table
    from store.versions import compare as compare_stats

    from .cli import _filter, _open_store

    _check_time("--since", since)
    _check_time("--until", until)
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
                _print_comparison(result, _described(time_only.describe(), since, until))
            return
        table = version_table(store, flt)
    except VersionNotFound as exc:  # a version with traces, but none in --since/--until
        from .cli import EXIT_USAGE, _err

        _err(f"--compare {exc.ref}: no traces of it {_described('', since, until)}")
        raise typer.Exit(EXIT_USAGE) from exc
    finally:
        store.close()
    if as_json:
        doc = {"filter": {"prompt": prompt, "prompt_versions": flt.prompt_versions, "since": since,
                          "until": until},
               "versions": [v.to_json() for v in table]}
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=True) + "\n")
        return
    _print_table(table, _described(flt.describe(), since, until))


def _described(filters: str, since: str | None, until: str | None) -> str:
    """The filters and the time range in words, "; " between the parts there are."""
    parts = ([filters] if filters else []) + ([f"since {since}"] if since else []) + (
        [f"until {until}"] if until else [])
    return "; ".join(parts)


def gate(
    candidate: Annotated[str, typer.Option(
        "--candidate", help="The version to release: NAME@VERSION, or a VERSION only one prompt has (with --prompt: "
        "that prompt's version spelt exactly so).", show_default=False)],
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="The version to compare with. Default: the version of the same prompt first seen "
        "before the candidate.", show_default=False)] = None,
    prompt: Annotated[str | None, typer.Option(
        "--prompt", help="The prompt name the versions belong to: --candidate and --baseline are then its versions "
        "spelt exactly (for versions that hold \"@\").", show_default=False)] = None,
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

    from .cli import EXIT_FINDINGS, EXIT_USAGE, _err, _open_store, verdict_before_printing
    from .evals_cmd import _cases

    cfg = _load_config(config)
    store = _open_store(db)
    try:
        cand = _resolve(store, candidate, prompt, "--candidate")
        base = _resolve(store, baseline, cand.prompt, "--baseline") if baseline is not None else None
        if base == cand:
            _err("--baseline is the candidate itself; give an earlier version")
            raise typer.Exit(EXIT_USAGE)
        cases, _source = _cases(store, evals_dir)
        report = run_gate(store, cand, base, config=cfg, cases=cases, record=record)
    finally:
        store.close()
    verdict_before_printing(0 if report.passed else EXIT_FINDINGS)
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
        summary = Text()
        if c.partial:
            summary.append(f"({c.partial}) ", "bold yellow")  # a pass on what is known: said before the numbers
        summary.append(one_line(c.summary, 400))
        table.add_row(Text(STATUS_WORD[c.status], STATUS_STYLE[c.status]), Text(one_line(c.check, 40), "bold"),
                      scrub(summary))
    console.print(table)
    failed = [c for c in report.checks if c.status == "fail"]
    unknown = [c for c in report.checks if c.status == "unknown"]
    warned = [c for c in report.checks if c.status == "warn"]
    partial = [f"{c.check} {c.partial}" for c in report.checks if c.partial and c.status not in ("fail", "unknown")]
    extra = "; ".join(([plural(len(warned), "warning")] if warned else []) + partial)
    extra = f" ({extra})" if extra else ""
    if report.passed:
        console.print(Text(f"PASS: every check passed{extra}.", "yellow" if partial else "green"))
    else:
        why = [plural(len(failed), "check") + " failed"] if failed else []
        if unknown:
            why.append(f"{plural(len(unknown), 'number')} unknown (unknown is not a pass)")
        console.print(Text("FAIL: " + ", ".join(why) + extra + ".", "bold red"))


def register(app: typer.Typer) -> None:
    """Add `versions` and `gate` to the loupe command line."""
    app.command()(versions)
    app.command()(gate)
