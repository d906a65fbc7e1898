"""Native JSON Lines made ready for the store by worker processes while this process writes.

Reading, validating, pricing and running the rules cost two to three times what SQLite's inserts do, and all of it
is Python: one process cannot use a second core. So a large native file is cut at line ends into chunks, and each
worker turns a chunk into the rows the store keeps (PreparedTrace) with the problems it met, by line number. The
results are written in file order, in batches of BATCH traces, so the store ends up as a one-process ingest leaves
it; only the work before the write is spread out.
"""

from __future__ import annotations

import io
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import types
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import Config
from ..db import PreparedTrace, prepare_trace
from ..pricing import Pricer
from .base import ImportProblem, ImportResult
from .native import read_line

CHUNK_BYTES = 1 << 20  # about a hundred traces of realistic size: enough work to be worth a trip to a worker
MIN_BYTES = 16 << 20  # smaller files are read here: starting the workers (a few tenths of a second) is not worth it
MAX_WORKERS = 4
AHEAD = 24  # chunks given out before their results are taken: work for the workers through a whole batch's write
BATCH = 1_000  # traces per write transaction: the writer does little else here, and each commit costs

Failed = tuple[str, str | None, str]  # (trace ID, source, why), as IngestCounts.failed


def worker_count() -> int:
    """Workers worth starting: one per core this process may use (at most MAX_WORKERS); 1 means none."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def chunks(path: Path) -> Iterator[tuple[str, int, bytes]]:
    """(file name, number of the chunk's first line, bytes) for a file cut after line ends, about CHUNK_BYTES each.

    Lines are counted as the text reader counts them (a lone CR ends a line too), so that the workers' line
    numbers are the ones a one-process read reports."""
    name = str(path)
    line = 1
    parts: list[bytes] = []
    with open(path, "rb") as fh:
        while True:
            block = fh.read(CHUNK_BYTES)
            if not block:
                if parts:
                    yield name, line, b"".join(parts)
                return
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                # No LF at all: lines may end with a lone CR (old Mac files). One not at the block's end cannot be
                # the first half of a CRLF, so the chunk may end there.
                cut = block.rfind(b"\r", 0, len(block) - 1) + 1
            if cut == 0:
                parts.append(block)  # one line longer than a chunk: kept whole
                continue
            piece = b"".join([*parts, block[:cut]])
            parts = [block[cut:]] if cut < len(block) else []
            yield name, line, piece
            line += piece.count(b"\n")
            if b"\r" in piece:
                line += piece.count(b"\r") - piece.count(b"\r\n")


_WORKER: tuple[Config | None, Pricer] | None = None


def _start_worker(config: Config | None) -> None:
    # Ctrl+C, and a SIGTERM sent to the whole group (a supervisor stopping the job), reach every process; stopping
    # is the main process's job (it commits what it has and says so), so the workers carry on until it ends them.
    # They were started with SIGINT blocked (see _spawning): ignored from here on, then let through.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    # The writer is the one process that cannot be split: the workers yield the CPU to it whenever it can write.
    try:
        os.nice(19)
    except (AttributeError, OSError):
        pass
    # A writer killed outright (SIGKILL, out of memory) cannot stop its workers: each one ends when it sees its
    # parent gone, instead of waiting for work forever.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_end_with, args=(parent.sentinel,), daemon=True).start()
    global _WORKER
    _WORKER = (config, Pricer())


def _end_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def prepare_chunk(task: tuple[str, int, bytes]) -> tuple[list[PreparedTrace], list[Failed], list[ImportProblem],
                                                          int, BaseException | None]:
    """In a worker: the prepared traces of one chunk, the ones that cannot be stored, the problems met (and how
    many more were not kept), and the error that stopped the reading, if one did."""
    assert _WORKER is not None
    config, pricer = _WORKER
    name, first, data = task
    result = ImportResult()
    ready: list[PreparedTrace] = []
    failed: list[Failed] = []
    try:
        for offset, line in enumerate(io.StringIO(data.decode("utf-8", errors="replace"), newline=None)):
            trace = read_line(line, name, first + offset, result)
            if trace is None:
                continue
            try:
                ready.append(prepare_trace(trace, pricer, config))
            except (ValueError, OverflowError, UnicodeError) as exc:
                failed.append((trace.id, trace.source, f"cannot be stored: {exc}"))
    except (RecursionError, OverflowError, ValueError, MemoryError) as exc:
        # What a one-process read would stop at: the traces before it are kept, the error raised in the main one.
        return ready, failed, list(result.problems), getattr(result.problems, "more", 0), exc
    return ready, failed, list(result.problems), getattr(result.problems, "more", 0), None


class WorkerFailed(RuntimeError):
    """A worker process ended without finishing its chunk (killed, or out of memory)."""


@contextmanager
def _spawning() -> Iterator[None]:
    """Around anything that may start a worker. SIGINT and SIGTERM are blocked meanwhile, not ignored: a worker
    starts with them blocked (the mask is inherited), so a Ctrl+C before its own setup cannot kill it, while this
    process still gets a signal sent then, as soon as they are let through again. And the caller's `__main__` is
    hidden: a spawned process would otherwise run it again (a script that calls ingest at its top level would ingest
    in every worker too). The workers need nothing from it: all they run is in this module."""
    blocking = hasattr(signal, "pthread_sigmask")
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if blocking else None
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main
        if before is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)


def read_prepared(path: Path, result: ImportResult, config: Config | None,
                  workers: int) -> Generator[tuple[list[PreparedTrace], list[Failed]], None, None]:
    """The prepared traces of a native JSON Lines file, chunk by chunk in file order, with those that cannot be
    stored; the problems go into `result`. Closing the iterator early stops the workers."""
    # Spawned, not forked: no copy of a process that holds an open SQLite connection and other threads.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(config,))
    try:
        pending: deque[Future[Any]] = deque()
        for task in chunks(path):
            with _spawning():
                pending.append(pool.submit(prepare_chunk, task))
            if len(pending) >= AHEAD:  # the workers keep on while the writer writes; memory holds these, not the file
                yield from _take(pending.popleft(), result)
        while pending:
            yield from _take(pending.popleft(), result)
    finally:
        # Chunks not started are dropped; one being read finishes (a fraction of a second) and its worker ends.
        pool.shutdown(wait=False, cancel_futures=True)


def _take(future: Future[Any], result: ImportResult) -> Iterator[tuple[list[PreparedTrace], list[Failed]]]:
    try:
        ready, failed, problems, more, stopped = future.result()
    except BrokenProcessPool as exc:
        raise WorkerFailed(f"a worker process ended unexpectedly ({exc})") from None
    result.problems.extend(problems)
    if more and hasattr(result.problems, "more"):
        result.problems.more += more
    yield ready, failed  # the traces before a line that stopped the reading are kept, as a one-process read does
    if stopped is not None:
        raise stopped
