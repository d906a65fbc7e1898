"""The `loupe` command line: each command builds the store (and the app, for the TUI) and nothing more."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from store.db import AmbiguousTraceId, Store, StoreError, TraceFilter, TraceNotFound, store_failure

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

EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INPUT = 3


class _LoupeGroup(TyperGroup):
    """`loupe TRACE_ID` and `loupe --prompt-version v7` mean `loupe open ...`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] == "--db" and len(args) > 2 and args[2] in self.commands:
            args = [args[2], "--db", args[1], *args[3:]]
        elif not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            if not (args and args[0] in ("--install-completion", "--show-completion")):
                args = ["open", *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        # A store that fails after it opened (damaged pages found by a query, a full disk, a file made read-only)
        # ends any command the same way: a message naming the file, exit 3, never a traceback or exit 1.
        _opened.clear()
        _verdict[0] = 0
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # a reader that left shows here, not in Python's own flush at exit
            return result
        except BrokenPipeError as exc:
            # `loupe ls | head`: the reader left early, which is not an error (click would exit 1). Stdout is
            # pointed at /dev/null so the flush at exit does not fail again.
            import os

            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError):
                pass  # not a real file (a test runner's capture): nothing flushes it at exit
            finally:
                os.close(devnull)
            raise typer.Exit(_verdict[0]) from exc
        except StoreError as exc:
            _err(str(exc))
            raise typer.Exit(EXIT_INPUT) from exc
        except sqlite3.DatabaseError as exc:
            where = _opened[-1].path if _opened else Path("the store")
            _err(str(store_failure(where, exc)))
            raise typer.Exit(EXIT_INPUT) from exc
        finally:
            for store in _opened:
                store.close()  # closed when the command ends, whatever happened: nothing is left half-open
            _opened.clear()


_opened: list[Store] = []  # the stores this invocation opened, to name the file when one fails later
# The exit code a command has decided on before it prints (check, evals run, gate): a reader that leaves early
# (`| head`) must not turn a failed gate into exit 0.
_verdict: list[int] = [0]


def verdict_before_printing(code: int) -> None:
    _verdict[0] = code


app = typer.Typer(
    cls=_LoupeGroup,
    help="traceloupe: a terminal debugger for the traces of LLM applications.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

def _err(message: str) -> None:
    from .format import inert

    sys.stderr.write("loupe: " + inert(message) + "\n")


def _open_store(db: Path | None, *, create: bool = False) -> Store:
    """The store. A store named with --db must exist unless the command writes traces (ingest, demo, serve); the
    default store is created on first use. Commands that write traces run the rules with the configuration in the
    working directory (loupe.toml, or [tool.loupe] in pyproject.toml)."""
    from store.config import ConfigError, load_config

    try:
        config = load_config() if create else None
    except ConfigError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_INPUT) from exc
    try:
        store = Store(db, create=create or db is None, rules_config=config)
    except StoreError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_INPUT) from exc
    _opened.append(store)
    for notice in store.notices:
        _err(notice)
    if create and store.read_only:
        # Commands that write say so before they start rather than after reading their input.
        store.close()
        _err(f"{store.path}: the store cannot be written: the file or its folder is read-only; nothing was changed")
        raise typer.Exit(EXIT_INPUT)
    return store


def _filter(
    prompt_version: list[str] | None, prompt: str | None, model: str | None, status: str | None,
    violations: bool, rule: str | None, search: str | None, since: str | None, until: str | None,
) -> TraceFilter:
    if status not in (None, "ok", "error"):
        _err(f"--status must be ok or error, not {status!r}")
        raise typer.Exit(EXIT_USAGE)
    from store.rules import RULES

    if rule is not None and rule not in RULES:
        _err(f"--rule {rule!r} is not a rule; `loupe rules` lists them: {', '.join(RULES)}")
        raise typer.Exit(EXIT_USAGE)
    flt = TraceFilter(prompt_versions=list(prompt_version or []), prompt=prompt, model=model, status=status,
                      violations=violations, rule=rule, search=search, since=since, until=until)
    try:
        flt.where()
    except ValueError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_USAGE) from exc
    return flt


def _resolve(store: Store, ref: str) -> str:
    from .format import inert

    if not ref.strip():
        _err("a trace ID cannot be empty")
        raise typer.Exit(EXIT_USAGE)
    try:
        return store.resolve_id(ref)
    except AmbiguousTraceId as exc:
        _err(f"{ref!r} matches more than one trace; give more of the ID:")
        for c in exc.candidates[:10]:
            sys.stderr.write("  " + inert(c) + "\n")
        if len(exc.candidates) > 10:
            sys.stderr.write("  …\n")
        raise typer.Exit(EXIT_FINDINGS) from exc
    except TraceNotFound as exc:
        _err(f"no trace with ID {ref!r} in {store.path}")
        raise typer.Exit(EXIT_FINDINGS) from exc


def _run_tui(store: Store, trace_id: str | None, flt: TraceFilter) -> None:
    from .app import make_app

    make_app(store, trace_id=trace_id, flt=flt, evals_dir=Path("evals")).run()


@app.command("open")
def open_(
    trace_id: Annotated[str | None, typer.Argument(help="A trace ID or a unique prefix of one.")] = None,
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
) -> None:
    """Open the TUI: the trace list, or straight at one trace."""
    flt = _filter(prompt_version, prompt, model, status, violations, rule, search, since, until)
    store = _open_store(db)
    resolved = _resolve(store, trace_id) if trace_id else None
    _run_tui(store, resolved, flt)


@app.command()
def demo(
    db: DbOpt = None,
    prompt_version: VersionOpt = None,
) -> None:
    """Build a demo store from the bundled sample traces and open the TUI on it."""
    from sample_traces import files
    from store.importers import ingest_paths

    if db is None:
        from platformdirs import user_data_path

        db = user_data_path("traceloupe", appauthor=False) / "demo.db"
    store = _open_store(db, create=True)
    report = ingest_paths(store, files())
    if report.problems:
        for p in report.problems:
            _err(str(p))
        raise typer.Exit(EXIT_INPUT)
    _run_tui(store, None, TraceFilter(prompt_versions=list(prompt_version or [])))


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to import.", show_default=False)],
    db: DbOpt = None,
    fmt: Annotated[
        str, typer.Option("--format", help="auto, native, otlp, openinference, langfuse or llm.")
    ] = "auto",
) -> None:
    """Import trace files into the store. Re-importing a trace updates it; it never duplicates."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from store.importers import FORMATS, expand_paths, ingest_paths

    from .format import inert, plural, stdout_console

    if fmt not in FORMATS:
        _err(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        raise typer.Exit(EXIT_USAGE)
    missing = [p for p in paths if not p.exists()]
    for p in missing:
        _err(f"{p}: no such file or folder")
    store = _open_store(db, create=True)
    files = list(expand_paths(p for p in paths if p.exists()))
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("files · {task.fields[traces]:,} traces stored"), console=console,
                  transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("importing", total=len(files), traces=0)
        stored = 0
        before = store.count_traces()
        started = 0

        stopper = _StopOnSignal()

        def on_file(path: Path) -> None:
            nonlocal started
            stopper.immediate = not path.is_file()
            # The bar counts files finished; the name is the file being read now.
            progress.update(task, description=inert(path.name)[:40], completed=started)
            started += 1

        def on_batch(n: int) -> None:
            nonlocal stored
            stored += n
            progress.update(task, traces=stored)

        with stopper as stop:
            try:
                report = ingest_paths(store, files, fmt, on_file=on_file, on_batch=on_batch, stop=stop.requested)
            except KeyboardInterrupt as exc:
                # Asked twice: stopped at once. The batch being written was rolled back (or had just committed:
                # the store's count says), those before it stay.
                stored = max(stored, store.count_traces() - before)
                progress.stop()
                _err(f"interrupted: {plural(stored, 'trace')} stored in {store.path}; run the same command again "
                     "to finish (a stored trace is updated, never duplicated)")
                raise typer.Exit(128 + (stop.signum or 2)) from exc
            except StoreError as exc:
                progress.stop()
                _err(str(exc))
                _err(f"{plural(stored, 'trace')} had been stored in {store.path} before that")
                raise typer.Exit(EXIT_INPUT) from exc
        progress.update(task, completed=len(files))
    out = stdout_console(soft_wrap=True)
    c = report.counts
    out.print(
        f"Imported {plural(c.traces, 'trace')} ({plural(c.steps, 'step')}) from {plural(report.files, 'file')} "
        f"into {inert(str(store.path))}"
        + (f"; {c.updated} already stored, updated" if c.updated else ""),
        markup=False,
    )
    if c.traces:
        out.print(
            f"Findings: {plural(c.findings, 'finding')} in {plural(c.traces_with_findings, 'trace')}"
            + (" (loupe ls --violations lists them)" if c.findings else ""),
            markup=False,
        )
    for reason, n in sorted(report.skipped.items()):
        where = report.skipped_at.get(reason) or []
        at = f" (at {', '.join(inert(w) for w in where)}{', …' if n > len(where) else ''})" if where else ""
        out.print(f"Skipped {plural(n, 'record')}: {inert(reason)}{at}", markup=False)
    for problem in report.problems:
        _err(str(problem))
    if report.interrupted:
        _err(f"interrupted: {plural(c.traces, 'trace')} stored in {store.path}; run the same command again to "
             "finish (a stored trace is updated, never duplicated)")
        raise typer.Exit(128 + (stop.signum or 2))
    if report.problems or missing:
        raise typer.Exit(EXIT_INPUT)


class _StopOnSignal:
    """Ctrl+C (or SIGTERM) during an ingest: the first asks it to stop once the traces read so far are committed;
    a second stops it at once (the batch being written is rolled back). Exit code 128 + the signal, as shells do."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        # Reading a pipe or FIFO can wait for ever for its writer: there the first signal stops at once.
        self.immediate = False

    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None or self.immediate:
            self.signum = self.signum or signum
            raise KeyboardInterrupt
        self.signum = signum
        _err("stopping once the traces read so far are stored (Ctrl+C again stops now)")

    def __enter__(self) -> _StopOnSignal:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@app.command("ls")
def ls(
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
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many traces.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """One line per trace, newest first."""
    flt = _filter(prompt_version, prompt, model, status, violations, rule, search, since, until)
    store = _open_store(db)
    rows = store.iter_traces(flt)
    if as_json:
        sys.stdout.write("[")
        for i, row in enumerate(rows):
            if limit is not None and i >= limit:
                break
            sys.stdout.write(("," if i else "") + "\n" + json.dumps(row.model_dump(mode="json"), ensure_ascii=True))
        sys.stdout.write("\n]\n")
        return
    from .render import print_trace_lines

    print_trace_lines(rows, limit)


@app.command()
def show(
    trace_id: Annotated[str, typer.Argument(help="A trace ID or a unique prefix of one.")],
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The trace step by step, with tokens, costs, latency and findings, without the TUI."""
    store = _open_store(db)
    stored = store.get_trace(_resolve(store, trace_id))
    if as_json:
        from .render import trace_json

        # ASCII-only JSON: DEL, C1 and bidi characters from a trace reach the terminal as \\u escapes.
        sys.stdout.write(json.dumps(trace_json(stored), indent=2, ensure_ascii=True) + "\n")
        return
    from .render import print_trace

    print_trace(stored)


@app.command()
def promote(
    trace_id: Annotated[str, typer.Argument(help="A trace ID or a unique prefix of one.")],
    db: DbOpt = None,
    evals_dir: Annotated[Path, typer.Option("--evals-dir", help="Where case files are written.")] = Path("evals"),
    config: Annotated[
        Path | None,
        typer.Option("--config", help="A loupe.toml (or pyproject.toml with [tool.loupe]) for masking patterns, "
                     "groups and the escalation tool. Default: the one in the working directory, if any."),
    ] = None,
) -> None:
    """Turn a trace into an eval case (the same as `e` in the TUI)."""
    from store.evals import EvalsDirError
    from store.evals import promote as do_promote

    from .check_cmd import _load_config
    from .format import inert

    cfg = _load_config(config)
    store = _open_store(db)
    try:
        result = do_promote(store, _resolve(store, trace_id), evals_dir, config=cfg)
    except (EvalsDirError, OSError) as exc:
        _err(str(exc) if isinstance(exc, EvalsDirError) else f"{evals_dir}: cannot be written ({exc})")
        raise typer.Exit(EXIT_INPUT) from exc
    where = f" ({inert(str(result.path))})" if result.path else ""
    if result.created:
        print(f"Eval case {result.case_id} saved: {inert(str(result.path))}")
    elif result.restored:
        print(f"Already a case: {result.case_id}; its file was missing and is written again{where}")
    else:
        print(f"Already a case: {result.case_id}{where}")


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="The address to listen on. Loopback only by default: the "
                                                     "receiver has no authentication.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The port to listen on (4318: OTLP/HTTP's own).")] = 4318,
    db: DbOpt = None,
    max_body: Annotated[str, typer.Option(
        "--max-body", help="The largest request body taken, before and after decompression: bytes, or with K, M "
                           "or G (binary). Larger requests are refused with 413.")] = "64M",
) -> None:
    """Receive OTLP/HTTP traces (POST /v1/traces, JSON or protobuf) into the store until Ctrl+C."""
    import signal
    import threading
    import time

    from store.server import OTLPServer, Outcome, is_loopback, parse_size

    from .format import inert, plural

    if not 0 <= port <= 65535:
        _err(f"--port must be between 0 and 65535, not {port}")
        raise typer.Exit(EXIT_USAGE)
    try:
        body_limit = parse_size(max_body)
    except ValueError as exc:
        _err(f"--max-body: {exc}")
        raise typer.Exit(EXIT_USAGE) from exc
    store = _open_store(db, create=True)
    printing = threading.Lock()
    totals = {"requests": 0, "spans": 0}

    def say(line: str, *, err: bool = False) -> None:
        with printing:
            stream = sys.stderr if err else sys.stdout
            stream.write(line + "\n")
            stream.flush()

    def on_request(o: Outcome) -> None:
        now = time.strftime("%H:%M:%S")
        peer = inert(o.peer, keep_newlines=False)
        if o.received is None:
            say(f"{now} {peer} {o.method} {inert(o.path, keep_newlines=False)[:80]}: {o.status} "
                f"{inert(o.error or '', keep_newlines=False)[:300]}", err=True)
            return
        r = o.received
        with printing:  # handler threads report at once
            totals["requests"] += 1
            totals["spans"] += r.stored
        if r.signal == "logs":
            line = f"{now} {peer} {plural(r.stored, 'GenAI log record')} kept for {plural(r.traces, 'trace')}"
        else:
            line = f"{now} {peer} {plural(r.traces, 'trace')}, {plural(r.stored, 'span')} stored"
        if r.rejected:
            line += f", {plural(r.rejected, 'span')} left out"
        say(line)
        for problem in r.problems[:5]:
            say(f"  {inert(problem, keep_newlines=False)[:300]}", err=True)
        if len(r.problems) > 5:
            say(f"  … and {len(r.problems) - 5} more problems", err=True)

    try:
        server = OTLPServer(host, port, store, on_request=on_request, max_body=body_limit)
    except OSError as exc:
        _err(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        store.close()
        raise typer.Exit(EXIT_USAGE) from exc
    if not is_loopback(host):
        _err(f"warning: listening on {host}, not loopback: anyone who can reach this machine on port {port} can "
             "write traces into the store (there is no authentication)")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    say(f"Receiving OTLP/HTTP traces at {server.url} (and GenAI log events at /v1/logs) into "
        f"{inert(str(store.path))}")
    say(f"Exporters: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={server.url} (JSON or protobuf, gzip or not). "
        "Ctrl+C stops.")
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        # Requests being committed are answered before the store closes; idle connections are just dropped.
        server.wait_idle(timeout=30)
        store.close()
    say(f"Stopped: {plural(totals['spans'], 'span')} from {plural(totals['requests'], 'request')} stored in "
        f"{inert(str(store.path))}")


@app.command()
def schema(db: DbOpt = None) -> None:
    """Print the JSON Schema of the native format: one trace, as one line of a JSON Lines file."""
    del db  # accepted like on every command; the schema does not depend on the store
    from store.models import Trace

    doc = Trace.model_json_schema()
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **doc,
        "title": "traceloupe native trace",
        "description": "One trace per line of a JSON Lines file (or one JSON array of them). Fields not listed "
        "here are kept in metadata.",
    }
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def _register_more() -> None:
    from .check_cmd import register
    from .evals_cmd import register as register_evals
    from .versions_cmd import register as register_versions

    register(app)
    register_evals(app)
    register_versions(app)


_register_more()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
