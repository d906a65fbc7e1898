"""A writer process appends 50 traces a second while the TUI reads the store and cases are promoted."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from store.db import Store
from store.evals import promote
from store.models import Trace
from tui.app import LoupeApp, make_app
from tui.widgets.trace_table import TraceTable

from .conftest import make_trace

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 4.0  # how long the writer writes; at 50 traces a second, about 200 traces
RATE = 50.0

# One trace per insert, each its own transaction, on a fixed schedule; any exception ends the writer with the
# traceback on stderr. It prints how many traces it committed: the store must then hold exactly that many more.
WRITER = """
import json, sys, time
from store.db import Store
from store.models import Trace
from tests.conftest import make_trace

path, seconds, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
store = Store(path)
committed = 0
start = time.monotonic()
i = 0
while time.monotonic() - start < seconds:
    t = make_trace(i, version="v9")
    t["id"] = f"trc_w{i:05d}"
    # Distinct content: each promoted trace is a case of its own (a case is identified by its content).
    t["input"] = t["steps"][0]["messages"][0]["content"] = f"question number {i}"
    t["started_at"] = t["steps"][0]["started_at"] = f"2027-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"
    t["steps"][0]["ended_at"] = None
    counts = store.insert_traces([Trace.model_validate(t)])
    assert not counts.failed, counts.failed
    committed += counts.traces
    i += 1
    delay = start + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
store.close()
print(json.dumps({"committed": committed}))
"""


def _seed(i: int) -> Trace:
    t = make_trace(i)
    t["input"] = t["steps"][0]["messages"][0]["content"] = f"seed question {i}"
    return Trace.model_validate(t)


def _table(app: LoupeApp) -> TraceTable:
    return app.screen.query_one(TraceTable)


async def _until(pilot: Pilot[Any], done: Any, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await pilot.pause(0.05)
        if done():
            return
    raise AssertionError(f"never: {what}")


async def test_writer_reader_and_promotions_together_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    evals = tmp_path / "evals"
    with Store(db) as seed_store:
        seed_store.insert_traces([_seed(i) for i in range(5)])
    store = Store(db)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(SECONDS), str(RATE)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    promoted_here: list[str] = []
    try:
        app = make_app(store, page_size=20, evals_dir=evals, poll_interval=0.1)
        async with app.run_test(size=(160, 40)) as pilot:
            t = _table(app)
            # The list picks up the writer's traces while it writes.
            await _until(pilot, lambda: (t.row_count or 0) > 5 + 20, "the writer's traces in the list")
            # `e` on the newest rows, while the writer keeps committing.
            for _ in range(4):
                await pilot.press("home", "e")
                await pilot.pause(0.15)
            await pilot.press("end", "e")
            # And a promotion through the library, from another connection and thread, at the same time.
            other = Store(db)
            try:
                for ref in ("trc_t0001", "trc_t0002"):
                    result = await asyncio.to_thread(promote, other, ref, evals)
                    # Created, or already made by `e` (the TUI's `end` may have landed on it): either way stored.
                    assert result.path is not None and result.path.exists()
                    promoted_here.append(result.case_id)
            finally:
                other.close()
            out, err = await asyncio.to_thread(writer.communicate, timeout=60)
            assert writer.returncode == 0, err
            committed = json.loads(out)["committed"]
            assert committed >= RATE * SECONDS * 0.5, committed  # it really wrote at a rate, not a trickle
            await _until(pilot, lambda: t.row_count == 5 + committed, f"all {5 + committed} traces in the list")
            await app.workers.wait_for_complete()
            await pilot.pause(0.2)
            messages = [n.message for n in app._notifications]
            assert not any("locked" in m.lower() or "busy" in m.lower() for m in messages), messages
            assert not [n for n in app._notifications if n.severity == "error"], messages
            promoted_in_tui = [m for m in messages if m.startswith(("Eval case", "Already a case"))]
            assert len(promoted_in_tui) == 5, messages
            assert sum(m.startswith("Eval case") for m in promoted_in_tui) >= 2, messages
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.communicate()
    # Nothing lost: every trace the writer says it committed is there, once.
    assert store.count_traces() == 5 + committed
    ids = [r.id for r in store.iter_traces()]
    assert len(ids) == len(set(ids))
    assert {f"trc_w{i:05d}" for i in range(committed)} <= set(ids)
    # Every promotion is a stored case with its file.
    cases = store.list_cases()
    assert set(promoted_here) <= {c.id for c in cases}
    assert len(list(evals.rglob("*.yaml"))) == len(cases) >= 3
    store.close()
