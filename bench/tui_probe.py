"""One headless TUI session for the benchmarks, in a process of its own: paint, filter, scroll, open; JSON out.

Run by bench.run as `python -m bench.tui_probe --db STORE --rounds N` with BENCH_T0 set to the wall-clock time
just before the process was started, so that "process start -> first paint" includes Python's start and imports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any


def _rss_kib(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


async def _until(pilot: Any, cond: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait (in small steps that let the app run) until `cond` holds."""
    end = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > end:
            raise TimeoutError("the app did not get there in time")
        await asyncio.sleep(0.0002)


def _after(table: Any, generation: int) -> bool:
    """The table has the rows of a newer filter than `generation` to show: its first page is in."""
    return bool(table._generation > generation and 0 in table._pages)


def _moved(table: Any, row: int) -> bool:
    return bool(table.cursor_row != row and table.row(table.cursor_row) is not None)


async def _press(app: Any, key: str) -> None:
    """A key as the terminal sends it. Pilot.press waits for the CPU to go idle (20-40 ms here), which would
    swamp the figures; the paint is forced once the result is there (Pilot.pause(0))."""
    app.simulate_key(key)
    await asyncio.sleep(0)


async def probe(db: Path, rounds: int, t0: float) -> dict[str, Any]:
    from store.db import Store
    from tui.app import make_app
    from tui.screens.trace_list import TraceListScreen
    from tui.screens.trace_view import TraceViewScreen

    store = Store(db, create=False)
    app = make_app(store, poll_interval=None, evals_dir=Path("/tmp/bench/evals"))
    out: dict[str, Any] = {"filter_ms": [], "count_ms": [], "scroll_ms": [], "open_ms": []}
    async with app.run_test(size=(160, 50)) as pilot:
        from tui.widgets.trace_table import TraceTable

        table = app.screen.query_one(TraceTable)
        await _until(pilot, lambda: table.row_count is not None and table.row(0) is not None)
        await pilot.pause()  # the paint that shows them
        out["first_paint_s"] = time.time() - t0
        out["rows"] = table.row_count
        for _ in range(rounds):
            # A filter change (x: only traces with findings, and back): until the new rows are painted.
            for _toggle in range(2):
                gen = table._generation
                start = time.perf_counter()
                await _press(app, "x")
                await _until(pilot, partial(_after, table, gen))
                await pilot.pause(0)
                out["filter_ms"].append((time.perf_counter() - start) * 1000)
                await _until(pilot, lambda: table.row_count is not None)
                out["count_ms"].append((time.perf_counter() - start) * 1000)
        # Scrolling: page down, until the page is painted (its rows read from the store when not cached).
        for _ in range(rounds * 10):
            start = time.perf_counter()
            if table.row_count is not None and table.cursor_row + table.size.height >= table.row_count:
                await pilot.press("home")  # at the end of a small store: start again from the top (not timed)
                await _until(pilot, lambda: table.cursor_row == 0)
            row = table.cursor_row
            await _press(app, "pagedown")
            await _until(pilot, partial(_moved, table, row))
            await pilot.pause(0)
            out["scroll_ms"].append((time.perf_counter() - start) * 1000)
        # Opening the selected trace: key press until the trace view has painted the trace.
        for _ in range(rounds):
            await pilot.press("down")
            await _until(pilot, lambda: table.row(table.cursor_row) is not None)
            await pilot.pause()
            start = time.perf_counter()
            await _press(app, "enter")
            await _until(pilot, lambda: isinstance(app.screen, TraceViewScreen)
                         and getattr(app.screen, "stored", None) is not None)
            await pilot.pause(0)
            out["open_ms"].append((time.perf_counter() - start) * 1000)
            await pilot.press("escape")
            await _until(pilot, lambda: isinstance(app.screen, TraceListScreen))
        out["rss_kib"] = _rss_kib("VmRSS")
        out["peak_rss_kib"] = _rss_kib("VmHWM")
    store.close()
    return out


async def bare(t0: float, rounds: int) -> dict[str, Any]:
    """The reference: a Textual app that paints one line, from process start."""
    from textual.app import App, ComposeResult
    from textual.widgets import Static

    class Bare(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("hello")

    app = Bare()
    keys_ms = []
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        first = time.time() - t0
        rss = _rss_kib()
        for _ in range(rounds * 4):
            # What a key press and a paint cost Pilot and Textual with nothing to do: the floor of every TUI figure.
            start = time.perf_counter()
            await _press(app, "z")
            await pilot.pause(0)
            keys_ms.append((time.perf_counter() - start) * 1000)
    return {"first_paint_s": first, "rss_kib": rss, "key_ms": keys_ms}


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("BENCH_HIDE_NUMPY"):
        # numpy is in the dev venv only for inspect-ai (a test extra); sqlite-utils imports it when it is there.
        # A user's install has no numpy: hidden, the process holds what a user's would.
        sys.modules["numpy"] = None  # type: ignore[assignment]
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bare", action="store_true", help="the reference app instead of loupe")
    args = ap.parse_args(argv)
    t0 = float(os.environ.get("BENCH_T0", time.time()))
    result = asyncio.run(bare(t0, args.rounds) if args.bare else probe(args.db, args.rounds, t0))
    result["textual_imported"] = "textual" in sys.modules
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
