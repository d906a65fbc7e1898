"""Masking of secrets and personal details before an eval case leaves the store: one value, one placeholder."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Config

# Order matters: the most specific patterns first, so a bearer token is not half-eaten as something else.
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("BEARER", re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=-]{8,}")),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    # Only the value after "password=" is masked (the group named v), so the key still says what it was.
    ("SECRET", re.compile(r"(?i)\b(?:password|passwd|pwd|secret|token|api_key|apikey)\s?[=:]\s?(?P<v>[^\s,;&\"']{4,})")),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b")),
    ("SSN", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("API_KEY", re.compile(r"\b(?:sk|pk|rk|whsec)_(?:live|test)_[A-Za-z0-9]{10,}\b|\b(?:sk|pk|rk)-(?:[A-Za-z0-9_-]{2,}-)?[A-Za-z0-9_-]{16,}\b|\bAKIA[0-9A-Z]{16}\b|\bghp_[A-Za-z0-9]{30,}\b|\bxox[abpr]-[A-Za-z0-9-]{10,}\b")),
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    ("CARD", re.compile(r"\b(?:\d[ -]?){12,18}\d\b")),
    # A phone number has separators or a leading +; a bare run of digits is more likely an order number.
    ("PHONE", re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?\(?\d{2,4}\)?[ .-]\d{3,4}[ .-]?\d{3,4}\b|\+\d{10,14}\b")),
]


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _canonical(kind: str, value: str) -> tuple[str, str]:
    if kind in ("CARD", "PHONE", "SSN"):
        return kind, re.sub(r"\D", "", value)
    if kind in ("EMAIL", "IBAN"):
        return kind, re.sub(r"\s", "", value).lower()
    return kind, value


class Masker:
    """Replaces each distinct secret with a stable placeholder such as <EMAIL_1> across everything it masks."""

    def __init__(self, extra_patterns: list[str] | None = None, *, builtin: bool = True,
                 keep: set[str] | frozenset[str] = frozenset()) -> None:
        # Configured patterns (customer IDs and the like) come first: "cus_8129" is an ID, not part of a phone.
        self.patterns = [("ID", re.compile(p)) for p in (extra_patterns or [])] + (list(PATTERNS) if builtin else [])
        self.keep = keep  # values a person chose to leave as they are (in the case preview)
        self.seen: dict[str, str] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    @classmethod
    def from_config(cls, config: Config | None = None, *, keep: set[str] | frozenset[str] = frozenset(),
                    extra: list[str] | None = None) -> Masker:
        """The masker a configuration asks for (its `masking` table), plus patterns added for one case."""
        settings = config.masking if config is not None else None
        patterns = list(settings.patterns) if settings is not None else []
        return cls(patterns + list(extra or []), builtin=settings.builtin if settings is not None else True,
                   keep=keep)

    def masked(self) -> list[tuple[str, str]]:
        """(placeholder, original) for every value masked so far, in the order first seen."""
        return [(ph, value) for value, ph in self.seen.items()]

    def _placeholder(self, kind: str, value: str) -> str:
        if value in self.keep:
            return value
        if value not in self.seen:
            # One value, one placeholder, however it is written: "4111 1111 1111 1111" is "4111111111111111",
            # "ALICE@EXAMPLE.COM" is "alice@example.com", "+1 (415) 555-0132" is "+1 415 555 0132".
            key = _canonical(kind, value)
            placeholder = self._by_key.get(key)
            if placeholder is None:
                self._counts[kind] = self._counts.get(kind, 0) + 1
                placeholder = self._by_key[key] = f"<{kind}_{self._counts[kind]}>"
            self.seen[value] = placeholder
        return self.seen[value]

    def text(self, s: str) -> str:
        for kind, pattern in self.patterns:
            def repl(m: re.Match[str], kind: str = kind) -> str:
                whole = m.group(0)
                if "v" in m.re.groupindex:
                    keep = whole[: m.start("v") - m.start()]
                    return keep + self._placeholder(kind, m.group("v"))
                if kind == "CARD" and not _luhn(re.sub(r"\D", "", whole)):
                    return whole
                return self._placeholder(kind, whole)

            s = pattern.sub(repl, s)
        return s

    def value(self, v: Any) -> Any:
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, dict):
            # Keys too: an email can be a key ({"alice@example.com": ...}) as well as a value.
            return {(self.text(k) if isinstance(k, str) else k): self.value(x) for k, x in v.items()}
        if isinstance(v, list):
            return [self.value(x) for x in v]
        return v
