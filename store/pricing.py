"""Step costs from genai-prices' bundled price data: each model resolved once, never fetched online."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .models import Step, StepCost

_MTOK = 1_000_000


@dataclass(frozen=True)
class Rate:
    """Flat USD prices per million tokens for one model, or the genai-prices model for tiered prices."""

    priced_as: str
    input: float | None
    output: float | None
    cache_read: float | None
    cache_write: float | None
    tiered: object | None = None  # genai_prices ModelPrice when prices are not flat


# What a model name adds to the name it was matched by that makes it another model, not a snapshot of the same
# one: a size or tier ("-8b", "-mini", "-lite", "-pro"). Dates, "-latest" and "-preview" are the same model.
_VARIANT = re.compile(
    r"(?:^|[-_.:/ ])(?:mini|nano|lite|small|micro|tiny|pro|plus|max|ultra|turbo|large|medium|flash|haiku|sonnet|"
    r"opus|instant|\d+(?:\.\d+)?[bmk]|\d+x\d+b)(?=$|[-_.:/ ])", re.IGNORECASE)


def _clause_texts(clause: Any) -> list[str]:
    """Every name a genai-prices match clause compares with (equals, starts_with, contains, ends_with)."""
    out: list[str] = []
    for attr in ("equals", "starts_with", "contains", "ends_with"):
        v = getattr(clause, attr, None)
        if isinstance(v, str):
            out.append(v)
    for attr in ("or_", "and_"):
        for sub in getattr(clause, attr, None) or []:
            out.extend(_clause_texts(sub))
    return out


def _other_variant(model: str, clause: Any) -> bool:
    """Whether `model` was matched by a looser clause (contains, starts with) while naming another variant."""
    name = model.rsplit("/", 1)[-1].lower()
    texts = [t.lower() for t in _clause_texts(clause)]
    if name in texts:
        return False
    hits = [t for t in texts if t and t in name]
    if not hits:
        return False
    rest = name.replace(max(hits, key=len), " ", 1)
    return _VARIANT.search(rest) is not None


class Pricer:
    """Resolves a model's price once per (provider, model) and prices steps from it."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str | None, str], Rate | None] = {}
        # genai-prices (and the HTTP client it imports) is loaded on the first price asked for: commands that
        # only read stored costs, like `loupe show`, never pay the ~0.1 s it takes to import.
        self._snapshot: Any = None

    def rate(self, model: str | None, provider: str | None = None) -> Rate | None:
        if not model or not model.strip():
            return None
        key = (provider.lower() if provider else None, model.strip())
        if key in self._cache:
            return self._cache[key]
        rate = self._resolve(model.strip(), key[0])
        self._cache[key] = rate
        return rate

    def _resolve(self, model: str, provider: str | None) -> Rate | None:
        if self._snapshot is None:
            from genai_prices.data_snapshot import get_snapshot

            self._snapshot = get_snapshot()
        found = None
        attempts: list[tuple[str, str | None]] = [(model, provider)] if provider else []
        if "/" in model:
            # "openai/gpt-4o" (routers, LiteLLM): the prefix names the provider.
            prefix, _, rest = model.partition("/")
            attempts.append((rest, prefix.lower()))
        attempts.append((model, None))
        for ref, pid in attempts:
            try:
                found = self._snapshot.find_provider_model(ref, None, pid, None)
                break
            except LookupError:
                continue
        if found is None:
            return None
        prov, info = found
        if _other_variant(model, info.match):
            return None  # "gemini-1.5-flash-8b" found as "gemini-1.5-flash": another model's price would be wrong
        price = info.get_prices(datetime.now(tz=UTC))
        values = {k: getattr(price, k, None) for k in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")}
        flat = all(v is None or isinstance(v, Decimal) for v in values.values())

        def f(v: object) -> float | None:
            return float(v) if isinstance(v, Decimal) else None

        return Rate(
            priced_as=f"{prov.id}/{info.id}",
            input=f(values["input_mtok"]),
            output=f(values["output_mtok"]),
            cache_read=f(values["cache_read_mtok"]),
            cache_write=f(values["cache_write_mtok"]),
            tiered=None if flat else price,
        )

    def step_cost(self, step: Step) -> StepCost:
        """The cost of an LLM step. Unknown (None, with the reason) when usage or the price is missing."""
        reported = step.cost if step.cost is not None and step.cost >= 0 else None
        if step.type != "llm":
            return StepCost(reported=reported)
        usage = step.usage
        if usage is None or usage.input_tokens is None or usage.output_tokens is None:
            return StepCost(reported=reported, reason="usage missing")
        inconsistent = step.usage_problem  # cannot all be true: priced as unknown, never as a wrong figure or $0
        if inconsistent:
            return StepCost(reported=reported, reason=f"usage inconsistent: {inconsistent}")
        rate = self.rate(step.model, step.provider)
        if rate is None:
            return StepCost(reported=reported, reason=f"no price for model {step.model or '(none)'}")
        cache_read = usage.cache_read_tokens or 0
        cache_write = usage.cache_write_tokens or 0
        if rate.tiered is not None:
            from genai_prices import Usage as PriceUsage

            calc = rate.tiered.calc_price(  # type: ignore[attr-defined]
                PriceUsage(
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cache_read_tokens=cache_read,
                    cache_write_tokens=cache_write,
                )
            )
            return StepCost(computed=float(calc["total_price"]), reported=reported, priced_as=rate.priced_as)
        if rate.input is None or rate.output is None:
            return StepCost(reported=reported, reason=f"incomplete price for {rate.priced_as}")
        # Input tokens include cached ones (OTel convention): bill the uncached rest at the input rate.
        uncached = max(usage.input_tokens - cache_read - cache_write, 0)
        cost = uncached * rate.input
        cost += cache_read * (rate.cache_read if rate.cache_read is not None else rate.input)
        cost += cache_write * (rate.cache_write if rate.cache_write is not None else rate.input)
        # Output tokens include reasoning ones, which are billed at the output rate.
        cost += usage.output_tokens * rate.output
        return StepCost(computed=cost / _MTOK, reported=reported, priced_as=rate.priced_as)


_default: Pricer | None = None


def default_pricer() -> Pricer:
    global _default
    if _default is None:
        _default = Pricer()
    return _default
