"""The benchmark runner: loupe's figures next to raw SQLite's, measured in the same run, written to RESULTS.md.

    python -m bench.run --size 100k            # also 10k, 1m, or a number of traces
    python -m bench.run --size 1k --repeat 2   # a quick check that everything runs

Work files (generated JSON Lines, stores) go under --work (default /tmp/bench), never into the repository; the
stores are deleted at the end unless --keep. Each figure is the median of --repeat runs, with the spread
(min-max), beside its reference (raw sqlite3 doing the same reads or writes, or a bare Textual app for the TUI)
and the ratio. The results of each size go to bench/results-SIZE.json and bench/RESULTS.md is written from all of
them, with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench.generate import SEED, parse_size, write

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CONFIG = ROOT / "loupe.example.toml"  # rules run with every setting there is, as a team's config would have
INGEST_SLICE = 10_000  # traces ingested per repeat for the ingest figure (the whole store is built once)
LOUPE = Path(sys.executable).with_name("loupe")


# ---------------------------------------------------------------------------------------------------------------
# small helpers


def stats(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"median": statistics.median(values), "min": values[0], "max": values[-1], "n": len(values)}


def p95(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]


def human(n: int) -> str:
    for unit, div in (("m", 1_000_000), ("k", 1_000)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        ram = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    load = "?"
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "ram": ram, "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "os": platform.platform(), "load": load,
            "date": datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M UTC")}


def generated(work: Path, size: int, first: int = 0) -> Path:
    path = work / f"traces-{human(size)}{'' if not first else f'-from{first}'}.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".part")
        with open(tmp, "w", encoding="utf-8", buffering=1 << 20) as fh:
            write(fh, size, SEED, first)
        tmp.rename(path)
    return path


def fresh(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return path


def ingest(db: Path, jsonl: Path) -> tuple[float, int, int]:
    """loupe's own ingest (ingest_paths: read, validate, price, run the rules, write); (seconds, traces, steps)."""
    from store.config import load_config
    from store.db import Store
    from store.importers import ingest_paths

    store = Store(fresh(db), rules_config=load_config(CONFIG))
    t = time.perf_counter()
    report = ingest_paths(store, [jsonl])
    seconds = time.perf_counter() - t
    store.close()
    return seconds, report.counts.traces, report.counts.steps


def _rows(db: Path) -> tuple[dict[str, tuple[list[str], list[tuple[Any, ...]]]], list[tuple[int, str]]]:
    """Every row loupe wrote (traces, steps, findings, search_docs) and the search documents' text."""
    from store.db import _stored_trace, search_text

    conn = sqlite3.connect(db)
    out = {}
    for table in ("traces", "steps", "findings", "search_docs"):
        cur = conn.execute(f"SELECT * FROM {table}")
        out[table] = ([d[0] for d in cur.description], cur.fetchall())
    docs = []
    for doc, tid in conn.execute("SELECT doc, trace_id FROM search_docs"):
        trace = _stored_trace(conn, tid)
        assert trace is not None
        docs.append((doc, search_text(trace)))
    conn.close()
    return out, docs


def raw_insert(db: Path, rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]], docs: list[tuple[int, str]],
               batch: int = 5_000) -> float:
    """The reference: the same rows with executemany into a fresh store (same tables, indexes, triggers and search
    index), in transactions of `batch` traces; only the inserts are timed."""
    from store.db import Store

    Store(fresh(db)).close()  # the schema, by the migrations
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    traces_cols, traces_rows = rows["traces"]
    by_trace: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    for table in ("steps", "findings", "search_docs"):
        cols, table_rows = rows[table]
        key = cols.index("trace_id")
        for r in table_rows:
            by_trace.setdefault(r[key], {}).setdefault(table, []).append(r)
    doc_text = dict(docs)
    chunks = []
    for start in range(0, len(traces_rows), batch):
        part = traces_rows[start:start + batch]
        ids = [r[0] for r in part]
        chunk = {"traces": part}
        for table in ("steps", "findings", "search_docs"):
            chunk[table] = [r for tid in ids for r in by_trace.get(tid, {}).get(table, [])]
        chunk["fts"] = [(d, doc_text[d]) for d, _ in chunk["search_docs"]]
        chunks.append(chunk)
    sql = {table: f"INSERT INTO {table} ({', '.join(rows[table][0])}) VALUES ({', '.join('?' * len(rows[table][0]))})"
           for table in rows}
    elapsed = 0.0
    for chunk in chunks:
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for table in ("traces", "steps", "findings", "search_docs"):
            conn.executemany(sql[table], chunk[table])
        conn.executemany("INSERT INTO trace_search (rowid, body) VALUES (?, ?)", chunk["fts"])
        conn.execute("COMMIT")
        elapsed += time.perf_counter() - t
    conn.close()
    return elapsed


def raw_match(conn: sqlite3.Connection, query: str | None) -> None:
    conn.execute("SELECT rowid FROM trace_search WHERE trace_search MATCH ? LIMIT 50", (query,)).fetchall()


def ingest_phases(jsonl: Path, n: int = 1_000) -> dict[str, float]:
    """Where ingest time goes: microseconds per step for each stage of loupe's write path, over the first `n`
    traces (each stage run over all of them before the next, so the numbers add up to roughly the whole)."""
    from store.config import load_config
    from store.db import compute_totals, search_text
    from store.importers.base import validate_trace
    from store.pricing import Pricer
    from store.rules import run_rules

    config = load_config(CONFIG)
    with open(jsonl, encoding="utf-8") as fh:
        lines = [line for _, line in zip(range(n), fh, strict=False)]
    out: dict[str, float] = {}
    t = time.perf_counter()
    data = [json.loads(line) for line in lines]
    out["read JSON"] = time.perf_counter() - t
    t = time.perf_counter()
    problems: list[Any] = []
    traces = [validate_trace(d, "f", i, problems, raw=line) for i, (d, line) in enumerate(zip(data, lines, strict=True))]
    out["validate (pydantic)"] = time.perf_counter() - t
    ok = [tr for tr in traces if tr is not None]
    steps = sum(len(tr.steps) for tr in ok)
    pricer = Pricer()
    for tr in ok:  # each model's price resolved once, as over a long ingest, before the timed pass
        for st in tr.steps:
            pricer.step_cost(st)
    t = time.perf_counter()
    costs = [{st.id: pricer.step_cost(st) for st in tr.steps} for tr in ok]
    totals = [compute_totals(tr, c, []) for tr, c in zip(ok, costs, strict=True)]
    out["price and total"] = time.perf_counter() - t
    t = time.perf_counter()
    for tr, tot in zip(ok, totals, strict=True):
        run_rules(tr, config, totals=tot, pricer=pricer)
    out["rules"] = time.perf_counter() - t
    t = time.perf_counter()
    for tr in ok:
        for st in tr.steps:
            st.model_dump_json(exclude_none=True)
        tr.model_dump(mode="json", exclude={"steps"}, exclude_none=True)
    out["rows as JSON"] = time.perf_counter() - t
    t = time.perf_counter()
    for tr in ok:
        search_text(tr)
    out["search text"] = time.perf_counter() - t
    return {k: v / steps * 1e6 for k, v in out.items()}


def _shift(column: str, seconds: int) -> str:
    """SQL for a stored time (ISO, microseconds, Z) moved by whole seconds, in the same sortable form."""
    return (f"CASE WHEN {column} IS NULL THEN NULL ELSE strftime('%Y-%m-%dT%H:%M:%S', {column}, "
            f"'+{seconds} seconds') || substr({column}, 20) END")


def clone(db: Path, copies: int, span_seconds: int, log: Callable[[str], None]) -> None:
    """Make a store `copies` times bigger with raw SQL: every trace copied with a new ID (the old one + "x" + k)
    and its times moved k spans later; steps, findings and search documents copied with it (the per-version
    triggers run as for any insert). Step times inside the steps' JSON data stay those of the original."""
    from store.db import _stored_trace, search_text

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    docs = [(tid, search_text(tr)) for tid, in conn.execute("SELECT trace_id FROM search_docs ORDER BY doc")
            if (tr := _stored_trace(conn, tid)) is not None]
    cols = [r[1] for r in conn.execute("PRAGMA table_info(traces)")]
    step_cols = [r[1] for r in conn.execute("PRAGMA table_info(steps)")]
    finding_cols = [r[1] for r in conn.execute("PRAGMA table_info(findings)")]
    conn.execute("CREATE TEMP TABLE originals (id TEXT PRIMARY KEY)")
    conn.execute("INSERT INTO originals SELECT id FROM traces")
    for k in range(1, copies):
        shift = k * span_seconds
        new_id = f"id || 'x{k}'"
        exprs = {c: c for c in cols}
        exprs.update(id=new_id, started_at=_shift("started_at", shift), ended_at=_shift("ended_at", shift),
                     header=f"json_set(header, '$.id', {new_id}, '$.started_at', {_shift('started_at', shift)})",
                     ingested_at="strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"INSERT INTO traces ({', '.join(cols)}) SELECT {', '.join(exprs[c] for c in cols)} "
                     "FROM traces WHERE id IN originals")
        step_exprs = {c: c for c in step_cols}
        step_exprs.update(trace_id=f"trace_id || 'x{k}'", started_at=_shift("started_at", shift))
        conn.execute(f"INSERT INTO steps ({', '.join(step_cols)}) SELECT {', '.join(step_exprs[c] for c in step_cols)} "
                     "FROM steps WHERE trace_id IN originals")
        conn.execute(f"INSERT INTO findings ({', '.join(finding_cols)}) SELECT "
                     + ", ".join(f"trace_id || 'x{k}'" if c == "trace_id" else c for c in finding_cols)
                     + " FROM findings WHERE trace_id IN originals")
        index_copies(conn, docs, f"x{k}")
        conn.execute("COMMIT")
        log(f"copy {k}/{copies - 1} written")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def index_copies(conn: sqlite3.Connection, docs: list[tuple[str, str]], suffix: str) -> None:
    """Search documents for the copies (ID + suffix) of the traces in `docs` (ID, document text): the original's
    text with the ID changed, numbered by the copy's start time like loupe numbers them (store.db.new_doc)."""
    from store.db import new_doc

    for tid, text in docs:
        copy = tid + suffix
        started = conn.execute("SELECT started_at FROM traces WHERE id = ?", (copy,)).fetchone()[0]
        doc = new_doc(conn, copy, started)
        conn.execute("INSERT INTO trace_search (rowid, body) VALUES (?, ?)", (doc, text.replace(tid, copy, 1)))


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


TIME = Path("/usr/bin/time")


def process(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """(wall seconds, peak RSS KiB) of one child process. The peak comes from /usr/bin/time -f %M where it is
    installed (the child's own rusage would count the memory of the forked runner before exec), else -1."""
    timed_cmd = [str(TIME), "-f", "%M", *cmd] if TIME.exists() else cmd
    t = time.perf_counter()
    out = subprocess.run(timed_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - t
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited with {out.returncode}: {out.stderr[-500:]}")
    last = out.stderr.strip().splitlines()[-1:] if TIME.exists() else []
    return wall, int(last[0]) if last and last[0].isdigit() else -1


def tui_probe(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "BENCH_T0": repr(time.time()), "BENCH_HIDE_NUMPY": "1"}
    out = subprocess.run([sys.executable, "-m", "bench.tui_probe", *args], capture_output=True,
                         text=True, env=env, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(f"bench.tui_probe {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------------------------------------------------
# the figures


def figure(name: str, unit: str, ours: list[float], ref: list[float] | None, goal: str, how: str,
           higher_is_better: bool = False, ok: bool | None = None) -> dict[str, Any]:
    f: dict[str, Any] = {"name": name, "unit": unit, "ours": stats(ours), "goal": goal, "how": how}
    if ref:
        f["ref"] = stats(ref)
        a, b = f["ours"]["median"], f["ref"]["median"]
        f["ratio"] = (a / b if higher_is_better else b / a) if a and b else None  # >1: faster than the reference
    f["ok"] = ok
    return f


def run(size: int, repeat: int, work: Path, keep: bool, log: Callable[[str], None], copies: int = 1,
        reuse: bool = False, out_dir: Path = BENCH) -> dict[str, Any]:

    work.mkdir(parents=True, exist_ok=True)
    figures: list[dict[str, Any]] = []
    result: dict[str, Any] = {"size": size, "label": human(size), "repeat": repeat, "machine": machine(),
                              "figures": figures, "notes": []}

    # -- ingest: a slice, repeated, against raw executemany of the same rows
    from store.importers.parallel import worker_count

    n_slice = min(size, INGEST_SLICE)
    slice_path = generated(work, n_slice)
    ours, refs = [], []
    slice_db = work / "slice.db"
    raw_db = work / "raw.db"
    rows = docs = None
    steps = 0
    for i in range(repeat):
        seconds, _, steps = ingest(slice_db, slice_path)
        ours.append(steps / seconds)
        if rows is None:
            rows, docs = _rows(slice_db)
        assert docs is not None
        refs.append(steps / raw_insert(raw_db, rows, docs))
        log(f"ingest {i + 1}/{repeat}: {ours[-1]:,.0f} steps/s, raw {refs[-1]:,.0f} steps/s")
    rows = docs = None
    fresh(raw_db)
    fresh(slice_db)
    ingest_fig = figure(
        "ingest (validated, priced, rules, indexed)", "steps/s", ours, refs, "ratio >= 0.5 and >= 40,000 steps/s",
        f"loupe's ingest_paths over {n_slice:,} generated traces ({steps:,} steps) into a fresh store, with "
        f"loupe.example.toml's rules, as `loupe ingest` runs it: a file this large is read, validated, priced and "
        f"checked by {worker_count()} worker processes while the main one writes (store/importers/parallel.py); "
        "reference: the rows loupe wrote (traces, steps, findings, search documents "
        "and their text) inserted with executemany into a fresh store with the same schema, 5,000 traces per "
        "transaction, only the inserts timed", higher_is_better=True)
    result["phases_us_per_step"] = ingest_phases(slice_path)
    ingest_fig["ok"] = bool(ingest_fig["ratio"] and ingest_fig["ratio"] >= 0.5 and
                            ingest_fig["ours"]["median"] >= 40_000)
    figures.append(ingest_fig)

    # -- the store at full size, built once by loupe
    db = work / f"store-{human(size)}.db"
    previous = out_dir / f"results-{human(size)}.json"
    if reuse and db.exists() and previous.exists():
        # The store of an earlier run (--keep), measured again: its build figures are that run's.
        old = json.loads(previous.read_text())
        for key in ("build", "generated", "generate_s", "jsonl_bytes"):
            result[key] = old[key]
        result["notes"] = [n for n in old.get("notes", []) if "copied" in n]
        result["notes"].append("the store was built by an earlier run (--reuse) and measured again")
        log(f"reusing {db}")
    else:
        log(f"generating {size // copies:,} traces")
        t = time.perf_counter()
        jsonl = generated(work, size // copies)
        result["generate_s"] = time.perf_counter() - t
        result["jsonl_bytes"] = jsonl.stat().st_size
        result["generated"] = size // copies
        _build(db, jsonl, size, copies, work, result, log)
    return _measure(db, size, repeat, work, keep, log, result)


def _build(db: Path, jsonl: Path, size: int, copies: int, work: Path, result: dict[str, Any],
           log: Callable[[str], None]) -> None:
    log(f"building the {human(size)} store")
    seconds, traces, steps = ingest(db, jsonl)
    result["build"] = {"seconds": seconds, "traces": traces, "steps": steps, "steps_per_s": steps / seconds}
    log(f"built: {traces:,} traces, {steps:,} steps in {seconds:.0f} s ({steps / seconds:,.0f} steps/s)")
    if copies > 1:
        from bench.generate import SPACING_MS

        t = time.perf_counter()
        clone(db, copies, (size // copies) * SPACING_MS // 1000, log)
        result["build"]["clone_seconds"] = time.perf_counter() - t
        result["notes"].append(
            f"the {human(size)} store was made by loupe ingesting the first {size // copies:,} generated traces "
            f"(the build line above), then copied {copies} times over by raw SQL (bench.run.clone: new IDs with an "
            "'x1'..'x9' suffix, times moved a span later, steps, findings and search documents copied) in "
            f"{result['build']['clone_seconds']:.0f} s; at the build's speed, loupe's ingest of all {size:,} "
            f"traces would have taken about {size * steps / traces / result['build']['steps_per_s'] / 60:.0f} "
            "minutes")
    result["build"]["db_bytes"] = db.stat().st_size
    with sqlite3.connect(db) as c:
        result["build"]["store_traces"] = c.execute("SELECT count(*) FROM traces").fetchone()[0]
        result["build"]["store_steps"] = c.execute("SELECT count(*) FROM steps").fetchone()[0]


def _measure(db: Path, size: int, repeat: int, work: Path, keep: bool, log: Callable[[str], None],
             result: dict[str, Any]) -> dict[str, Any]:
    from store.db import Store, TraceFilter

    figures: list[dict[str, Any]] = result["figures"]

    store = Store(db, create=False)
    raw = sqlite3.connect(db)
    ids = [r[0] for r in raw.execute("SELECT id FROM traces")]
    rng = random.Random(1)
    sample = rng.sample(ids, min(200, len(ids)))

    # -- open a trace by ID
    ours, refs = [], []
    for _ in range(repeat):
        ours.append(p95([timed(partial(store.get_trace, tid)) for tid in sample]))

        def raw_get(tid: str) -> None:
            raw.execute("SELECT * FROM traces WHERE id = ?", (tid,)).fetchone()
            raw.execute("SELECT data FROM steps WHERE trace_id = ? ORDER BY idx", (tid,)).fetchall()
            raw.execute("SELECT * FROM findings WHERE trace_id = ? ORDER BY idx", (tid,)).fetchall()

        refs.append(p95([timed(partial(raw_get, tid)) for tid in sample]))
    refs_open = list(refs)
    figures.append(figure(
        "open a trace by ID (store call, p95)", "ms", ours, refs, "<= 2 ms at 1M",
        f"Store.get_trace over {len(sample)} random IDs, p95 per round; reference: the same three SELECTs "
        "(trace row, step data, findings) with fetchall, no parsing", ok=statistics.median(ours) <= 2))

    # -- full-text search, first 50 hits
    queries = {"rare phrase": "snowflake webhook", "common word": "invoice", "word prefix": "migrat",
               "trace ID prefix": sample[0][:9], "tool error": "rate_limited"}
    from store.db import fts_query

    ours, refs = [], []
    per_label: dict[str, list[float]] = {label: [] for label in queries}
    matching: dict[str, int] = {}
    for _ in range(repeat):
        per_q, per_ref = [], []
        for label, q in queries.items():
            flt = TraceFilter(search=q)
            per_q.append(timed(partial(store.list_traces, flt, limit=50)))
            per_label[label].append(per_q[-1])
            per_ref.append(timed(partial(raw_match, raw, fts_query(q))))
        ours.append(max(per_q))
        refs.append(max(per_ref))
    for label, q in queries.items():
        matching[label] = raw.execute("SELECT count(*) FROM trace_search WHERE trace_search MATCH ?",
                                      (fts_query(q),)).fetchone()[0]
    figures.append(figure(
        "full-text search, first 50 hits (slowest query)", "ms", ours, refs, "<= 50 ms at 1M",
        "Store.list_traces(TraceFilter(search=q), limit=50), newest first, for each of "
        + ", ".join(f"{k} {v!r} ({matching[k]:,} traces match, {statistics.median(per_label[k]):.1f} ms)"
                    for k, v in queries.items())
        + "; the slowest query per round; reference: the FTS5 MATCH alone, first 50 rowids, unsorted",
        ok=statistics.median(ours) <= 50))

    # -- the per-version table
    try:
        from store.versions import version_table  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        result["notes"].append("per-version table: store.versions.version_table is not there yet; not measured")
    else:
        ours = [timed(lambda: version_table(store)) for _ in range(repeat)]
        refs = [timed(lambda: raw.execute(
            "SELECT prompt_name, prompt_version, count(*), avg(cost), sum(findings > 0), min(started_at), "
            "max(started_at) FROM traces GROUP BY 1, 2").fetchall()) for _ in range(repeat)]
        figures.append(figure("per-version table", "ms", ours, refs, "<= 100 ms at 1M",
                              "store.versions.version_table(store); reference: one GROUP BY over traces",
                              ok=statistics.median(ours) <= 100))

    # -- loupe show ID, as a whole process
    ours, refs, rss = [], [], 0
    dev: list[float] = []
    for tid in sample[:repeat]:
        # As a user's install runs it: no numpy (here only for inspect-ai, a test extra; sqlite-utils imports
        # it when present), hidden from the process. The console script in this venv is measured too.
        wall, rss = process([sys.executable, "-c", "import sys; sys.modules['numpy'] = None\n"
                             "sys.argv = ['loupe', 'show', '--db', sys.argv[1], sys.argv[2]]\n"
                             "from tui.cli import main\nmain()", str(db), tid])
        ours.append(wall)
        dev.append(process([str(LOUPE), "show", "--db", str(db), tid])[0])
        refs.append(process([sys.executable, "-c",
                             "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
                             "print(c.execute('SELECT header FROM traces WHERE id=?',(sys.argv[2],)).fetchone()); "
                             "print(c.execute('SELECT data FROM steps WHERE trace_id=?',(sys.argv[2],)).fetchall())",
                             str(db), tid])[0])
    textual = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv=['loupe','show','--db',sys.argv[1],sys.argv[2]]\n"
         "import contextlib, io\nfrom tui.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
         "    try:\n        main()\n    except SystemExit:\n        pass\nprint('textual' in sys.modules)",
         str(db), sample[0]], capture_output=True, text=True, cwd=ROOT).stdout.strip().splitlines()[-1:]
    figures.append(figure(
        "`loupe show ID` as a process", "s", ours, refs, "<= 0.4 s, no Textual import",
        f"wall time of a Python process running the CLI's main with numpy hidden (as in a user's install), "
        f"output to /dev/null (peak RSS {rss / 1024:.0f} MiB); the `loupe` console script of "
        f"this dev venv, where sqlite-utils also imports numpy: {statistics.median(dev):.2f} s median "
        f"({min(dev):.2f}-{max(dev):.2f}); Textual imported on that path: {textual == ['True']}; reference: a "
        "Python process that runs the raw SELECTs and prints them", ok=statistics.median(ours) <= 0.4
        and textual == ["False"]))

    # What the TUI's interactions need from SQLite, read raw: the reference for them (plus a bare key and paint).
    from store.db import SUMMARY_COLUMNS

    def raw_page(where: str) -> None:
        raw.execute(f"SELECT {SUMMARY_COLUMNS} FROM traces WHERE {where} ORDER BY started_at DESC, id DESC "
                    "LIMIT 200").fetchall()

    sql_ms = {
        # x and x again: the mean of the two filters' page (and count).
        "filter_ms": [(timed(partial(raw_page, "findings > 0")) + timed(partial(raw_page, "1"))) / 2
                      for _ in range(repeat)],
        "count_ms": [(timed(lambda: raw.execute("SELECT count(*) FROM traces WHERE findings > 0").fetchone())
                      + timed(lambda: raw.execute("SELECT count(*) FROM traces").fetchone())) / 2
                     for _ in range(repeat)],
        "scroll_ms": [timed(partial(raw_page, "1")) / 4 for _ in range(repeat)],  # a page read every 4 page downs
        "open_ms": [statistics.median(refs_open) for _ in range(repeat)],
    }
    raw.close()
    store.close()

    # -- the TUI, headless (Pilot), a process per session
    log("TUI sessions")
    small = work / "store-1k.db"
    if size != 1_000:
        ingest(small, generated(work, 1_000))
    sessions = [tui_probe(["--db", str(db), "--rounds", "3"]) for _ in range(repeat)]
    bare = [tui_probe(["--bare", "--rounds", "3"]) for _ in range(repeat)]
    small_sessions = [tui_probe(["--db", str(small if size != 1_000 else db), "--rounds", "1"])
                      for _ in range(max(1, repeat // 2))]
    key_floor = [statistics.median(b["key_ms"]) for b in bare]
    figures.append(figure(
        "trace list: process start -> first paint", "s", [s["first_paint_s"] for s in sessions],
        [b["first_paint_s"] for b in bare], "<= 1.0 s at 1M",
        "a new Python process runs the app headless (App.run_test, 160x50) until the first page of rows is "
        "painted; measured from the wall clock just before the process was started; reference: a bare Textual "
        "app painting one Static, the same way",
        ok=statistics.median(s["first_paint_s"] for s in sessions) <= 1.0))
    for key, name, goal, limit, how in (  # type: tuple[str, str, str, float | None, str]
        ("filter_ms", "trace list: filter change repainted", "<= 50 ms", 50,
         "key x (only traces with findings) and x again, from the key event to the first page of the new rows "
         "painted (the count of matching rows follows, next line)"),
        ("count_ms", "trace list: filter change counted", "-", None,
         "as above, until the number of matching rows is known (shown in the summary line and the scrollbar)"),
        ("scroll_ms", "trace list: scroll one page", "<= 16 ms per frame", 16,
         "page down, from the key event until the new rows are painted (rows read from the store when their "
         "page is not cached)"),
        ("open_ms", "open a trace: key press -> trace view painted", "<= 100 ms", 100,
         "enter on the selected row until the trace view shows the loaded trace"),
    ):
        values = [statistics.median(s[key]) for s in sessions]
        ref = [floor + sql for floor, sql in zip(key_floor, sql_ms[key], strict=False)]
        figures.append(figure(name, "ms", values, ref, goal,
                              how + "; median per session; reference: a key event and paint in a bare Textual app "
                              "(App.simulate_key, then Pilot.pause(0)) plus the raw SQL the step needs (the page "
                              "of 200 rows, the count, the trace's rows)",
                              ok=None if limit is None else statistics.median(values) <= limit))
    rss_big = [s["rss_kib"] / 1024 for s in sessions]
    rss_small = [s["rss_kib"] / 1024 for s in small_sessions]
    fig = figure("TUI memory (RSS after the session)", "MiB", rss_big, rss_small,
                 "<= 80 MB at 1M, within 1.2x of 1k",
                 "VmRSS of the TUI process after first paint, filters, 30 page downs and 3 opened traces; "
                 "reference: the same session on a 1k store")
    fig["ok"] = statistics.median(rss_big) <= 80 * 1e6 / 2**20 and statistics.median(rss_big) <= 1.2 * statistics.median(
        rss_small)
    figures.append(fig)
    result["bare_rss_mib"] = statistics.median(b["rss_kib"] for b in bare) / 1024

    if not keep:
        fresh(db)
        fresh(small)
    return result


# ---------------------------------------------------------------------------------------------------------------
# RESULTS.md


def _num(v: float, unit: str) -> str:
    if unit == "steps/s":
        return f"{v:,.0f}"
    if unit == "s":
        return f"{v:.2f}"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def render(results: list[dict[str, Any]]) -> str:
    lines = ["# Benchmark results", "",
             "Written by `python -m bench.run --size SIZE` (see bench/README.md); do not edit by hand. Each figure "
             "is the median of the repeated runs with the spread (min-max), next to its reference measured in the "
             "same run; the ratio is reference time / loupe time (for steps/s: loupe / reference), so 1.0 is as "
             "fast as the reference and 0.5 half as fast.", ""]
    for r in sorted(results, key=lambda r: r["size"]):
        m = r["machine"]
        lines += [f"## {r['label']} traces", "",
                  f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; Python {m['python']}, SQLite "
                  f"{m['sqlite']}; {m['os']}; {m['date']}; load average at the end {m['load']} (a shared machine: "
                  "figures are noisy, ratios less so).", ""]
        b = r.get("build")
        if b:
            copied = (f" and copied to {b['store_traces']:,} traces, {b['store_steps']:,} steps (see the note)"
                      if b.get("clone_seconds") else "")
            lines.append(f"Store built once by loupe: {b['traces']:,} traces, {b['steps']:,} steps in "
                         f"{b['seconds']:.0f} s ({b['steps_per_s']:,.0f} steps/s){copied}; "
                         f"{b['db_bytes'] / 2**20:,.0f} MiB on disk. Generated JSON Lines: "
                         f"{r.get('generated', r['size']):,} traces, {r['jsonl_bytes'] / 2**20:,.0f} MiB in "
                         f"{r['generate_s']:.0f} s (0 s: the file was there from an earlier run). "
                         f"Repeats: {r['repeat']}.")
            lines.append("")
        lines += ["| measure | loupe (median, min-max) | reference (median, min-max) | ratio | goal | met |",
                  "|---|---|---|---|---|---|"]
        for f in r["figures"]:
            o, u = f["ours"], f["unit"]
            ours = f"{_num(o['median'], u)} {u} ({_num(o['min'], u)}-{_num(o['max'], u)})"
            ref = "-"
            if "ref" in f:
                rf = f["ref"]
                ref = f"{_num(rf['median'], u)} {u} ({_num(rf['min'], u)}-{_num(rf['max'], u)})"
            ratio = f"{f['ratio']:.2f}" if f.get("ratio") else "-"
            met = {True: "yes", False: "**no**", None: "-"}[f.get("ok")]
            lines.append(f"| {f['name']} | {ours} | {ref} | {ratio} | {f['goal']} | {met} |")
        phases = r.get("phases_us_per_step")
        if phases:
            total = sum(phases.values())
            lines += ["", "Where ingest time goes (CPU microseconds per step, one pass over 1,000 traces in one "
                      "process, stage by stage; `loupe ingest` of a file this large runs these stages in its worker "
                      "processes and only the writing in the main one, whose SQLite inserts cost about what the "
                      "reference's do):", "",
                      "| stage | µs/step | share |", "|---|---|---|"]
            for stage, us in phases.items():
                lines.append(f"| {stage} | {us:.1f} | {us / total:.0%} |")
        lines += ["", "How each figure was measured:", ""]
        for f in r["figures"]:
            lines.append(f"- {f['name']}: {f['how']}.")
        for note in r.get("notes", []):
            lines.append(f"- Note: {note}.")
        lines.append("")
    return "\n".join(lines)


def write_results(result: dict[str, Any], out_dir: Path = BENCH) -> Path:
    (out_dir / f"results-{result['label']}.json").write_text(json.dumps(result, indent=1) + "\n")
    results = [json.loads(p.read_text()) for p in sorted(out_dir.glob("results-*.json"))]
    path = out_dir / "RESULTS.md"
    path.write_text(render(results) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="loupe's benchmarks, next to raw SQLite in the same run")
    ap.add_argument("--size", type=parse_size, default=parse_size("10k"), help="10k, 100k, 1m or a number")
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure (median and spread)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench"), help="where generated files and stores go")
    ap.add_argument("--keep", action="store_true", help="keep the generated store afterwards")
    ap.add_argument("--results", type=Path, default=BENCH, help="folder for results-SIZE.json and RESULTS.md")
    ap.add_argument("--reuse", action="store_true", help="measure the store a run with --keep left, again")
    ap.add_argument("--copies", type=int, default=1,
                    help="build the store from SIZE/COPIES ingested traces copied COPIES times by raw SQL "
                         "(for 1m on a slow machine: --copies 10); the read figures are measured on the copy")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    os.chdir(args.work)  # the child processes read no loupe.toml of the checkout by accident

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    result = run(args.size, max(1, args.repeat), args.work, args.keep, log, copies=max(1, args.copies),
                 reuse=args.reuse, out_dir=args.results)
    for f in result["figures"]:
        o = f["ours"]
        ref = f" | ref {f['ref']['median']:,.2f} (ratio {f['ratio']:.2f})" if f.get("ratio") else ""
        print(f"{f['name']}: {o['median']:,.2f} {f['unit']} ({o['min']:,.2f}-{o['max']:,.2f}){ref}"
              f" | goal {f['goal']}: {'met' if f['ok'] else 'NOT met' if f['ok'] is False else '-'}")
    for note in result["notes"]:
        print("note:", note)
    print("written:", write_results(result, args.results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
