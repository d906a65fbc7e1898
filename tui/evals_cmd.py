"""`loupe evals list|export|run`: the eval cases, their exports to other tools, and the offline release gate."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .check_cmd import ConfigOpt, _load_config
from .options import DbOpt, JsonOpt

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from store.db import Store
    from store.eval_run import CaseResult, EvalReport
    from store.models import EvalCase

EvalsDirOpt = Annotated[
    Path,
    typer.Option("--evals-dir", help="The folder of case files (evals/<group>/<case-id>.yaml). When it holds cases, "
                 "they are the cases used; otherwise the store's cases are."),
]
SHOWN_FAILURES = 8  # failed assertions listed per trace under the table; --json has them all
SHOWN_TRACES = 3  # failing traces listed per case

evals_app = typer.Typer(
    help="Eval cases: list them, export them to other tools' formats, score them against recorded traces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _console() -> Console:
    from .format import stdout_console

    console = stdout_console(soft_wrap=False)
    if not console.is_terminal and console.width < 120:
        console.width = 120  # piped: room for the case names
    return console


def _cases(store: Store, evals_dir: Path) -> tuple[list[EvalCase], str]:
    from store.eval_run import CaseFileError, load_cases_for_run

    from .cli import EXIT_INPUT, _err

    try:
        return load_cases_for_run(store, evals_dir)
    except CaseFileError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_INPUT) from exc


def _pct(rate: float | None) -> str:
    """A rate as a percentage, rounded down: 89.9% must not read as the 90% gate it misses."""
    if rate is None:
        return "?"
    tenths = int(rate * 1000 + 1e-9)
    return f"{tenths // 10}%" if tenths % 10 == 0 else f"{tenths / 10:.1f}%"


def _version_label(name: str | None, version: str | None) -> str:
    from store.db import NO_VERSION

    return f"{name}@{version or NO_VERSION}" if name else (version or NO_VERSION)


# ------------------------------------------------------------------------------------------------ list


def _natural(version: str | None) -> tuple[tuple[int, str], ...]:
    """A sort key that puts v10 after v9."""
    import re

    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", version or "") if p)


@evals_app.command("list")
def list_(
    db: DbOpt = None,
    evals_dir: EvalsDirOpt = Path("evals"),
    as_json: JsonOpt = False,
) -> None:
    """The eval cases: group, case, source trace, prompt version, assertions, and the last result per version."""
    from .cli import _open_store

    store = _open_store(db)
    try:
        cases, source = _cases(store, evals_dir)
        last: dict[str, list[tuple[str, str]]] = {}
        # Newest first; the candidate and baseline of one run share a time, so the higher version goes first.
        for r in sorted(store.last_eval_results(), key=lambda r: (r.ran_at, _natural(r.prompt_version)),
                        reverse=True):
            last.setdefault(r.case_id, []).append((r.prompt_version or "(no version)", r.status))
    finally:
        store.close()
    rows: list[dict[str, Any]] = []
    for c in cases:
        src = c.source_trace
        rows.append({
            "group": c.group, "case_id": c.id, "name": c.name, "source_trace": src.get("id"),
            "prompt": src.get("prompt"), "prompt_version": src.get("prompt_version"),
            "assertions": len(c.assertions),
            "last_results": [{"prompt_version": v, "status": s} for v, s in last.get(c.id, [])],
        })
    if as_json:
        sys.stdout.write(json.dumps({"source": source, "cases": rows}, indent=2, ensure_ascii=True) + "\n")
        return
    from rich.table import Table
    from rich.text import Text

    from .format import one_line, plural, scrub

    console = _console()
    console.print(Text(f"{plural(len(rows), 'eval case')} from {one_line(source, 200)}", "dim"))
    if not rows:
        console.print(Text("No eval cases yet: press e on a trace in the TUI, or run `loupe promote TRACE_ID`."))
        return
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    # The IDs and versions stay whole; the case's name and the results wrap when the terminal is narrow.
    table.add_column(Text("group"), max_width=24, overflow="fold")
    table.add_column(Text("case"), ratio=2, min_width=14, overflow="fold")
    table.add_column(Text("source trace"), min_width=9, overflow="fold")
    table.add_column(Text("prompt version"), min_width=8, overflow="fold")
    table.add_column(Text("assertions"), justify="right", no_wrap=True)
    table.add_column(Text("last result"), ratio=1, min_width=10, overflow="fold")
    for row in rows:
        results = Text()
        for i, item in enumerate(row["last_results"]):
            if i:
                results.append(", ")
            results.append(one_line(item["prompt_version"], 24) + " ")
            results.append(item["status"], _STATUS_STYLE.get(item["status"], ""))
        if not row["last_results"]:
            results = Text("never run", "dim")
        case = Text()
        case.append(one_line(row["case_id"], 20), "bold")
        case.append(" " + one_line(row["name"], 80))
        table.add_row(Text(one_line(row["group"], 32)), case, Text(one_line(row["source_trace"] or "-", 34)),
                      Text(one_line(_version_label(row["prompt"], row["prompt_version"]), 32)),
                      Text(str(row["assertions"])), scrub(results))
    console.print(table)


_STATUS_STYLE = {"pass": "green", "fail": "bold red", "not run": "yellow"}


# ------------------------------------------------------------------------------------------------ export


@evals_app.command("export")
def export(
    fmt: Annotated[str, typer.Option("--format", help="promptfoo, openai-evals, inspect or langfuse.",
                                     show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", help="Write the export to this file (default: stdout).",
                                             show_default=False)] = None,
    db: DbOpt = None,
    evals_dir: EvalsDirOpt = Path("evals"),
) -> None:
    """Export the eval cases in another tool's format: a promptfoo test file, OpenAI evals JSONL, inspect-ai
    samples or Langfuse dataset items."""
    from store.eval_export import FORMATS, export_cases, promptfoo_left_out

    from .cli import EXIT_INPUT, EXIT_USAGE, _err, _open_store
    from .format import inert, plural

    if fmt not in FORMATS:
        _err(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        raise typer.Exit(EXIT_USAGE)
    store = _open_store(db)
    try:
        cases, source = _cases(store, evals_dir)
    finally:
        store.close()
    text = export_cases(cases, fmt)
    if out is None:
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        _err(f"{out}: cannot be written ({exc.strerror or exc})")
        raise typer.Exit(EXIT_INPUT) from exc
    left_out = promptfoo_left_out(cases) if fmt == "promptfoo" else []
    sys.stderr.write(f"Exported {plural(len(cases) - len(left_out), 'eval case')} from {inert(source)} as {fmt} to "
                     f"{inert(str(out))}\n")
    if left_out:
        # promptfoo sees only the answer: a case whose every assertion needs the trace would always pass there.
        sys.stderr.write(f"Left out {plural(len(left_out), 'case')} that only `loupe evals run` can score: "
                         f"{inert(', '.join(left_out))}\n")


# ------------------------------------------------------------------------------------------------ run


@evals_app.command("run")
def run(
    prompt_version: Annotated[str | None, typer.Option(
        "--prompt-version", help="The candidate: VERSION or NAME@VERSION. Optional with --traces (then every trace "
        "in the file is the candidate's).", show_default=False)] = None,
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="A version to compare with, scored the same way from the store.",
        show_default=False)] = None,
    traces: Annotated[Path | None, typer.Option(
        "--traces", help="Score the traces in this file (any format loupe ingests) instead of the stored ones: "
        "a replay run.", show_default=False)] = None,
    evals_dir: EvalsDirOpt = Path("evals"),
    db: DbOpt = None,
    config: ConfigOpt = None,
    record: Annotated[bool, typer.Option("--record/--no-record", help="Save each result in the store (for "
                                         "`loupe evals list` and the versions table).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Score every eval case against the traces of a prompt version whose user request is the case's; per group,
    the pass rate against its gate. Exit 1 when a required group is below its gate or nothing could be scored."""
    from store.eval_run import EvalRunError, run_evals

    from .cli import EXIT_FINDINGS, EXIT_INPUT, EXIT_USAGE, _err, _open_store, verdict_before_printing

    if prompt_version is None and traces is None:
        _err("--prompt-version is needed (or --traces PATH for a replay run)")
        raise typer.Exit(EXIT_USAGE)
    for flag, value in (("--prompt-version", prompt_version), ("--baseline", baseline)):
        if value is not None and not value.strip():
            _err(f"{flag} cannot be empty")
            raise typer.Exit(EXIT_USAGE)
    if traces is not None and not traces.is_file():
        _err(f"{traces}: no such file" if not traces.exists() else f"{traces}: not a file")
        raise typer.Exit(EXIT_INPUT)
    cfg = _load_config(config)
    store = _open_store(db)
    try:
        cases, source = _cases(store, evals_dir)
        try:
            report = run_evals(store, prompt_version, baseline, config=cfg, traces_path=traces, cases=cases,
                               record=record)
        except EvalRunError as exc:
            _err(str(exc))
            raise typer.Exit(EXIT_INPUT) from exc
    finally:
        store.close()
    for problem in report.problems:
        _err(problem)
    verdict_before_printing(EXIT_INPUT if report.problems else 0 if report.passed else EXIT_FINDINGS)
    if as_json:
        doc = {"source": source, "cases": len(cases), **report.to_json()}
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=True) + "\n")
    else:
        _print_run(report, source, len(cases))
    if report.problems:
        raise typer.Exit(EXIT_INPUT)
    if not report.passed:
        raise typer.Exit(EXIT_FINDINGS)


def _rate_text(rate: Any) -> Text:
    from rich.text import Text

    if rate is None:
        return Text("-", "dim")
    if rate.rate is None:
        return Text("not run", "yellow")
    out = Text(f"{_pct(rate.rate)} ")
    out.append(f"{rate.passed}/{rate.run}", "dim")
    return out


def _print_run(report: EvalReport, source: str, n_cases: int) -> None:
    from rich.table import Table
    from rich.text import Text

    from .format import one_line, plural, scrub

    console = _console()
    head = Text(f"{plural(n_cases, 'eval case')} from {one_line(source, 200)}: candidate ")
    head.append(one_line(report.candidate, 80), "bold")
    if report.traces_path is not None:
        head.append(f" (replayed from {one_line(report.traces_path, 200)})")
    if report.baseline is not None:
        head.append(", baseline ")
        head.append(one_line(report.baseline, 80), "bold")
    console.print(scrub(head))
    if not report.groups:
        console.print(Text("No eval cases: press e on a trace in the TUI, or run `loupe promote TRACE_ID`."))
        console.print(Text("FAIL: nothing was scored.", "bold red"))
        return
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column(Text("group"))
    table.add_column(Text("cases"), justify="right")
    if report.baseline is not None:
        table.add_column(Text(f"baseline {one_line(report.baseline, 24)}"), justify="right")
    table.add_column(Text(f"candidate {one_line(report.candidate, 24)}"), justify="right")
    table.add_column(Text("gate"), justify="right")
    table.add_column(Text("result"))
    table.add_column(Text("note"))
    for g in report.groups:
        verdict = Text("pass", "green") if g.passed else Text("FAIL" if g.required else "fail",
                                                               "bold red" if g.required else "red")
        if not g.required:
            verdict.append(" (not required)", "dim")
        cells = [Text(one_line(g.group, 40)), Text(str(g.cases))]
        if report.baseline is not None:
            cells.append(_rate_text(g.baseline))
        cells += [_rate_text(g.candidate), Text(_pct(g.gate)), verdict, Text(one_line(g.note, 80), "dim")]
        table.add_row(*cells)
    console.print(table)
    for version in dict.fromkeys(v for v in (report.candidate, report.baseline) if v is not None):
        bad = [r for r in report.results_for(version) if r.status != "pass"]
        if bad:
            console.print(scrub(Text(f"Failing and not run on {one_line(version, 80)}:", "bold")))
            for r in bad:
                _print_case(console, r)
    failed = [g for g in report.groups if g.required and not g.passed]
    if report.passed:
        not_run = sum(g.candidate.not_run for g in report.groups)
        console.print(Text(f"PASS: every required group reached its gate on {one_line(report.candidate, 80)}"
                           + (f" ({plural(not_run, 'case')} not run)." if not_run else "."), "green"))
    elif not any(g.candidate.run for g in report.groups):
        console.print(Text(f"FAIL: no case could be scored on {one_line(report.candidate, 80)} (no trace was asked "
                           "a case's request).", "bold red"))
    else:
        console.print(Text(f"FAIL: {plural(len(failed), 'required group')} below the gate: "
                           + ", ".join(one_line(g.group, 40) for g in failed) + ".", "bold red"))


def _print_case(console: Console, r: CaseResult) -> None:
    from rich.text import Text

    from .format import one_line, scrub

    line = Text("  ")
    line.append(one_line(r.status, 8), _STATUS_STYLE.get(r.status, ""))
    line.append("  ")
    line.append(one_line(r.case_id, 20), "bold")
    line.append(f"  {one_line(r.group, 32)} · {one_line(r.name, 70)}")
    if len(r.traces) > 1:
        line.append(f"  ({len(r.failed_by_trace)} of {len(r.traces)} traces fail)", "dim")
    console.print(scrub(line), soft_wrap=True)
    if r.reason:
        console.print(scrub(Text(f"      {one_line(r.reason, 200)}", "dim")), soft_wrap=True)
    for n, (trace_id, failed) in enumerate(r.failed_by_trace.items()):
        if n == SHOWN_TRACES:
            console.print(Text(f"      … and {len(r.failed_by_trace) - n} more traces (--json lists them all)",
                               "dim"))
            break
        said = Text("      ")
        said.append(one_line(trace_id, 34), "bold")
        answer = r.answers.get(trace_id)
        said.append(f" answered {json.dumps(one_line(answer, 200), ensure_ascii=False)}" if answer is not None
                    else " recorded no answer", "dim")
        console.print(scrub(said), soft_wrap=True)
        for f in failed[:SHOWN_FAILURES]:
            console.print(scrub(Text(f"        x {one_line(f, 240)}")), soft_wrap=True)
        if len(failed) > SHOWN_FAILURES:
            console.print(Text(f"        … and {len(failed) - SHOWN_FAILURES} more (--json lists them all)", "dim"))


def register(app: typer.Typer) -> None:
    """Add `evals list|export|run` to the loupe command line."""
    app.add_typer(evals_app, name="evals")
