"""Demo traces of a support assistant, loaded by `loupe demo`."""

from __future__ import annotations

from pathlib import Path

DIR = Path(__file__).resolve().parent


def files() -> list[Path]:
    return sorted(DIR.glob("*.jsonl"))
