"""Formatting shared by the TUI and the CLI: numbers that say "unknown" instead of 0, and inert trace text."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import TYPE_CHECKING, Any

from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console

    from store.models import TraceSummary

UNKNOWN = "?"
NOT_APPLICABLE = "-"  # nothing to know: a token or cost sum of a trace without LLM calls

# Characters that would act on the terminal or hide text: C0/C1 controls, DEL, bidi overrides, zero-widths.
_BIDI_AND_INVISIBLE = "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068\u2069\ufeff"
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f" + _BIDI_AND_INVISIBLE + "\ud800-\udfff]"
)


def _visible(match: re.Match[str]) -> str:
    ch = match.group(0)
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # control pictures: ESC shows as ␛
    if code == 0x7F:
        return "\u2421"
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return f"<U+{code:04X}>"


def inert(text: str, *, keep_newlines: bool = True) -> str:
    """Trace text made safe to print: escape sequences and invisible controls shown as visible symbols."""
    out = _UNSAFE.sub(_visible, text)
    if not keep_newlines:
        out = out.replace("\n", "\u23ce").replace("\t", " ")
    return out


def _stand_in(match: re.Match[str]) -> str:
    """One character for one: what `scrub` puts in place of an unsafe character, so styled spans stay put."""
    code = ord(match.group(0))
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    return "\ufffd"


def scrub(text: Text) -> Text:
    """The last line of defence for a finished Text: any unsafe character still in it (a field someone forgot to
    pass through `inert`) is replaced, one character for one, so the styles stay where they were. In place."""
    plain = text.plain
    if _UNSAFE.search(plain):
        text.plain = _UNSAFE.sub(_stand_in, plain)
    return text


def safe_text(text: object, style: str = "", *, keep_newlines: bool = True) -> Text:
    """A Rich Text of untrusted content: never parsed as markup, escapes shown inert."""
    return Text(inert(str(text), keep_newlines=keep_newlines), style=style)


def one_line(text: object, width: int | None = None) -> str:
    s = str(text)
    if width is not None and len(s) > width:
        # Cut before making it inert: a 5 MB name costs no more than a short one. Inert text is never shorter
        # than its source, so one extra character is enough to know that the cut is needed.
        s = s[: width + 1]
    s = inert(s, keep_newlines=False)
    if width is not None and len(s) > width:
        s = s[: max(width - 1, 0)] + "…"
    return s


def fmt_int(n: int | None) -> str:
    return UNKNOWN if n is None else f"{n:,}"


def fmt_tokens(n: int | None) -> str:
    if n is None:
        return UNKNOWN
    if n >= 100_000:
        return f"{n / 1000:,.0f}k"
    return f"{n:,}"


def fmt_token_sum(n: int | None, partial: bool = False) -> str:
    """A sum of token counts; one that leaves out steps whose usage is unknown is marked with a trailing "+"."""
    s = fmt_tokens(n)
    return s + "+" if partial and n is not None else s


def summary_tokens(row: TraceSummary) -> tuple[str, str]:
    """Input and output token sums of a trace list row: "-" when the trace made no LLM call (nothing unknown)."""
    if row.llm_calls == 0 and row.input_tokens is None and row.output_tokens is None:
        return NOT_APPLICABLE, NOT_APPLICABLE
    return fmt_token_sum(row.input_tokens, row.tokens_partial), fmt_token_sum(row.output_tokens, row.tokens_partial)


def summary_cost(row: TraceSummary) -> str:
    """The cost of a trace list row: "-" when the trace made no LLM call and reported no cost, "?" when unknown."""
    if row.llm_calls == 0 and row.cost is None:
        return NOT_APPLICABLE
    return fmt_cost(row.cost, row.cost_partial)


def fmt_cost(cost: float | None, partial: bool = False) -> str:
    """USD; unknown is "?", never $0. A partial sum is marked with a trailing "+"."""
    if cost is None:
        return UNKNOWN
    if cost == 0:
        s = "$0"
    elif abs(cost) < 1:
        # Three significant digits, never scientific notation: $0.0000588, $0.0123, $0.500.
        decimals = min(-math.floor(math.log10(abs(cost))) + 2, 12)
        s = f"${cost:.{decimals}f}"
    else:
        s = f"${cost:,.2f}"
    return s + ("+" if partial else "")


def fmt_latency(ms: float | None) -> str:
    if ms is None:
        return UNKNOWN
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f}s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f}m"
    if ms < 48 * 3_600_000:
        return f"{ms / 3_600_000:.1f}h"
    return f"{ms / 86_400_000:,.1f}d"  # a trace open for days: still short enough for its column


def fmt_time(iso: str | None) -> str:
    """The list's time column: "2026-01-14 10:02:11" from the store's ISO form."""
    if not iso:
        return UNKNOWN
    return iso[:19].replace("T", " ")


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _reader_left() -> None:
    raise BrokenPipeError  # the CLI ends such a command quietly with exit 0 (tui.cli._LoupeGroup.invoke)


def stdout_console(**kwargs: Any) -> Console:
    """A Rich console for a command's output: never parses markup or emoji in what it prints, and a reader that
    leaves early (`loupe ls | head`) is not an error (Rich itself would exit 1)."""
    from rich.console import Console

    options: dict[str, Any] = {"highlight": False, "markup": False, "emoji": False}
    console = Console(**{**options, **kwargs})
    console.on_broken_pipe = _reader_left  # type: ignore[method-assign]
    return console
