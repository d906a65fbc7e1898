"""traceloupe's core: traces, the SQLite store, importers, pricing, rules and eval cases. No screen code here."""
