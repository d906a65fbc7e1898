"""Hostile numbers (issue 8): usage missing, null, zero with output, inconsistent or negative; costs as strings or
negative; oddly spelled models. The right price or "unknown", never $0, never another family's price."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from store.pricing import Pricer
from tests.fixtures.hostile.traces import llm, show_json, show_text, store_traces, trace

# genai-prices' bundled data, per million tokens, input / output.
GPT_4O = (2.5, 10.0)
GPT_4O_MINI = (0.15, 0.6)


def _cost(tokens_in: int, tokens_out: int, rate: tuple[float, float]) -> float:
    return (tokens_in * rate[0] + tokens_out * rate[1]) / 1_000_000


# (usage given, cost expected or None for unknown, whether usage-missing flags it, the field reported left out)
USAGE_CASES: dict[str, tuple[Any, float | None, bool, str | None]] = {
    "absent": ("absent", None, True, None),
    "null": (None, None, True, None),
    "empty object": ({}, None, True, None),
    "zero with output": ({"input_tokens": 0, "output_tokens": 0}, None, True, None),
    "zero output with output": ({"input_tokens": 1000, "output_tokens": 0}, None, True, None),
    "cache above input": ({"input_tokens": 10, "output_tokens": 5, "cache_read_tokens": 100}, None, True, None),
    "reasoning above output": ({"input_tokens": 10, "output_tokens": 5, "reasoning_tokens": 50}, None, True, None),
    "negative input": ({"input_tokens": -1000, "output_tokens": 100}, None, True, "usage.input_tokens"),
    "fractional output": ({"input_tokens": 1000, "output_tokens": 1.5}, None, True, "usage.output_tokens"),
    "counts as strings": ({"input_tokens": "1000", "output_tokens": "100"}, _cost(1000, 100, GPT_4O_MINI), False,
                          None),
    "true as a count": ({"input_tokens": True, "output_tokens": 100}, None, True, "usage.input_tokens"),
    "honest": ({"input_tokens": 1000, "output_tokens": 100}, _cost(1000, 100, GPT_4O_MINI), False, None),
}


@pytest.mark.parametrize("case", list(USAGE_CASES))
def test_usage_is_priced_or_unknown_and_flagged(tmp_path: Path, case: str) -> None:
    usage, expected, flagged, left_out = USAGE_CASES[case]
    step = llm("a") if usage == "absent" else llm("a", usage=usage)
    if usage == "absent":
        del step["usage"]
    db = tmp_path / "n.db"
    store, problems = store_traces(db, trace("trc_n", [step]))
    stored = store.get_trace("trc_n")
    store.close()
    cost = stored.costs["a"]
    if expected is None:
        assert cost.computed is None and cost.reason, cost
        assert stored.totals.cost is None and stored.totals.cost_partial
    else:
        assert cost.computed == pytest.approx(expected)
        assert stored.totals.cost == pytest.approx(expected)
    rules = [f.rule_id for f in stored.findings]
    assert ("usage-missing" in rules) == flagged, rules
    if left_out:
        assert [p.field for p in problems] == [f"steps.0.{left_out}"], problems
        assert stored.trace.partial
    for token in (stored.totals.input_tokens, stored.totals.output_tokens):
        assert token is None or token >= 0
    out = show_text(db, "trc_n")
    if expected is None:
        assert "cost ?" in out and "$0 " not in out and "$0\n" not in out
    data = show_json(db, "trc_n")
    assert data["steps"][0]["cost_computed"] == (None if expected is None else pytest.approx(expected))


def test_zero_usage_with_an_answer_is_named_in_the_finding(tmp_path: Path) -> None:
    store, _ = store_traces(tmp_path / "z.db", trace("trc_z", [llm("a", usage={"input_tokens": 0,
                                                                                "output_tokens": 0})]))
    stored = store.get_trace("trc_z")
    store.close()
    [finding] = [f for f in stored.findings if f.rule_id == "usage-missing"]
    assert "0 output tokens reported for a non-empty output" in finding.message and finding.evidence == ["a"]
    assert "0 output tokens" in (stored.costs["a"].reason or "")


def test_zero_output_tokens_without_an_answer_is_a_real_zero(tmp_path: Path) -> None:
    """A call that produced nothing may honestly report 0 output tokens: priced, not flagged."""
    step = llm("a", usage={"input_tokens": 1000, "output_tokens": 0}, output={"role": "assistant", "content": ""})
    store, _ = store_traces(tmp_path / "z.db", trace("trc_z", [step]))
    stored = store.get_trace("trc_z")
    store.close()
    assert stored.costs["a"].computed == pytest.approx(_cost(1000, 0, GPT_4O_MINI))
    assert "usage-missing" not in [f.rule_id for f in stored.findings]


# (cost given, reported cost kept or None, field reported left out)
COST_CASES: dict[str, tuple[Any, float | None, bool]] = {
    "number": (0.25, 0.25, False),
    "string": ("0.25", 0.25, False),
    "dollar string": ("$0.25", 0.25, False),
    "negative": (-1, None, True),
    "negative string": ("-0.5", None, True),
    "NaN": ("NaN", None, True),
    "infinite": ("inf", None, True),
    "words": ("free", None, True),
    "true": (True, None, True),
}


@pytest.mark.parametrize("case", list(COST_CASES))
def test_reported_costs_are_read_or_left_out_never_zero(tmp_path: Path, case: str) -> None:
    given, kept, left_out = COST_CASES[case]
    step = llm("a", cost=given)
    del step["usage"]  # no usage: only the reported cost can say what the call cost
    db = tmp_path / "c.db"
    store, problems = store_traces(db, trace("trc_c", [step]))
    stored = store.get_trace("trc_c")
    store.close()
    assert stored.costs["a"].reported == (None if kept is None else pytest.approx(kept))
    assert stored.totals.cost == (None if kept is None else pytest.approx(kept))
    assert [p.field for p in problems] == (["steps.0.cost"] if left_out else [])
    if kept is None:
        assert "$0" not in show_text(db, "trc_c").split("steps", 1)[0]  # the totals line says "?", not $0


# Model names as instrumentation writes them, with the price they must get (None: unknown).
MODELS: dict[str, tuple[str | None, str | None, tuple[float, float] | None]] = {
    "plain": ("gpt-4o", None, GPT_4O),
    "router prefix": ("openai/gpt-4o", None, GPT_4O),
    "upper case": ("GPT-4O", None, GPT_4O),
    "dated snapshot": ("gpt-4o-2024-08-06", None, GPT_4O),
    "spaces around": ("  gpt-4o \n", None, GPT_4O),
    "azure model name": ("gpt-4o", "azure", GPT_4O),
    "mini": ("gpt-4o-mini", None, GPT_4O_MINI),
    "mini upper with prefix": ("OpenAI/GPT-4O-MINI", None, GPT_4O_MINI),
    "mini dated": ("gpt-4o-mini-2024-07-18", None, GPT_4O_MINI),
    "mini on azure": ("gpt-4o-mini", "azure", GPT_4O_MINI),
    "azure deployment name": ("prod-chat-deployment", "azure", None),
    "deployment named after the model": ("gpt4o-eastus-prod", "azure", None),
    "empty": ("", None, None),
    "blank": ("   ", None, None),
    "absent": (None, None, None),
    "unknown": ("no-such-model-xyz", "openai", None),
}


@pytest.mark.parametrize("case", list(MODELS))
def test_model_names_get_their_own_price_or_unknown(tmp_path: Path, case: str) -> None:
    model, provider, rate = MODELS[case]
    step = llm("a", model=model, provider=provider)
    db = tmp_path / "m.db"
    store, _ = store_traces(db, trace("trc_m", [step]))
    stored = store.get_trace("trc_m")
    store.close()
    cost = stored.costs["a"]
    if rate is None:
        assert cost.computed is None and "no price" in (cost.reason or ""), cost
        assert "cost ? [1 unpriced]" in show_text(db, "trc_m")
    else:
        assert cost.computed == pytest.approx(_cost(1000, 100, rate)), (cost.priced_as, cost.computed)


def test_mini_models_never_get_the_full_models_price() -> None:
    """Every spelling of gpt-4o-mini resolves to a mini price; none to gpt-4o's (real genai-prices data)."""
    pricer = Pricer()
    full = pricer.rate("gpt-4o")
    assert full is not None and (full.input, full.output) == GPT_4O
    for name in ("gpt-4o-mini", "GPT-4O-MINI", "openai/gpt-4o-mini", "gpt-4o-mini-2024-07-18",
                 "OpenAI/GPT-4o-mini-2024-07-18", "gpt-4o-mini-search-preview", "gpt-4o-mini-audio-preview"):
        for provider in (None, "openai", "azure"):
            rate = pricer.rate(name, provider)
            assert rate is not None, (name, provider)
            assert "mini" in rate.priced_as and (rate.input, rate.output) != GPT_4O, (name, provider, rate)
