"""Where code lives: store/ never imports screen code, and `show` never pays for Textual."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_store_imports_no_screen_code() -> None:
    modules = [p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
               for p in (ROOT / "store").rglob("*.py") if p.name != "__init__.py"]
    assert "store.db" in modules and "store.importers.native" in modules
    loaded = _modules_after("\n".join(f"import {m}" for m in modules))
    assert not {m.split(".")[0] for m in loaded} & {"textual", "rich", "typer"}


def test_plain_commands_do_not_import_textual(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom store.db import Store\nfrom tui import cli\n"
        f"Store({db!r}).close()\n"
        f"r = CliRunner().invoke(cli.app, ['ls', '--db', {db!r}])\n"
        "assert r.exit_code == 0, r.output\n"
    )
    loaded = _modules_after(code)
    assert "tui.render" in loaded
    assert "textual" not in loaded
