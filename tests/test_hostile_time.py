"""Hostile times (issue 8): end before start, zero, nanoseconds where seconds were expected and back, timezone-less
ISO, the far future. Read right, or read as unknown and said so; never 1970, never a negative duration."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hostile.traces import show_json, show_text, store_traces, tool

START = datetime(2026, 2, 1, tzinfo=UTC)
EPOCH = int(START.timestamp())  # 2026-02-01T00:00:00Z in seconds

# (started_at, ended_at, expected start, expected latency in ms or None, field left out)
TIMES: dict[str, tuple[Any, Any, datetime | None, float | None, str | None]] = {
    "ISO with Z": ("2026-02-01T00:00:00Z", "2026-02-01T00:00:01.5Z", START, 1500.0, None),
    "timezone-less ISO is UTC": ("2026-02-01T00:00:00", "2026-02-01T00:00:01.5", START, 1500.0, None),
    "offset": ("2026-02-01T01:00:00+01:00", "2026-02-01T00:00:01.5Z", START, 1500.0, None),
    "seconds": (EPOCH, EPOCH + 1.5, START, 1500.0, None),
    "milliseconds": (EPOCH * 1000, EPOCH * 1000 + 1500, START, 1500.0, None),
    "microseconds": (EPOCH * 10**6, EPOCH * 10**6 + 1_500_000, START, 1500.0, None),
    "nanoseconds": (EPOCH * 10**9, EPOCH * 10**9 + 1_500_000_000, START, 1500.0, None),
    "nanoseconds start, seconds end": (EPOCH * 10**9, EPOCH + 1.5, START, 1500.0, None),
    "seconds start, nanoseconds end": (EPOCH, EPOCH * 10**9 + 1_500_000_000, START, 1500.0, None),
    "end before start": ("2026-02-01T00:00:05Z", "2026-02-01T00:00:01Z", datetime(2026, 2, 1, 0, 0, 5, tzinfo=UTC),
                         None, None),
    "zero": (0, 0, None, None, None),
    "empty string": ("", "", None, None, None),
    "far future": ("9999-12-31T23:59:59Z", "2026-02-01T00:00:01Z", None, None, "started_at"),
    "year 1970 from a unit bug": (1.5, 3, None, None, "started_at ended_at"),
    "not a time": ("yesterday", "2026-02-01T00:00:01Z", None, None, "started_at"),
}


@pytest.mark.parametrize("case", list(TIMES))
def test_times_are_read_or_unknown(tmp_path: Path, case: str) -> None:
    start, end, expected, latency, left_out = TIMES[case]
    db = tmp_path / "t.db"
    data = {"id": "trc_t", "steps": [tool("a", started_at=start, ended_at=end)]}
    store, problems = store_traces(db, data)
    stored = store.get_trace("trc_t")
    store.close()
    step = stored.trace.steps[0]
    assert step.started_at == expected
    assert step.latency_ms == (None if latency is None else pytest.approx(latency))
    fields = [p.field for p in problems]
    assert fields == [f"steps.0.{f}" for f in (left_out or "").split()], problems
    for dt in (step.started_at, step.ended_at, stored.trace.started_at):
        assert dt is None or 1990 <= dt.year < 2100
    assert stored.totals.latency_ms is None or stored.totals.latency_ms >= 0
    out = show_text(db, "trc_t")
    if case == "end before start":
        assert "clock skew" in out
    # Shown as a date nowhere (a problem note may quote the value that was left out).
    assert "1970-01-01 " not in out and "9999-12-31 " not in out
    shown = show_json(db, "trc_t")["steps"][0]
    assert ("started_at" in shown) == (expected is not None)


def test_a_trace_with_only_unknown_times_lists_and_sorts_last(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store, _ = store_traces(db, {"id": "trc_none", "started_at": 0, "steps": [tool("a", started_at=0)]},
                            {"id": "trc_known", "started_at": "2026-02-01T00:00:00Z", "steps": [tool("a")]})
    assert [r.id for r in store.list_traces()] == ["trc_known", "trc_none"]
    store.close()
