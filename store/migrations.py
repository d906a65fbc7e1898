"""The store's schema, only ever as a list of named migrations. Never edit one that has shipped: add a new one."""

from __future__ import annotations

from collections.abc import Callable

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("traceloupe")

# The newest migration this program knows; a store that has applied others is from a newer loupe.
KNOWN: list[str] = []


def _known(fn: Callable[[Database], None]) -> Callable[[Database], None]:
    KNOWN.append(fn.__name__)
    return migrations()(fn)


@_known
def m001_initial(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE traces (
            id TEXT PRIMARY KEY,
            name TEXT,
            prompt_name TEXT,
            prompt_version TEXT,
            model TEXT,
            started_at TEXT,
            ended_at TEXT,
            user_id TEXT,
            session_id TEXT,
            steps INTEGER NOT NULL DEFAULT 0,
            llm_calls INTEGER NOT NULL DEFAULT 0,
            tool_calls INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cache_read_tokens INTEGER,
            reasoning_tokens INTEGER,
            usage_unknown_steps INTEGER NOT NULL DEFAULT 0,
            cost REAL,
            cost_unknown_steps INTEGER NOT NULL DEFAULT 0,
            latency_ms REAL,
            status TEXT NOT NULL DEFAULT 'ok',
            errors INTEGER NOT NULL DEFAULT 0,
            findings INTEGER NOT NULL DEFAULT 0,
            worst_severity TEXT,
            partial INTEGER NOT NULL DEFAULT 0,
            source TEXT,
            header TEXT NOT NULL,
            rule_runs TEXT NOT NULL DEFAULT '[]',
            ingested_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE steps (
            trace_id TEXT NOT NULL REFERENCES traces(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            id TEXT NOT NULL,
            parent_id TEXT,
            type TEXT NOT NULL,
            name TEXT,
            model TEXT,
            status TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cost_computed REAL,
            cost_reported REAL,
            cost_note TEXT,
            started_at TEXT,
            latency_ms REAL,
            data TEXT NOT NULL,
            PRIMARY KEY (trace_id, idx)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE findings (
            trace_id TEXT NOT NULL REFERENCES traces(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            rule_id TEXT NOT NULL,
            severity TEXT NOT NULL,
            message TEXT NOT NULL,
            evidence TEXT NOT NULL,
            quote TEXT,
            data TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (trace_id, idx)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE eval_cases (
            id TEXT PRIMARY KEY,
            trace_id TEXT NOT NULL,
            content_hash TEXT NOT NULL UNIQUE,
            grp TEXT NOT NULL,
            name TEXT NOT NULL,
            path TEXT,
            created_at TEXT NOT NULL,
            data TEXT NOT NULL
        )
        """
    )
    # The list is read newest first, whole or filtered; each filter has an index that ends in the sort key.
    db.execute("CREATE INDEX traces_started ON traces(started_at DESC, id DESC)")
    db.execute("CREATE INDEX traces_version ON traces(prompt_version, started_at DESC, id DESC)")
    db.execute("CREATE INDEX traces_prompt ON traces(prompt_name, prompt_version, started_at DESC, id DESC)")
    db.execute("CREATE INDEX traces_model ON traces(model, started_at DESC, id DESC)")
    db.execute("CREATE INDEX traces_status ON traces(status, started_at DESC, id DESC)")
    db.execute("CREATE INDEX traces_findings ON traces(started_at DESC, id DESC) WHERE findings > 0")
    db.execute("CREATE INDEX findings_rule ON findings(rule_id, trace_id)")
    db.execute("CREATE INDEX eval_cases_trace ON eval_cases(trace_id)")


@_known
def m002_eval_results(db: Database) -> None:
    # One row per case, prompt version and run (a run scores the candidate and the baseline): which trace was
    # scored, and how it went.
    db.execute(
        """
        CREATE TABLE eval_results (
            run_id TEXT NOT NULL,
            case_id TEXT NOT NULL,
            grp TEXT NOT NULL,
            prompt_name TEXT,
            prompt_version TEXT,
            trace_id TEXT,
            status TEXT NOT NULL,
            ran_at TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    db.execute("CREATE INDEX eval_results_case ON eval_results(case_id, ran_at DESC)")
    db.execute("CREATE INDEX eval_results_version ON eval_results(prompt_name, prompt_version, ran_at DESC)")
