"""The options every command shares, declared once: `--db`, the trace filters, `--json`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DbOpt = Annotated[
    Path | None,
    typer.Option("--db", help="The store file. Default: $LOUPE_DB, else the per-user data directory.",
                 show_default=False),
]
VersionOpt = Annotated[
    list[str] | None,
    typer.Option("--prompt-version", help="Only this prompt version (repeatable; VERSION or NAME@VERSION)."),
]
PromptOpt = Annotated[str | None, typer.Option("--prompt", help="Only traces of this prompt name.")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Only traces whose first model is this.")]
StatusOpt = Annotated[str | None, typer.Option("--status", help="ok or error.")]
ViolationsOpt = Annotated[bool, typer.Option("--violations", help="Only traces with findings.")]
RuleOpt = Annotated[str | None, typer.Option("--rule", help="Only traces with a finding of this rule ID.")]
SearchOpt = Annotated[str | None, typer.Option(
    "--search", help="Words in the trace's ID, name, model, messages or tool calls (the last may be cut short).")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Only traces started at or after this ISO time.")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Only traces started before this ISO time.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
