"""Hostile prompt versions (issue 8): 3 and "3" are one version; "3.0", "v3", "12suffix" are shown as given, never
coerced; a missing version is "(no version)"; no trace is dropped, in the store, `loupe ls` and the picker's counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hostile.traces import cli, store_traces, tool, trace

# (the version as the source wrote it, the version loupe keeps)
GIVEN: list[tuple[str, Any, str | None]] = [
    ("trc_int", 3, "3"),
    ("trc_str", "3", "3"),
    ("trc_float_text", "3.0", "3.0"),
    ("trc_v", "v3", "v3"),
    ("trc_suffix", "12suffix", "12suffix"),
    ("trc_empty", "", None),
    ("trc_missing", "absent", None),
    ("trc_null", None, None),
]


def _traces() -> list[dict[str, Any]]:
    out = []
    for i, (tid, version, _) in enumerate(GIVEN):
        prompt: dict[str, Any] = {"name": "agent"}
        if version != "absent":
            prompt["version"] = version
        out.append(trace(tid, [tool("a")], prompt=prompt, started_at=f"2026-02-01T00:00:{i:02d}Z"))
    out.append(trace("trc_no_prompt", [tool("a")], prompt=None, started_at="2026-02-01T00:00:30Z"))
    return out


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "v.db"
    store, problems = store_traces(path, *_traces())
    store.close()
    assert problems == []
    return path


def _ls(db: Path, *args: str) -> list[dict[str, Any]]:
    code, out = cli("ls", "--db", str(db), "--json", *args)
    assert code == 0, out
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def test_versions_are_kept_as_given_and_no_trace_is_dropped(db: Path) -> None:
    rows = {r["id"]: r for r in _ls(db)}
    assert len(rows) == len(GIVEN) + 1
    for tid, _, kept in GIVEN:
        assert rows[tid]["prompt_version"] == kept, tid


@pytest.mark.parametrize(("flag", "ids"), [
    ("3", {"trc_int", "trc_str"}),
    ("agent@3", {"trc_int", "trc_str"}),
    ("3.0", {"trc_float_text"}),
    ("v3", {"trc_v"}),
    ("12suffix", {"trc_suffix"}),
    ("12", set()),
    ("(no version)", {"trc_empty", "trc_missing", "trc_null", "trc_no_prompt"}),
    ("agent@(no version)", {"trc_empty", "trc_missing", "trc_null"}),
])
def test_ls_by_prompt_version(db: Path, flag: str, ids: set[str]) -> None:
    assert {r["id"] for r in _ls(db, "--prompt-version", flag)} == ids


def test_the_versions_and_their_counts_add_up_to_every_trace(db: Path) -> None:
    from store.db import Store

    store = Store(db)
    versions = store.prompt_versions()
    total = store.count_traces()
    store.close()
    assert dict(((n, v), c) for n, v, c in versions) == {
        ("agent", "3"): 2, ("agent", "3.0"): 1, ("agent", "v3"): 1, ("agent", "12suffix"): 1, ("agent", None): 3,
        (None, None): 1,
    }
    assert sum(c for _, _, c in versions) == total == len(GIVEN) + 1


def test_text_listing_shows_the_versions_as_given(db: Path) -> None:
    code, out = cli("ls", "--db", str(db))
    assert code == 0
    lines = {line.split()[2]: line for line in out.splitlines() if line.strip()}
    assert "agent@3.0" in out and "agent@v3" in out and "agent@12suffix" in out
    assert out.count("agent@(no version)") == 3 and len(lines) == len(GIVEN) + 1
