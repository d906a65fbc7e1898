"""`loupe ingest` stopped by Ctrl+C or killed part way: whole traces only, a store that opens, a re-run that finishes."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import store.importers.parallel as parallel
from store.importers import BATCH, ingest_paths
from store.importers.base import ImportResult
from store.models import Trace
from tui import cli

from .conftest import make_trace

ROOT = Path(__file__).resolve().parents[1]
TRACES = 6000  # enough that the ingest is still running when the first batches have committed


def _big_file(path: Path, n: int = TRACES, pad: int = 0) -> Path:
    with open(path, "w") as fh:
        for i in range(n):
            t = make_trace(i)
            t["id"] = f"trc_big{i:05d}"
            if pad:
                t["metadata"] = {"note": f"{i} " + "lorem ipsum " * (pad // 12)}
            fh.write(json.dumps(t) + "\n")
    return path


# Both ways a file is read: in this process, and (a file past parallel.MIN_BYTES) by worker processes while this
# one writes, in batches of parallel.BATCH.
MODES = {"one process": (0, BATCH), "workers": (4096, parallel.BATCH)}


def _source(tmp_path: Path, mode: str) -> tuple[Path, int]:
    pad, batch = MODES[mode]
    src = _big_file(tmp_path / "big.jsonl", pad=pad)
    assert (src.stat().st_size >= parallel.MIN_BYTES) == (mode == "workers")
    return src, batch


def _committed(db: Path) -> int:
    """Traces committed so far, read as another process would, without writing."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return 0
    try:
        return int(conn.execute("SELECT count(*) FROM traces").fetchone()[0])
    except sqlite3.Error:
        return 0  # not created yet
    finally:
        conn.close()


def _start(db: Path, src: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tui.cli", "ingest", str(src), "--db", str(db)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _children(pid: int) -> list[int]:
    """The processes `pid` started (the ingest's workers), from /proc."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def _gone(pids: list[int], within: float = 10) -> None:
    deadline = time.monotonic() + within
    for pid in pids:
        while True:
            try:
                state = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                break  # ended and reaped
            if "State:\tZ" in state:
                break  # ended, waiting to be reaped by whoever adopted it
            assert time.monotonic() < deadline, f"worker {pid} still running"
            time.sleep(0.05)


def _after_first_batches(proc: subprocess.Popen[str], db: Path, batch: int = BATCH) -> None:
    deadline = time.monotonic() + 60
    while _committed(db) < batch:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no batch was committed within 60 s"
        time.sleep(0.02)


def _check_store(db: Path) -> tuple[int, int]:
    """(traces, steps) after an integrity check; every trace is whole (its one step is there)."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        traces = conn.execute("SELECT count(*) FROM traces").fetchone()[0]
        steps = conn.execute("SELECT count(*) FROM steps").fetchone()[0]
        orphans = conn.execute("SELECT count(*) FROM steps WHERE trace_id NOT IN (SELECT id FROM traces)").fetchone()
        assert orphans[0] == 0
        assert conn.execute("SELECT count(*) FROM traces WHERE steps != 1").fetchone()[0] == 0
    finally:
        conn.close()
    return traces, steps


def _rerun_finishes(db: Path, src: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "tui.cli", "ingest", str(src), "--db", str(db)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"Imported {TRACES:,} traces" in result.stdout
    assert _check_store(db) == (TRACES, TRACES)  # the right total, nothing twice
    ls = subprocess.run([sys.executable, "-m", "tui.cli", "ls", "--db", str(db), "--json"], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
    ids = [row["id"] for row in json.loads(ls.stdout)]
    assert len(ids) == len(set(ids)) == TRACES


@pytest.mark.parametrize(("mode", "signum"), [("one process", signal.SIGINT), ("workers", signal.SIGINT),
                                              ("workers", signal.SIGTERM)])
def test_ctrl_c_stores_whole_batches_says_how_many_and_a_rerun_finishes(tmp_path: Path, mode: str,
                                                                        signum: int) -> None:
    (src, batch), db = _source(tmp_path, mode), tmp_path / "s.db"
    proc = _start(db, src)
    _after_first_batches(proc, db, batch)
    workers = _children(proc.pid)
    assert (len(workers) > 0) == (mode == "workers")
    # To every process of the group, as a terminal's Ctrl+C does, or a supervisor stopping the job (SIGTERM).
    os.killpg(proc.pid, signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, (out, err)
    said = re.search(r"loupe: interrupted: ([\d,]+) traces? stored in (\S+); run the same command again", err)
    assert said is not None, err
    stored = int(said.group(1).replace(",", ""))
    assert said.group(2) == str(db)
    assert "Traceback" not in err
    # What was said is what is there: whole traces, an intact store that opens.
    traces, _ = _check_store(db)
    assert traces == stored and batch <= stored < TRACES
    _gone(workers)
    _rerun_finishes(db, src)


@pytest.mark.parametrize("mode", MODES)
def test_sigkill_leaves_whole_batches_and_a_rerun_finishes(tmp_path: Path, mode: str) -> None:
    (src, batch), db = _source(tmp_path, mode), tmp_path / "s.db"
    proc = _start(db, src)
    _after_first_batches(proc, db, batch)
    workers = _children(proc.pid)
    proc.kill()
    proc.communicate(timeout=60)
    _gone(workers)  # the workers end with the writer, never left waiting for work
    traces, _ = _check_store(db)
    assert traces % batch == 0 and batch <= traces < TRACES  # one transaction per batch: never a part of one
    result = CliRunner().invoke(cli.app, ["ls", "--db", str(db), "--limit", "1"])
    assert result.exit_code == 0, result.output  # the store opens (its WAL is recovered)
    _rerun_finishes(db, src)


def test_a_stop_request_commits_what_was_read_and_says_interrupted(tmp_path: Path) -> None:
    from store.db import Store

    src = _big_file(tmp_path / "t.jsonl", 1200)
    read = 0

    def stop() -> bool:
        nonlocal read
        read += 1
        return read > 700  # asked after the first batch and 200 more traces were read

    with Store(tmp_path / "s.db") as store:
        report = ingest_paths(store, [src, src], stop=stop)
        assert report.interrupted and report.files == 1
        assert report.counts.traces == store.count_traces() == 700


@pytest.mark.parametrize("twice", [False, True])
def test_ctrl_c_in_process_exits_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, twice: bool) -> None:
    """The same, through the command in-process: Ctrl+C once stops after committing, twice stops at once."""
    import store.importers as importers

    src = _big_file(tmp_path / "t.jsonl", 1200)
    real_flush_size = importers.BATCH
    calls = 0
    original = importers.read_path

    def reading(path: Path, fmt: str, result: ImportResult) -> Iterator[Trace]:
        nonlocal calls
        for trace in original(path, fmt, result):
            calls += 1
            if calls == real_flush_size + 100:
                signal.raise_signal(signal.SIGINT)
                if twice:
                    signal.raise_signal(signal.SIGINT)
            yield trace

    monkeypatch.setattr(importers, "read_path", reading)
    db = tmp_path / "s.db"
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN under nohup or a background job
    result = CliRunner().invoke(cli.app, ["ingest", str(src), "--db", str(db)])
    assert result.exit_code == 130, result.output
    assert "interrupted:" in result.output and "run the same command again" in result.output
    traces, _ = _check_store(db)
    # Once: the traces read are committed (the first batch and the 100 after it); twice: the batch being read is
    # dropped and only the committed batch stays.
    assert traces == (real_flush_size if twice else real_flush_size + 100)
    assert f"{traces:,} traces stored" in result.output
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


def test_a_signal_while_workers_start_is_held_not_lost() -> None:
    """Workers are started with SIGINT and SIGTERM blocked; a Ctrl+C pressed meanwhile reaches this process after."""
    got: list[int] = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        with parallel._spawning():
            signal.raise_signal(signal.SIGINT)
            assert got == []  # held while a worker may be starting
        assert got == [signal.SIGINT]  # and delivered right after
    finally:
        signal.signal(signal.SIGINT, before)


def test_workers_leave_sigterm_to_the_writer(tmp_path: Path) -> None:
    """A SIGTERM that reaches a worker (sent to the whole group) does not end it: the writer decides when to stop."""
    (src, batch), db = _source(tmp_path, "workers"), tmp_path / "s.db"
    proc = _start(db, src)
    _after_first_batches(proc, db, batch)
    workers = _children(proc.pid)
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    assert f"Imported {TRACES:,} traces" in out
