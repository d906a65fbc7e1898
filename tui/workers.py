"""The one place where failed background work becomes a visible notification."""

from __future__ import annotations

from textual.dom import DOMNode
from textual.worker import Worker, WorkerState

from tui.format import inert


def report_worker_failure(node: DOMNode, event: Worker.StateChanged) -> None:
    """Notify the error of a worker that failed; other state changes are ignored.

    Worker state messages do not bubble, so every node that runs workers forwards them here.
    """
    if event.state != WorkerState.ERROR:
        return
    worker = event.worker
    what = worker.description or worker.name or "background task"
    error = worker.error
    detail = f"{type(error).__name__}: {error}" if error is not None else "unknown error"
    # The error text may quote trace content: never parse it as markup.
    node.app.notify(inert(f"{what} failed: {detail}"), title="Error", severity="error", markup=False, timeout=10)


class ReportsWorkerFailures:
    """Mixin for widgets and screens that run workers: failures are notified, not swallowed."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        assert isinstance(self, DOMNode)
        report_worker_failure(self, event)
