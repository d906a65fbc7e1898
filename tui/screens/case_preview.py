"""The eval case preview (`E`): review and edit a case's group, name, expectation, assertions and masking first."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, SelectionList, Static, TextArea
from textual.widgets.selection_list import Selection

from store.db import Store, StoredTrace
from tui.format import inert, one_line
from tui.workers import ReportsWorkerFailures

if TYPE_CHECKING:
    from store.config import Config
    from store.models import Assertion, EvalCase

SHOWN = 90  # cells of a masked value or an assertion shown on one line


@dataclass
class _Built:
    case: EvalCase
    masked: list[tuple[str, str]]  # (placeholder, original)
    existing: str | None  # the ID of a case with the same content, if there is one


class CasePreview(ReportsWorkerFailures, ModalScreen["EvalCase | None"]):
    """The case as `e` would write it, editable. Dismisses with the edited case, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", id="preview.save"),
        Binding("escape", "cancel", "Cancel", id="preview.cancel"),
    ]

    @dataclass
    class _Loaded(Message):
        built: _Built

    def __init__(self, store: Store, trace_id: str, config: Config | None = None) -> None:
        super().__init__()
        self.store = store
        self.trace_id = trace_id
        self.config = config
        self.keep: set[str] = set()  # originals the person unticked: left as they are
        self.extra_patterns: list[str] = []  # regular expressions added here, masked as <ID_n>
        self.built: _Built | None = None
        self._stored: StoredTrace | None = None
        # Assertions as listed: index -> assertion; the derived ones first, then the ones typed in.
        self.assertions: list[Assertion] = []
        self.added: list[Assertion] = []
        self._edited = False  # once loaded, the form's fields are the person's, not rebuilt over

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="preview-dialog"):
            yield Static(Text.assemble(("New eval case", "bold"), " from ", (one_line(self.trace_id, 60), "cyan")),
                         id="preview-title")
            yield Static(Text("building the case…", style="dim"), id="preview-status")
            yield Label("Group")
            yield Input(id="preview-group", placeholder="e.g. Tool failure handling")
            yield Label("Name")
            yield Input(id="preview-name")
            yield Label("Expected behaviour")
            yield TextArea(id="preview-expected", soft_wrap=True, show_line_numbers=False)
            yield Label("Assertions (space: keep or leave out)")
            yield SelectionList[int](id="preview-assertions")
            yield Input(id="preview-add", placeholder="add: contains ticket · not-contains /refund(ed)? done/ · "
                        "must-call create_ticket · must-not-call issue_refund · no-finding RULE · max-cost 0.05 · "
                        "max-latency-seconds 5 · max-tokens 5000  (enter)")
            yield Label("Masked before writing (space: untick to keep a value as it is)")
            yield SelectionList[str](id="preview-masked")
            yield Input(id="preview-mask", placeholder="also mask: a regular expression such as cus_\\w+  (enter)")
            with Horizontal(id="preview-buttons"):
                yield Button("Save  ctrl+s", id="preview-save", variant="primary", disabled=True)
                yield Button("Cancel  esc", id="preview-cancel")

    def on_mount(self) -> None:
        self._build()

    # ------------------------------------------------------------------ building the case (off the UI thread)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False, description="building the eval case")
    def _build(self) -> None:
        from store.evals import build_case
        from store.masking import Masker

        masker = Masker.from_config(self.config, keep=frozenset(self.keep), extra=self.extra_patterns)
        # Read once: toggling a masked value or adding a pattern only builds the case again.
        stored = self._stored = self._stored or self.store.get_trace(self.trace_id)
        case = build_case(stored, masker=masker, config=self.config)
        found = self.store.find_case(case.content_hash)
        self.post_message(self._Loaded(_Built(case, masker.masked(), found[0] if found else None)))

    def on_case_preview__loaded(self, message: _Loaded) -> None:
        built = self.built = message.built
        case = built.case
        status = self.query_one("#preview-status", Static)
        if built.existing:
            status.update(Text.assemble(("Already a case: ", "bold yellow"), one_line(built.existing, 40),
                                        " (saving again changes nothing)"))
        else:
            status.update(Text.assemble(("case ", "dim"), (case.id, "bold"), ("  ·  tool results to replay: ", "dim"),
                                        str(len(case.tool_results)), ("  ·  input messages: ", "dim"),
                                        str(len(case.input))))
        if not self._edited:
            self._edited = True
            self.query_one("#preview-group", Input).value = one_line(case.group, 200)
            self.query_one("#preview-name", Input).value = one_line(case.name, 200)
            self.query_one("#preview-expected", TextArea).text = inert(case.expected)
            self.assertions = list(case.assertions)
            self._fill_assertions(set(range(len(self.assertions))))
        masked = self.query_one("#preview-masked", SelectionList)
        masked.clear_options()
        shown: list[Selection[str]] = []
        for placeholder, original in built.masked:
            label = Text.assemble((placeholder, "bold"), ("  ←  ", "dim"), one_line(original, SHOWN))
            shown.append(Selection(label, original, True))
        for original in sorted(self.keep):
            label = Text.assemble(("kept", "yellow"), ("  ←  ", "dim"), one_line(original, SHOWN))
            shown.append(Selection(label, original, False))
        if not shown:
            masked.add_option(Selection(Text("nothing to mask was found", style="dim"), "", False, disabled=True))
        masked.add_options(shown)
        self.query_one("#preview-save", Button).disabled = False
        self.query_one("#preview-group", Input).focus()

    def _fill_assertions(self, selected: set[int]) -> None:
        widget = self.query_one("#preview-assertions", SelectionList)
        widget.clear_options()
        widget.add_options([
            Selection(Text.assemble((a.type, "cyan"), "  ", one_line(a.description, SHOWN)), i, i in selected)
            for i, a in enumerate(self.assertions)
        ])

    # ------------------------------------------------------------------ edits

    @on(Input.Submitted, "#preview-add")
    def _add_assertion(self, event: Input.Submitted) -> None:
        from store.evals import parse_assertion

        event.stop()
        try:
            assertion = parse_assertion(event.value)
        except ValueError as exc:
            self.notify(one_line(str(exc), 300), title="Assertion", severity="warning", markup=False)
            return
        widget = self.query_one("#preview-assertions", SelectionList)
        selected = set(widget.selected)
        self.assertions.append(assertion)
        selected.add(len(self.assertions) - 1)
        self._fill_assertions(selected)
        event.input.value = ""

    @on(SelectionList.SelectionToggled, "#preview-masked")
    def _mask_toggled(self, event: SelectionList.SelectionToggled[str]) -> None:
        event.stop()
        value = event.selection.value
        if not value:
            return
        if value in self.keep:
            self.keep.discard(value)
        else:
            self.keep.add(value)
        self._build()

    @on(Input.Submitted, "#preview-mask")
    def _add_mask(self, event: Input.Submitted) -> None:
        event.stop()
        pattern = event.value.strip()
        if not pattern:
            return
        try:
            re.compile(pattern)
        except re.error as exc:
            self.notify(f"not a regular expression: {exc}", title="Mask", severity="warning", markup=False)
            return
        self.extra_patterns.append(pattern)
        event.input.value = ""
        self._build()

    # ------------------------------------------------------------------ closing

    def edited_case(self) -> EvalCase | None:
        """The case as the form now says, or None before it is built."""
        if self.built is None:
            return None
        chosen = set(self.query_one("#preview-assertions", SelectionList).selected)
        group = self.query_one("#preview-group", Input).value.strip() or self.built.case.group
        name = self.query_one("#preview-name", Input).value.strip() or self.built.case.name
        expected = self.query_one("#preview-expected", TextArea).text.strip()
        return self.built.case.model_copy(update={
            "group": group,
            "name": name,
            "expected": expected,
            "assertions": [a for i, a in enumerate(self.assertions) if i in chosen],
        })

    @on(Button.Pressed, "#preview-save")
    def _save_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_save()

    @on(Button.Pressed, "#preview-cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_cancel()

    def action_save(self) -> None:
        case = self.edited_case()
        if case is None:
            return
        if not case.assertions:
            self.notify("A case needs at least one assertion to be scored.", title="Save", severity="warning",
                        markup=False)
            return
        self.dismiss(case)

    def action_cancel(self) -> None:
        self.dismiss(None)
