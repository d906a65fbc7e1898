"""Pricing: cached input is cheaper, reasoning is output, and unknown stays unknown."""

from __future__ import annotations

import pytest

from store.models import Step
from store.pricing import Pricer


def llm(model: str | None, provider: str | None = "openai", **usage: int) -> Step:
    return Step(id="x", type="llm", model=model, provider=provider, usage=usage or None)


def test_cached_tokens_cost_less_than_uncached() -> None:
    p = Pricer()
    cached = p.step_cost(llm("gpt-4o-mini-2024-07-18", input_tokens=412, output_tokens=27, cache_read_tokens=256))
    plain = p.step_cost(llm("gpt-4o-mini-2024-07-18", input_tokens=412, output_tokens=27))
    assert cached.computed is not None and plain.computed is not None
    assert cached.computed < plain.computed
    # gpt-4o-mini: $0.15/M input, $0.075/M cached input, $0.60/M output.
    assert cached.computed == pytest.approx((156 * 0.15 + 256 * 0.075 + 27 * 0.60) / 1e6)
    assert cached.priced_as == "openai/gpt-4o-mini"


def test_reasoning_tokens_are_part_of_output_and_not_billed_twice() -> None:
    p = Pricer()
    with_reasoning = p.step_cost(llm("gpt-4.1-mini", input_tokens=1000, output_tokens=500, reasoning_tokens=300))
    without = p.step_cost(llm("gpt-4.1-mini", input_tokens=1000, output_tokens=500))
    assert with_reasoning.computed == without.computed


def test_unknown_model_and_missing_usage_are_unknown_not_zero() -> None:
    p = Pricer()
    unknown = p.step_cost(llm("acme-finetune-2", provider=None, input_tokens=10, output_tokens=10))
    assert unknown.computed is None and "acme-finetune-2" in (unknown.reason or "")
    no_usage = p.step_cost(llm("gpt-4o"))
    assert no_usage.computed is None and no_usage.reason == "usage missing"
    no_model = p.step_cost(llm(None, input_tokens=10, output_tokens=10))
    assert no_model.computed is None


def test_model_families_are_not_confused() -> None:
    p = Pricer()
    mini = p.rate("gpt-4o-mini")
    big = p.rate("gpt-4o")
    assert mini is not None and big is not None
    assert mini.input is not None and big.input is not None and mini.input < big.input
    assert p.rate("openai/gpt-4o") == big
    assert p.rate("GPT-4O") == big


def test_each_model_is_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Pricer()
    calls = []
    original = p._resolve
    monkeypatch.setattr(p, "_resolve", lambda m, prov: calls.append(m) or original(m, prov))
    for _ in range(50):
        p.step_cost(llm("gpt-4.1-mini", input_tokens=5, output_tokens=5))
    assert calls == ["gpt-4.1-mini"]


def test_reported_cost_is_kept_apart_from_computed() -> None:
    step = Step(id="x", type="llm", model="gpt-4o", provider="openai", cost=0.5,
                usage={"input_tokens": 1000, "output_tokens": 100})
    c = Pricer().step_cost(step)
    assert c.reported == 0.5
    assert c.computed == pytest.approx((1000 * 2.5 + 100 * 10) / 1e6)


def test_inconsistent_usage_is_not_priced() -> None:
    c = Pricer().step_cost(llm("gpt-4o-mini", input_tokens=100, output_tokens=10, cache_read_tokens=500))
    assert c.computed is None and c.reason is not None and c.reason.startswith("usage inconsistent")


@pytest.mark.parametrize(("model", "priced_as"), [
    ("gemini-1.5-flash-8b", None),  # genai-prices finds it as "gemini-1.5-flash" (contains): another model
    ("gemini-1.5-flash-002", "google/gemini-1.5-flash"),
    ("claude-3-5-sonnet-20241022", "anthropic/claude-3-5-sonnet"),
    ("claude-3-5-sonnet-latest", "anthropic/claude-3-5-sonnet"),
    ("gpt-4o-mini", "openai/gpt-4o-mini"),
])
def test_a_looser_match_never_prices_another_variant(model: str, priced_as: str | None) -> None:
    rate = Pricer().rate(model)
    assert (rate.priced_as if rate else None) == priced_as
