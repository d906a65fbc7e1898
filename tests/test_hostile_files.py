"""Hostile files (issue 8): empty, truncated JSON (lines and arrays), binary, a folder with an unreadable file, huge
files streamed. A clear message naming file and line; everything readable still imported."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import store.importers.base as base
from store.importers.base import MAX_PROBLEMS, ImportResult
from store.importers.native import read_native
from tests.fixtures.hostile.traces import cli, tool, trace


def _line(tid: str) -> str:
    return json.dumps(trace(tid, [tool("a")])) + "\n"


def _ingest(tmp_path: Path, *paths: Path) -> tuple[int, str, list[str]]:
    from typer.testing import CliRunner

    from tui import cli as cli_module

    db = tmp_path / "f.db"
    result = CliRunner().invoke(cli_module.app, ["ingest", *map(str, paths), "--db", str(db)])
    ids = []
    if db.exists():
        code, out = cli("ls", "--db", str(db), "--json")
        ids = sorted(r["id"] for r in json.loads(out))
    return result.exit_code, result.stdout + result.stderr, ids


def test_an_empty_file_is_named_and_the_others_still_import(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    good = tmp_path / "good.jsonl"
    good.write_text(_line("trc_1"))
    code, out, ids = _ingest(tmp_path, empty, good)
    assert code == 3 and f"{empty}: the file is empty" in out
    assert ids == ["trc_1"]


def test_truncated_json_lines_keep_every_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_text(_line("trc_1") + _line("trc_2") + _line("trc_3")[:40])
    code, out, ids = _ingest(tmp_path, path)
    assert code == 3 and f"{path}:3: invalid JSON" in out
    assert ids == ["trc_1", "trc_2"]


def test_a_truncated_array_keeps_every_whole_trace(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    text = json.dumps([trace(f"trc_{i}", [tool("a")]) for i in range(3)], indent=2)
    path.write_text(text[: text.rindex('"trc_2"') + 3])
    code, out, ids = _ingest(tmp_path, path)
    assert code == 3 and "invalid JSON" in out
    lines = text[: text.rindex('"trc_2"')].count("\n")
    assert f"{path}:{lines + 2}:" in out or f"{path}:{lines + 1}:" in out, out
    assert ids == ["trc_0", "trc_1"]


def test_a_binary_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "image.jsonl"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    good = tmp_path / "good.jsonl"
    good.write_text(_line("trc_1"))
    code, out, ids = _ingest(tmp_path, path, good)
    assert code == 3 and f"{path}: " in out and "binary" in out
    assert ids == ["trc_1"]


def test_an_unreadable_file_in_a_folder_is_named_and_the_rest_imported(tmp_path: Path) -> None:
    folder = tmp_path / "traces"
    folder.mkdir()
    (folder / "a.jsonl").write_text(_line("trc_a"))
    locked = folder / "b.jsonl"
    locked.write_text(_line("trc_b"))
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root (or with CAP_DAC_OVERRIDE): a chmod 000 file is still readable")
        code, out, ids = _ingest(tmp_path, folder)
        assert code == 3 and str(locked) in out and "Permission denied" in out
        assert ids == ["trc_a"]
    finally:
        locked.chmod(0o644)


def test_a_folder_of_bad_and_good_files(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "1-empty.jsonl").write_text("")
    (folder / "2-binary.json").write_bytes(b"\x00\x01\x02" * 100)
    (folder / "3-cut.json").write_text('[{"id": "trc_x", "steps": [')
    (folder / "4-good.jsonl").write_text(_line("trc_good"))
    (folder / "5-notes.txt").write_text("not a trace file: never read from a folder")
    code, out, ids = _ingest(tmp_path, folder)
    assert code == 3
    assert "1-empty.jsonl: the file is empty" in out and "2-binary.json: a binary file" in out
    assert "3-cut.json:1: invalid JSON" in out and "5-notes" not in out
    assert ids == ["trc_good"]


class _CountingFile:
    """Wraps a text file and records the most characters it was ever ahead of the reader's current record."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.read_chars = 0

    def read(self, n: int = -1) -> str:
        assert n >= 0, "the whole file was asked for"
        data: str = self.fh.read(n)
        self.read_chars += len(data)
        return data


def test_a_json_array_is_read_one_item_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The streaming property for a big array export, without writing gigabytes: with 64 KiB chunks, the first
    trace of a 20 MB array is yielded after reading one chunk, and memory holds one chunk and one item."""
    monkeypatch.setattr(base, "ARRAY_CHUNK", 1 << 16)
    path = tmp_path / "big.json"
    item = trace("trc_{}", [tool("a", result="x" * 2000)])
    text = json.dumps(item)
    with open(path, "w") as fh:
        fh.write("[")
        for i in range(8000):  # about 20 MB
            fh.write(("," if i else "") + text.replace("trc_{}", f"trc_{i}"))
        fh.write("]")
    assert path.stat().st_size > 18_000_000
    with open(path, encoding="utf-8") as raw:
        counted = _CountingFile(raw)
        items = base.iter_json_array(counted)  # type: ignore[arg-type]
        _, first = next(items)
        assert first["id"] == "trc_0" and counted.read_chars <= 1 << 16
        n = 1 + sum(1 for _ in items)
    assert n == 8000 and counted.read_chars == path.stat().st_size


def test_json_lines_are_read_one_line_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with open(path, "w") as fh:
        for i in range(5000):
            fh.write(_line(f"trc_{i}").replace('"result": {"status": "shipped"}', '"result": "' + "y" * 2000 + '"'))
    result = ImportResult()
    reader = read_native(path, result)
    first = next(reader)
    assert first.id == "trc_0"
    # The file object is the reader's; what it buffered is its read-ahead (8 KiB chunks), not the 10 MB file.
    frame = reader.gi_frame
    assert frame is not None
    fh = frame.f_locals["fh"]
    assert fh.buffer.tell() < 1 << 20 < path.stat().st_size
    assert 1 + sum(1 for _ in reader) == 5000


def test_problems_in_a_hopeless_file_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "garbage.jsonl"
    path.write_text(_line("trc_ok") + "{not json}\n" * (MAX_PROBLEMS + 500))
    code, out, ids = _ingest(tmp_path, path)
    assert code == 3 and ids == ["trc_ok"]
    assert out.count("invalid JSON") == MAX_PROBLEMS
    assert f"{path}: 500 more problems not listed" in out
