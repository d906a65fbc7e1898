"""Importers: each reads one format into the native model. `ingest_paths` detects, reads and stores."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..db import IngestCounts, PreparedTrace, Store
from ..models import Trace
from ..pricing import default_pricer
from ..rules import active_config
from .base import ImportProblem, ImportResult, iter_json_array

FORMATS = ("auto", "native", "otlp", "openinference", "langfuse", "llm")
BATCH = 500  # traces per write transaction: short enough that other writers never wait long


class FormatError(ValueError):
    """The file is not in a format loupe reads, or not in the one asked for."""


def _peek(path: Path, size: int = 65536) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


def detect_format(path: Path) -> str:
    """The format a file looks like, from its first bytes (and its first record, when the bytes don't say)."""
    head = _peek(path)
    if head.startswith(b"SQLite format 3\x00"):
        return "llm"
    if head.startswith(b"\x1f\x8b"):
        return "otlp"  # gzip: the Collector's compressed dumps
    if path.suffix.lower() in (".pb", ".protobuf", ".binpb"):
        return "otlp"  # the binary (protobuf) form of an ExportTraceServiceRequest
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if not text:
        raise FormatError(f"{path}: the file is empty")
    if "\x00" in text[:1024]:
        raise FormatError(f"{path}: a binary file, not JSON or JSON Lines")
    if text[0] not in "[{":
        raise FormatError(f"{path}: not JSON or JSON Lines (starts with {text[:20]!r})")
    probe = text[:8192]
    if '"resourceSpans"' in probe or '"resourceLogs"' in probe or '"resourceMetrics"' in probe:
        return "otlp"
    if '"resource_spans"' in probe:
        return "otlp"
    if '"observations"' in probe and '"trace"' in probe:
        return "langfuse"
    if '"context"' in probe and ('"span_kind"' in probe or '"span_id"' in probe):
        return "openinference"  # Phoenix span records, and the OTel SDK console exporter's output
    if '"context.span_id"' in probe:
        return "openinference"  # Phoenix dataframe rows
    first = _first_record(path)
    if isinstance(first, dict):
        if "resourceSpans" in first or "resource_spans" in first:
            return "otlp"
        if isinstance(first.get("trace"), dict) and "observations" in first:
            return "langfuse"  # an export whose trace input pushed "observations" past the probe
        if isinstance(first.get("observations"), list) and "projectId" in first:
            return "langfuse"  # a trace from Langfuse's API, observations inside
        if "steps" in first or ("id" in first and ("prompt" in first or "input" in first)):
            return "native"
    # The first record may be too long for the peek, or broken: its opening still tells a native trace.
    if first is None and re.search(r'^[\[\s]*\{\s*"(id|steps|name|prompt)"\s*:', probe):
        return "native"
    raise FormatError(f"{path}: cannot tell the format; pass --format")


def _first_record(path: Path) -> object:
    """The first JSON record of a JSON Lines file, a single document, or the first item of an array."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            line = ""
            for line in fh:
                if line.strip():
                    break
            stripped = line.strip().lstrip("\ufeff")
            if stripped.startswith("["):
                # Only the first item is read: a 2 GB array is not loaded to tell its format.
                fh.seek(0)
                return next((item for _, item in iter_json_array(fh)), None)
            if stripped == "{":
                fh.seek(0)
                return json.loads(fh.read())
            return json.loads(stripped)
    except (ValueError, OSError, RecursionError):  # ValueError: also a number too long for Python to read
        return None


def read_path(path: Path, fmt: str, result: ImportResult) -> Iterator[Trace]:
    """Traces from one file in the given format ("auto" detects it)."""
    detected = detect_format(path) if fmt == "auto" or fmt is None else None
    actual = detected or fmt
    if fmt not in (None, "auto"):
        try:
            looks = detect_format(path)
        except FormatError:
            looks = None
        if looks and looks != fmt:
            raise FormatError(f"{path}: --format {fmt} given, but the file looks like {looks}")
    if actual == "native":
        from .native import read_native

        return read_native(path, result)
    if actual in ("otlp", "openinference"):
        from .otlp import read_otlp

        return read_otlp(path, result)
    if actual == "langfuse":
        from .langfuse import read_langfuse

        return read_langfuse(path, result)
    if actual == "llm":
        from .llm_db import read_llm_db

        return read_llm_db(path, result)
    raise FormatError(f"{path}: the {actual} format is not supported yet")


# In a folder, only files with these endings are read; a file named on the command line is always read.
TRACE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".gz", ".db", ".sqlite", ".pb", ".protobuf", ".binpb", ".otlp")


def expand_paths(paths: Iterable[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            for child in sorted(p.rglob("*")):
                if (child.is_file() and not child.name.startswith(".")
                        and child.name.lower().endswith(TRACE_SUFFIXES)):
                    yield child
        else:
            yield p


@dataclass
class IngestReport:
    files: int = 0
    counts: IngestCounts = field(default_factory=IngestCounts)
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_at: dict[str, list[str]] = field(default_factory=dict)
    problems: list[ImportProblem] = field(default_factory=list)
    failed_files: list[str] = field(default_factory=list)
    interrupted: bool = False  # stopped on request (Ctrl+C) after committing what was read; a re-run finishes


def ingest_paths(
    store: Store,
    paths: Iterable[Path],
    fmt: str = "auto",
    *,
    on_file: Callable[[Path], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    workers: int | None = None,
) -> IngestReport:
    """Read every file and store its traces in batches. A bad file or line is reported; the rest still imports.

    When `stop()` turns true, the traces read so far are committed and the report comes back `interrupted`:
    every batch is one transaction, so an ingest stopped or killed at any point leaves whole traces only, and
    running it again finishes the job (a stored trace is updated, never duplicated).

    A large native JSON Lines file is made ready by `workers` processes (None: one per core) while this one
    writes (see importers.parallel); the store is left the same either way."""
    from . import parallel

    workers = parallel.worker_count() if workers is None else workers
    report = IngestReport()
    seen: set[str] = set()  # IDs written by this ingest
    for path in expand_paths(paths):
        if stop is not None and stop():
            report.interrupted = True
            break
        if on_file:
            on_file(path)
        report.files += 1
        result = ImportResult()
        batch: list[Trace] = []

        def flush(path: Path = path) -> None:
            nonlocal batch
            if batch:
                _add(report, store.insert_traces(batch), path, seen)
                if on_batch:
                    on_batch(len(batch))
                batch = []

        ready: list[PreparedTrace] = []
        failed: list[tuple[str, str | None, str]] = []

        def flush_ready(path: Path = path, size: int = 0) -> None:
            """Write what is ready in transactions of `size` traces (0: all of it in one)."""
            nonlocal ready, failed
            while ready or failed:
                if size and len(ready) < size:
                    return
                part, ready = (ready[:size], ready[size:]) if size else (ready, [])
                counts = store.insert_prepared(part)
                counts.failed[:0] = failed
                failed = []
                _add(report, counts, path, seen)
                if on_batch and part:
                    on_batch(len(part))

        try:
            if _in_parallel(store, path, fmt, workers):
                prepared = parallel.read_prepared(path, result, store.rules_config or active_config(), workers)
                try:
                    for chunk_ready, chunk_failed in prepared:
                        ready.extend(chunk_ready)
                        failed.extend(chunk_failed)
                        flush_ready(size=parallel.BATCH)
                        if stop is not None and stop():
                            report.interrupted = True
                            break
                finally:
                    prepared.close()  # the workers stop here, whatever stopped the loop
            else:
                for trace in read_path(path, fmt, result):
                    batch.append(trace)
                    if len(batch) >= BATCH:
                        flush()
                    if stop is not None and stop():
                        report.interrupted = True
                        break
        except FormatError as exc:
            report.problems.append(ImportProblem(str(path), None, None, str(exc).removeprefix(f"{path}: ")))
            report.failed_files.append(str(path))
        except (OSError, UnicodeDecodeError) as exc:
            report.problems.append(ImportProblem(str(path), None, None, f"cannot read: {exc}"))
            report.failed_files.append(str(path))
        except (RecursionError, OverflowError, ValueError, MemoryError, parallel.WorkerFailed) as exc:
            # A reader met something it could not survive (nesting too deep, a number too large): what it read
            # before is still stored, and the rest of the file is reported as not read.
            report.problems.append(ImportProblem(
                str(path), None, None, f"stopped reading ({type(exc).__name__}: {str(exc)[:200]}); what came before "
                "was imported"))
            report.failed_files.append(str(path))
        flush()
        flush_ready()
        for reason, n in result.skipped.items():
            report.skipped[reason] = report.skipped.get(reason, 0) + n
            where = report.skipped_at.setdefault(reason, [])
            where.extend(result.skipped_at.get(reason, [])[: max(0, 3 - len(where))])
        report.problems.extend(result.problems)
        more = getattr(result.problems, "more", 0)
        if more:
            report.problems.append(ImportProblem(str(path), None, None, f"{more:,} more problems not listed"))
        if report.interrupted:
            break
    return report


def _in_parallel(store: Store, path: Path, fmt: str, workers: int) -> bool:
    """Whether a file is worth reading with worker processes: a large native JSON Lines file, priced the default
    way (a store given its own pricer keeps it: the workers could not share it)."""
    from . import parallel
    from .native import layout

    if workers < 2 or fmt not in ("auto", "native", None) or store.pricer is not default_pricer():
        return False
    try:
        if not path.is_file() or path.stat().st_size < parallel.MIN_BYTES:
            return False
        return detect_format(path) == "native" and layout(path) == "lines"
    except (FormatError, OSError):
        return False  # the one-process read says what is wrong with it


def _add(report: IngestReport, more: IngestCounts, path: Path, seen: set[str]) -> None:
    total = report.counts
    # A trace that arrives in parts (merged span by span) counts once, and is "updated" only when it was stored
    # before this ingest began.
    total.traces += more.traces - len(more.ids & seen)
    total.updated += len(more.existed - seen)
    seen |= more.ids
    total.steps += more.steps
    total.findings += more.findings
    total.traces_with_findings += more.traces_with_findings
    for trace_id, source, why in more.failed:
        line = None
        if source and source.rpartition(":")[2].isdigit():
            line = int(source.rpartition(":")[2])
        report.problems.append(ImportProblem(str(path), line, None, f"trace {trace_id!r} {why}"))
    total.failed.extend(more.failed)
