"""traceloupe's user interface: the typer CLI, the Textual app and Rich output."""
