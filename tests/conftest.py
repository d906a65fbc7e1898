"""Shared fixtures: every test gets its own store path, and the seed trace as native data."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("LOUPE_REAL_TRACES", ROOT.parent / "shared" / "real_traces"))
needs_real = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"{REAL} is absent: the real trace files live beside the project in CI"
)

SEED: dict[str, Any] = {
    "id": "trc_7J4k9",
    "name": "support_agent",
    "prompt": {"name": "support_agent", "version": "v7"},
    "started_at": "2026-01-14T10:02:11.204Z",
    "ended_at": "2026-01-14T10:02:14.921Z",
    "user_id": "usr_1",
    "input": "Cancel my subscription and refund the last charge.",
    "output": "I've canceled your subscription and processed the refund.",
    "steps": [
        {"id": "s1", "type": "llm", "name": "support_agent_v7", "model": "gpt-4.1-mini", "provider": "openai",
         "params": {"temperature": 0.2, "max_tokens": 700},
         "started_at": "2026-01-14T10:02:11.204Z", "ended_at": "2026-01-14T10:02:12.900Z",
         "messages": [{"role": "system", "content": "You are a support agent."},
                      {"role": "user", "content": "Cancel my subscription and refund the last charge."}],
         "output": {"role": "assistant", "content": None, "tool_calls": [
             {"id": "call_1", "name": "get_subscription_plan", "arguments": {"customer_id": "cus_8129"}},
             {"id": "call_2", "name": "issue_refund", "arguments": {"customer_id": "cus_8129", "amount": "last_charge"}}]},
         "usage": {"input_tokens": 2842, "output_tokens": 188, "cache_read_tokens": 0}},
        {"id": "s2", "type": "tool", "name": "get_subscription_plan", "tool_call_id": "call_1",
         "arguments": {"customer_id": "cus_8129"}, "result": {"plan": "Pro", "renewal_date": "2026-02-01"},
         "status": "ok", "started_at": "2026-01-14T10:02:12.910Z", "ended_at": "2026-01-14T10:02:13.010Z"},
        {"id": "s3", "type": "tool", "name": "issue_refund", "tool_call_id": "call_2",
         "arguments": {"customer_id": "cus_8129", "amount": "last_charge"}, "status": "error",
         "error": {"type": "permission_denied", "message": "agent role may not issue refunds"},
         "started_at": "2026-01-14T10:02:13.020Z", "ended_at": "2026-01-14T10:02:13.200Z"},
        {"id": "s4", "type": "llm", "name": "support_agent_v7", "model": "gpt-4.1-mini", "provider": "openai",
         "started_at": "2026-01-14T10:02:13.210Z", "ended_at": "2026-01-14T10:02:14.921Z",
         "messages": [{"role": "user", "content": "Cancel my subscription and refund the last charge."}],
         "output": {"role": "assistant", "content": "I've canceled your subscription and processed the refund."},
         "usage": {"input_tokens": 3120, "output_tokens": 14}},
    ],
}


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOUPE_DB", str(tmp_path / "loupe.db"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def seed() -> dict[str, Any]:
    return copy.deepcopy(SEED)


def make_trace(i: int, version: str = "v6", **over: Any) -> dict[str, Any]:
    """A small honest trace: one model call answering from the help center."""
    t: dict[str, Any] = {
        "id": f"trc_t{i:04d}", "name": "support_agent", "prompt": {"name": "support_agent", "version": version},
        "started_at": f"2026-01-{1 + i // 24 % 28:02d}T{i % 24:02d}:00:00Z",
        "input": "How do I change my card?",
        "output": "Go to Settings, then Billing.",
        "steps": [{"id": "a", "type": "llm", "model": "gpt-4o-mini", "provider": "openai",
                   "started_at": f"2026-01-{1 + i // 24 % 28:02d}T{i % 24:02d}:00:00Z",
                   "ended_at": f"2026-01-{1 + i // 24 % 28:02d}T{i % 24:02d}:00:01Z",
                   "messages": [{"role": "user", "content": "How do I change my card?"}],
                   "output": {"role": "assistant", "content": "Go to Settings, then Billing."},
                   "usage": {"input_tokens": 100, "output_tokens": 10}}],
    }
    t.update(over)
    return t
