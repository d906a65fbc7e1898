"""Stores that are damaged, not SQLite, newer or older than this loupe, read-only or on a full disk: a clear message
that names the file, exit 3, and the file as it was (an older store is migrated, after a backup)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database
from typer.testing import CliRunner

from store.db import Store, StoreError
from store.migrations import KNOWN, migrations
from store.models import Trace
from tui import cli

from .conftest import SEED, make_trace

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _real_store(path: Path, n: int = 300) -> Path:
    with Store(path) as store:
        store.insert_traces([Trace.model_validate(SEED)])
        for start in range(0, n, 100):
            store.insert_traces([Trace.model_validate(make_trace(i)) for i in range(start, min(n, start + 100))])
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _siblings(path: Path) -> set[str]:
    return {p.name for p in path.parent.iterdir()} - {path.name}


def _refused(args: list[str], db: Path, *words: str) -> str:
    """Run a command that must be refused: exit 3, the file named, the words said, no traceback."""
    result = runner.invoke(cli.app, [*args, "--db", str(db)])
    assert result.exit_code == 3, (args, result.output, result.exception)
    assert str(db) in result.output, result.output
    for word in words:
        assert word in result.output, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # promote writes its case files under ./evals


@pytest.fixture
def traces_file(tmp_path: Path) -> Path:
    path = tmp_path / "more.jsonl"
    path.write_text("".join(json.dumps(make_trace(i)) + "\n" for i in range(1000, 1300)))
    return path


# --------------------------------------------------------------------------- damaged and foreign files


def test_random_bytes_in_the_middle_of_a_real_store(tmp_path: Path) -> None:
    db = _real_store(tmp_path / "s.db")
    size = db.stat().st_size
    with open(db, "r+b") as fh:
        fh.seek(size // 2 - size // 2 % 4096)  # whole pages of noise where the traces' rows are
        fh.write(random.Random(8).randbytes(3 * 4096))
    before, others = _digest(db), _siblings(db)
    for args in (["ls"], ["ls", "--json"], ["check"]):
        _refused(args, db, "damaged", ".recover")
    assert _digest(db) == before and _siblings(db) == others  # no backup, no journal left behind


def test_a_truncated_store(tmp_path: Path, traces_file: Path) -> None:
    db = _real_store(tmp_path / "s.db")
    with open(db, "r+b") as fh:
        fh.truncate(db.stat().st_size // 2)
    before = _digest(db)
    for args in (["ls"], ["show", "trc_7J4k9"], ["ingest", str(traces_file)], ["promote", "trc_7J4k9"]):
        _refused(args, db, "damaged")
    assert _digest(db) == before


@pytest.mark.parametrize("content", [
    b"just some notes, not a database\n" * 200,
    b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(20_000),
])
def test_files_that_are_not_sqlite(tmp_path: Path, content: bytes, traces_file: Path) -> None:
    db = tmp_path / "s.db"
    db.write_bytes(content)
    for args in (["ls"], ["ingest", str(traces_file)], ["serve", "--port", "0"]):
        _refused(args, db, "not a traceloupe store")
    assert db.read_bytes() == content and _siblings(db) == {"more.jsonl"}


def test_a_store_from_a_newer_loupe_from_the_command_line(tmp_path: Path, traces_file: Path) -> None:
    db = _real_store(tmp_path / "s.db", 10)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                 "VALUES ('traceloupe', 'm999_from_the_future', 'x')")
    conn.commit()
    conn.close()
    before = _digest(db)
    for args in (["ls"], ["ingest", str(traces_file)]):
        _refused(args, db, "newer loupe", "m999_from_the_future")
    assert _digest(db) == before


# --------------------------------------------------------------------------- an older store


def _m001_store(path: Path, source: Path) -> None:
    """A store as the first loupe left it: only m001 applied, holding the traces of `source` (copied row by row,
    the columns m001 has)."""
    db = Database(sqlite3.connect(path, isolation_level=None))
    db.conn.execute("PRAGMA journal_mode = WAL")
    migrations.apply(db, stop_before=KNOWN[1])
    db.conn.execute("ATTACH DATABASE ? AS src", (str(source),))
    for table in ("traces", "steps", "findings"):
        cols = ", ".join(r[1] for r in db.conn.execute(f"PRAGMA main.table_info({table})"))
        db.conn.execute(f"INSERT INTO main.{table} ({cols}) SELECT {cols} FROM src.{table}")
    db.conn.execute("DETACH DATABASE src")
    db.conn.close()


def _applied(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")]
    finally:
        conn.close()


def test_an_older_store_is_backed_up_then_migrated_in_place(tmp_path: Path) -> None:
    current = _real_store(tmp_path / "current.db", 50)
    db = tmp_path / "old.db"
    _m001_store(db, current)
    assert _applied(db) == ["m001_initial"]
    result = runner.invoke(cli.app, ["ls", "--json", "--db", str(db)])
    assert result.exit_code == 0, result.output
    backups = sorted(tmp_path.glob("old.db.bak-m001-*"))
    assert len(backups) == 1, list(tmp_path.iterdir())
    backup = backups[0]
    assert "upgraded from an older loupe" in result.output and str(backup) in result.output
    # The backup is the store as it was: only m001, the same traces.
    assert _applied(backup) == ["m001_initial"]
    with contextlib.closing(sqlite3.connect(backup)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM traces").fetchone()[0] == 51
    # The store itself is migrated, its data intact: every trace reads back as the current store has it.
    assert _applied(db) == KNOWN
    for ref in ("trc_7J4k9", "trc_t0042"):
        a = runner.invoke(cli.app, ["show", ref, "--json", "--db", str(current)])
        b = runner.invoke(cli.app, ["show", ref, "--json", "--db", str(db)])
        assert a.exit_code == b.exit_code == 0, b.output
        assert json.loads(a.stdout) == json.loads(b.stdout)
    listed = [row["id"] for row in json.loads(result.stdout)]
    assert len(listed) == 51
    # What later migrations index for existing traces works on the migrated ones (search, version numbers).
    found = runner.invoke(cli.app, ["ls", "--json", "--search", "trc_7J4k9", "--db", str(db)])
    assert [row["id"] for row in json.loads(found.stdout)] == ["trc_7J4k9"]
    # Opened again: nothing to migrate, no second backup, no message.
    again = runner.invoke(cli.app, ["ls", "--db", str(db)])
    assert again.exit_code == 0 and "upgraded" not in again.output
    assert len(list(tmp_path.glob("old.db.bak-*"))) == 1


def test_an_older_store_that_cannot_be_backed_up_is_not_migrated(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    current = _real_store(tmp_path / "current.db", 5)
    db = tmp_path / "old.db"
    _m001_store(db, current)
    before = _digest(db)
    real_connect = sqlite3.connect

    def no_backup(target: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if ".bak-" in str(target):
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(target, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", no_backup)
    with pytest.raises(StoreError, match="could not be written") as caught:
        Store(db)
    monkeypatch.undo()
    assert str(db) in str(caught.value) and "nothing was changed" in str(caught.value)
    assert _applied(db) == ["m001_initial"] and _digest(db) == before
    assert not list(tmp_path.glob("old.db.bak-*"))


# --------------------------------------------------------------------------- read-only


@contextlib.contextmanager
def _mode(path: Path, mode: int) -> Iterator[None]:
    old = path.stat().st_mode & 0o777
    path.chmod(mode)
    try:
        yield
    finally:
        path.chmod(old)


def test_a_read_only_store_file_reads_and_refuses_writes(tmp_path: Path, traces_file: Path) -> None:
    db = _real_store(tmp_path / "s.db", 20)
    before = _digest(db)
    with _mode(db, 0o444):
        shown = runner.invoke(cli.app, ["show", "trc_7J4k9", "--db", str(db)])
        assert shown.exit_code == 0, shown.output
        listed = runner.invoke(cli.app, ["ls", "--json", "--db", str(db)])
        assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 21
        for args in (["ingest", str(traces_file)], ["promote", "trc_7J4k9"], ["serve", "--port", "0"]):
            _refused(args, db, "read-only", "nothing was changed")
        with pytest.raises(StoreError, match="read-only"), Store(db) as store:
            store.insert_traces([Trace.model_validate(make_trace(5000))])
    assert _digest(db) == before
    assert not (tmp_path / "evals").exists()  # promote wrote no case file either (the working directory)


def test_a_store_in_a_read_only_folder_reads_and_refuses_writes(tmp_path: Path, traces_file: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    db = _real_store(folder / "s.db", 20)
    before = _digest(db)
    with _mode(folder, 0o555):
        listed = runner.invoke(cli.app, ["ls", "--json", "--db", str(db)])
        assert listed.exit_code == 0, listed.output
        assert len(json.loads(listed.stdout)) == 21
        assert sorted(p.name for p in folder.iterdir()) == ["s.db"]  # no -wal or -shm made beside it
        _refused(["ingest", str(traces_file)], db, "read-only")
        _refused(["ingest", str(traces_file)], folder / "new.db", "cannot create", "read-only")  # nor a new one
    assert _digest(db) == before


def test_an_older_store_that_is_read_only_is_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    _m001_store(db, _real_store(tmp_path / "current.db", 5))
    before = _digest(db)
    with _mode(db, 0o444):
        _refused(["ls"], db, "older loupe", "read-only", "untouched")
    assert _digest(db) == before and not list(tmp_path.glob("old.db.bak-*"))


def _can_mount() -> bool:
    return sys.platform == "linux" and os.geteuid() == 0 and Path("/bin/mount").exists()


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.skipif(not _can_mount(), reason="needs root to mount a real read-only file system")
def test_a_store_on_a_read_only_mount(tmp_path: Path, traces_file: Path) -> None:
    with _tmpfs(tmp_path / "mnt", "16m") as mnt:
        db = _real_store(mnt / "s.db", 20)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        before = _digest(db)
        listed = runner.invoke(cli.app, ["ls", "--json", "--db", str(db)])
        assert listed.exit_code == 0, listed.output
        assert len(json.loads(listed.stdout)) == 21
        _refused(["ingest", str(traces_file)], db, "read-only")
        assert _digest(db) == before


# --------------------------------------------------------------------------- a full disk


def test_a_full_disk_refuses_the_write_and_leaves_the_file_as_it_was(tmp_path: Path, traces_file: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db = _real_store(tmp_path / "s.db", 20)
    before = _digest(db)

    class FullDisk(Store):
        """The store on a disk with room for two more pages: SQLite answers SQLITE_FULL as on a real one."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
            self.conn.execute(f"PRAGMA max_page_count = {pages + 2}")

    monkeypatch.setattr(cli, "Store", FullDisk)
    out = _refused(["ingest", str(traces_file)], db, "the disk is full", "nothing of it was stored")
    assert "0 traces had been stored" in out
    monkeypatch.undo()
    assert _digest(db) == before
    with Store(db) as store:
        assert store.count_traces() == 21 and not store.list_cases()
        assert store.conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.skipif(not _can_mount(), reason="needs root to mount a small tmpfs that fills up")
def test_a_really_full_disk_keeps_whole_batches(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    with open(big, "w") as fh:
        for i in range(3000):
            t = make_trace(i)
            t["output"] = f"answer {i} " + "x" * 600
            fh.write(json.dumps(t) + "\n")
    with _tmpfs(tmp_path / "mnt", "2m") as mnt:
        db = mnt / "s.db"
        result = subprocess.run([sys.executable, "-m", "tui.cli", "ingest", str(big), "--db", str(db)], cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 3, result.stderr
        assert f"loupe: {db}: the disk is full" in result.stderr and "Traceback" not in result.stderr
        said = result.stderr.split("loupe: ")[-1]
        stored = int(said.split(" trace")[0].replace(",", ""))
        with Store(db) as store:
            assert store.conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert store.count_traces() == stored < 3000
