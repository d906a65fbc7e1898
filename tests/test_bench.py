"""The benchmark suite: the generator is deterministic and writes traces loupe ingests; the runner runs (no timing)."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest

from bench.generate import make_trace, parse_size, trace_id, write
from store.config import load_config
from store.db import Store, TraceFilter
from store.importers import ingest_paths

ROOT = Path(__file__).resolve().parent.parent


def _jsonl(n: int, first: int = 0, seed: int = 7) -> str:
    buf = io.StringIO()
    write(buf, n, seed, first)
    return buf.getvalue()


def test_the_generator_is_deterministic_and_sizes_share_their_start() -> None:
    assert _jsonl(40) == _jsonl(40)
    assert _jsonl(60).startswith(_jsonl(40))  # trace i is the same whatever the size
    assert _jsonl(20, first=40) == "".join(_jsonl(60).splitlines(keepends=True)[40:])
    assert _jsonl(5, seed=8) != _jsonl(5)
    assert make_trace(3) == make_trace(3)
    assert len({trace_id(7, i) for i in range(10_000)}) == 10_000


def test_generated_traces_have_the_shapes_asked_for() -> None:
    traces = [make_trace(i) for i in range(400)]
    steps = [len(t["steps"]) for t in traces]
    assert min(steps) >= 3 and max(steps) <= 30
    assert 6 <= sum(steps) / len(steps) <= 10  # about 8M steps for 1M traces
    releases = Counter((t["prompt"]["name"], t["prompt"]["version"]) for t in traces)
    assert len({name for name, _ in releases}) >= 3 and len(releases) >= 6
    models = {s.get("model") for t in traces for s in t["steps"] if s["type"] == "llm"}
    assert {"gpt-4o-mini", "acme-llm-7b"} <= models  # priced and unpriced
    tool_errors = sum(1 for t in traces for s in t["steps"] if s["type"] == "tool" and s["status"] == "error")
    assert 0 < tool_errors < sum(1 for t in traces for s in t["steps"] if s["type"] == "tool") * 0.2
    answers = [t["output"] for t in traces]
    assert 100 < sum(map(len, answers)) / len(answers) < 2_000  # message text of realistic length
    times = [t["started_at"] for t in traces]
    assert len(set(times)) == len(times)


def test_generated_traces_are_valid_native_traces_that_loupe_ingests(tmp_path: Path) -> None:
    path = tmp_path / "bench.jsonl"
    path.write_text(_jsonl(150))
    store = Store(tmp_path / "b.db", rules_config=load_config(ROOT / "loupe.example.toml"))
    report = ingest_paths(store, [path], "native")
    assert report.problems == []
    assert report.counts.traces == 150
    assert report.counts.steps == sum(len(json.loads(line)["steps"]) for line in path.read_text().splitlines())
    assert store.count_traces() == 150
    # Findings at realistic rates: some traces have them, most do not.
    assert 0 < store.count_traces(TraceFilter(violations=True)) < 100
    assert store.count_traces(TraceFilter(rule="tool-error")) > 0
    unpriced = store.count_traces(TraceFilter(model="acme-llm-7b"))
    assert unpriced > 0
    assert all(r.cost is None for r in store.list_traces(TraceFilter(model="acme-llm-7b")))  # unknown, not $0
    store.close()


def test_sizes_are_read_like_people_write_them() -> None:
    assert parse_size("10k") == 10_000 and parse_size("1M") == 1_000_000 and parse_size("2500") == 2_500


def test_the_runner_measures_every_figure_on_a_tiny_store(tmp_path: Path) -> None:
    from bench.run import run, write_results

    result = run(40, 1, tmp_path / "work", keep=False, log=lambda _msg: None)
    names = [f["name"] for f in result["figures"]]
    for expected in ("ingest", "open a trace by ID", "full-text search", "`loupe show ID`",
                     "process start -> first paint", "filter change", "scroll one page", "key press -> trace view",
                     "TUI memory"):
        assert any(expected in n for n in names), (expected, names)
    for f in result["figures"]:
        assert f["ours"]["median"] > 0 and f["ours"]["n"] == 1, f
    ingest = next(f for f in result["figures"] if f["name"].startswith("ingest"))
    assert ingest["ref"]["median"] > 0 and ingest["ratio"] is not None
    assert result["build"]["traces"] == 40
    assert not list((tmp_path / "work").glob("store-*.db"))  # the stores are deleted unless --keep
    md = write_results(result, tmp_path).read_text()
    assert "## 40 traces" in md and "| ingest (validated, priced, rules, indexed) |" in md
    assert "SQLite" in md and "cores" in md and "How each figure was measured" in md
    assert (tmp_path / "results-40.json").exists()


@pytest.mark.parametrize("size", ["ten", "1.5k"])
def test_a_size_that_is_no_size_is_refused(size: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(size)


def test_a_store_copied_for_size_holds_whole_traces_under_new_ids(tmp_path: Path) -> None:
    from bench.run import clone, ingest

    path = tmp_path / "base.jsonl"
    path.write_text(_jsonl(12))
    db = tmp_path / "c.db"
    ingest(db, path)
    clone(db, 3, 3600, log=lambda _msg: None)
    store = Store(db, create=False)
    assert store.count_traces() == 36
    first = make_trace(0)["id"]
    original, copy = store.get_trace(first), store.get_trace(first + "x2")
    assert copy.trace.id == first + "x2" and len(copy.trace.steps) == len(original.trace.steps)
    assert copy.findings == original.findings and copy.totals == original.totals
    assert [r.id for r in store.list_traces(TraceFilter(search=first + "x2"))] == [first + "x2"]
    newest = [r.id for r in store.list_traces(limit=12)]
    assert all(tid.endswith("x2") for tid in newest)  # two spans later than the originals: the newest
    # Search hits come in the list's order, copies included.
    assert [r.id for r in store.list_traces(TraceFilter(search="trc"), limit=36)] == [
        r.id for r in store.list_traces(limit=36)]
    store.close()
