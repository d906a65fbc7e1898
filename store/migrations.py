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


@_known
def m003_search(db: Database) -> None:
    # Full-text search over what a trace says (IDs, names, models, messages, tool arguments and results, errors):
    # one document per trace in a contentless FTS5 table, so the text is not stored twice. `search_docs` gives each
    # trace a document number of its own: an INTEGER PRIMARY KEY survives VACUUM, which may renumber the traces
    # table's implicit rowids. Documents are written at ingest (store.db.search_text says what goes in).
    db.execute("CREATE TABLE search_docs (doc INTEGER PRIMARY KEY, trace_id TEXT NOT NULL UNIQUE)")
    db.execute(
        "CREATE VIRTUAL TABLE trace_search USING fts5(body, content='', tokenize='unicode61 remove_diacritics 2')"
    )
    from .db import index_existing_traces  # the store module imports this one: imported when the migration runs

    index_existing_traces(db.conn)


# m004: `loupe versions` and `loupe gate` read per-version numbers from sums kept up to date by triggers, so that
# the version table reads one row per version and hour instead of every trace. Frozen with the migration: a later
# change to what is summed is a new migration.
_M004_SUMS: tuple[tuple[str, str, str], ...] = (
    # (column, type, the value one trace {r} adds)
    ("traces", "INTEGER", "1"),
    ("with_findings", "INTEGER", "{r}.findings > 0"),
    ("error_findings", "INTEGER", "{r}.worst_severity IS 'error'"),
    ("failed", "INTEGER", "{r}.errors > 0"),
    # Traces on which the tool-error rule did not run (switched off): their tool errors are unknown, not none.
    ("tool_rule_off", "INTEGER",
     "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid({r}.rule_runs) THEN {r}.rule_runs ELSE '[]' END) AS j "
     "WHERE CASE WHEN j.type = 'object' THEN json_extract(j.value, '$.rule_id') = 'tool-error' "
     "AND json_extract(j.value, '$.ran') = 0 END)"),
    # Cost: a trace with no unpriced model call has a known cost (nothing priced at all is $0); the others are
    # unknown, and only the known part of their cost is summed apart.
    ("cost_n", "INTEGER", "{r}.cost_unknown_steps = 0"),
    ("cost_sum", "REAL", "CASE WHEN {r}.cost_unknown_steps = 0 THEN coalesce({r}.cost, 0) ELSE 0 END"),
    ("cost_sq", "REAL", "CASE WHEN {r}.cost_unknown_steps = 0 THEN coalesce({r}.cost, 0) * coalesce({r}.cost, 0) "
                        "ELSE 0 END"),
    ("cost_unknown", "INTEGER", "{r}.cost_unknown_steps > 0"),
    ("cost_partial_sum", "REAL", "CASE WHEN {r}.cost_unknown_steps > 0 THEN coalesce({r}.cost, 0) ELSE 0 END"),
    ("latency_n", "INTEGER", "{r}.latency_ms IS NOT NULL"),
    ("latency_sum", "REAL", "coalesce({r}.latency_ms, 0)"),
    # Tokens likewise: summed over traces whose every model call reported usage.
    ("usage_n", "INTEGER", "{r}.usage_unknown_steps = 0"),
    ("input_sum", "INTEGER", "CASE WHEN {r}.usage_unknown_steps = 0 THEN coalesce({r}.input_tokens, 0) ELSE 0 END"),
    ("input_sq", "REAL", "CASE WHEN {r}.usage_unknown_steps = 0 "
                         "THEN CAST(coalesce({r}.input_tokens, 0) AS REAL) * coalesce({r}.input_tokens, 0) ELSE 0 END"),
    ("output_sum", "INTEGER",
     "CASE WHEN {r}.usage_unknown_steps = 0 THEN coalesce({r}.output_tokens, 0) ELSE 0 END"),
    ("output_sq", "REAL", "CASE WHEN {r}.usage_unknown_steps = 0 "
                          "THEN CAST(coalesce({r}.output_tokens, 0) AS REAL) * coalesce({r}.output_tokens, 0) "
                          "ELSE 0 END"),
    # Cached and reasoning shares only over traces that report them (absent is unknown, not 0).
    ("cached_base", "INTEGER", "CASE WHEN {r}.usage_unknown_steps = 0 AND {r}.cache_read_tokens IS NOT NULL "
                               "THEN coalesce({r}.input_tokens, 0) ELSE 0 END"),
    ("cached_sum", "INTEGER",
     "CASE WHEN {r}.usage_unknown_steps = 0 THEN coalesce({r}.cache_read_tokens, 0) ELSE 0 END"),
    ("reasoning_base", "INTEGER", "CASE WHEN {r}.usage_unknown_steps = 0 AND {r}.reasoning_tokens IS NOT NULL "
                                  "THEN coalesce({r}.output_tokens, 0) ELSE 0 END"),
    ("reasoning_sum", "INTEGER",
     "CASE WHEN {r}.usage_unknown_steps = 0 THEN coalesce({r}.reasoning_tokens, 0) ELSE 0 END"),
    ("llm_sum", "INTEGER", "{r}.llm_calls"),
    ("llm_sq", "REAL", "CAST({r}.llm_calls AS REAL) * {r}.llm_calls"),
    ("tool_sum", "INTEGER", "{r}.tool_calls"),
    ("tool_sq", "REAL", "CAST({r}.tool_calls AS REAL) * {r}.tool_calls"),
)
# The columns of traces the sums read: an UPDATE of any of them moves the trace's share of the sums.
_M004_READS = ("prompt_name", "prompt_version", "started_at", "model", "findings", "worst_severity", "errors",
               "rule_runs", "cost", "cost_unknown_steps", "latency_ms", "usage_unknown_steps", "input_tokens",
               "output_tokens", "cache_read_tokens", "reasoning_tokens", "llm_calls", "tool_calls")


def _m004_over(data: str, j: str) -> tuple[str, str]:
    """The entries of a budget-exceeded finding's data "over" list as a FROM item, and the metric each names. Never
    an error, whatever the data holds: a trigger that raised would keep the trace out of the store."""
    return (f"json_each(CASE WHEN json_valid({data}) THEN {data} ELSE '{{}}' END, '$.over') AS {j}",
            f"CASE WHEN {j}.type = 'object' THEN json_extract({j}.value, '$.metric') END")


def _m004_metrics(data: str) -> str:
    """The metrics one finding's data lists (data: NEW.data or OLD.data), as a subquery of `metric`."""
    over, metric = _m004_over(data, "j")
    return f"(SELECT DISTINCT {metric} AS metric FROM {over} WHERE metric IS NOT NULL)"


def _m004_count(at: tuple[str, str, str], kind: str, key: str, *, traces: str, items: str, sign: str) -> list[str]:
    """Add (sign +) or take away (sign -) traces and items from the (version, hour, kind, key) count rows; rows that
    reach zero traces are removed. `at` is (name, version, hour) as expressions; `key` is an expression (compared
    with IS: a model may be NULL) or a subquery whose `metric` column lists several keys."""
    name, version, hour = at
    match = f"prompt_name IS {name} AND prompt_version IS {version} AND kind = '{kind}' AND hour IS {hour}"
    several = key.startswith("(SELECT")
    keys = f"key IN (SELECT metric FROM {key})" if several else f"key IS {key}"
    out = []
    if sign == "+":
        source = key if several else f"(SELECT {key} AS metric)"
        out.append(
            f"INSERT INTO version_counts (prompt_name, prompt_version, kind, key, hour) "
            f"SELECT {name}, {version}, '{kind}', s.metric, {hour} FROM (SELECT DISTINCT metric FROM {source}) AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM version_counts AS c WHERE c.prompt_name IS {name} "
            f"AND c.prompt_version IS {version} AND c.kind = '{kind}' AND c.key IS s.metric AND c.hour IS {hour})"
        )
    out.append(f"UPDATE version_counts SET traces = traces {sign} ({traces}), items = items {sign} ({items}) "
               f"WHERE {match} AND {keys}")
    if sign == "-":
        out.append(f"DELETE FROM version_counts WHERE {match} AND {keys} AND traces <= 0")
    return out


def _m004_at(r: str) -> tuple[str, str, str]:
    """A trace row's (prompt name, version, hour) as expressions."""
    return f"{r}.prompt_name", f"{r}.prompt_version", f"substr({r}.started_at, 1, 13)"


def _m004_trace(r: str, sign: str) -> list[str]:
    """Statements that add (+) or take away (-) trace `r` (NEW or OLD) from the sums and the model counts."""
    name, version, hour = at = _m004_at(r)
    match = f"prompt_name IS {name} AND prompt_version IS {version} AND hour IS {hour}"
    out = []
    if sign == "+":
        out.append(f"INSERT INTO version_hours (prompt_name, prompt_version, hour) SELECT {name}, {version}, {hour} "
                   f"WHERE NOT EXISTS (SELECT 1 FROM version_hours WHERE {match})")
    sets = ", ".join(f"{col} = {col} {sign} ({expr.format(r=r)})" for col, _, expr in _M004_SUMS)
    out.append(f"UPDATE version_hours SET {sets} WHERE {match}")
    if sign == "-":
        out.append(f"DELETE FROM version_hours WHERE {match} AND traces <= 0")
    return out + _m004_count(at, "model", f"{r}.model", traces="1", items="1", sign=sign)


def _m004_trace_findings(r: str, sign: str) -> list[str]:
    """Statements that add (+) or take away (-) the rule and budget counts of the findings stored for trace `r`
    when the trace comes or goes: findings written before their trace, or left when it goes first. (Ingest writes
    a trace before its findings and removes them before it: then the findings' own triggers count them.)"""
    at = _m004_at(r)
    rules = f"(SELECT f.rule_id AS metric FROM findings AS f WHERE f.trace_id = {r}.id)"
    out = _m004_count(
        at, "rule", rules, traces="1", sign=sign,
        items=f"SELECT count(*) FROM findings AS f WHERE f.trace_id = {r}.id AND f.rule_id = version_counts.key")
    over, metric = _m004_over("f.data", "j")
    budget = (f"(SELECT {metric} AS metric FROM findings AS f, {over} "
              f"WHERE f.trace_id = {r}.id AND f.rule_id = 'budget-exceeded' AND metric IS NOT NULL)")
    return out + _m004_count(
        at, "budget", budget, traces="1", sign=sign,
        items=f"SELECT count(DISTINCT f.idx) FROM findings AS f, {over} WHERE f.trace_id = {r}.id "
              f"AND f.rule_id = 'budget-exceeded' AND {metric} = version_counts.key")


def _m004_trace_of(f: str) -> tuple[str, str, str]:
    """A finding's trace's (prompt name, version, hour) as expressions."""
    def of(col: str) -> str:
        return f"(SELECT {col} FROM traces AS t WHERE t.id = {f}.trace_id)"

    return of("t.prompt_name"), of("t.prompt_version"), of("substr(t.started_at, 1, 13)")


def _m004_finding(f: str, sign: str) -> list[str]:
    """Statements that add (+) or take away (-) finding `f` (NEW or OLD) from its trace's rule counts."""
    # A trace counts once per rule: when its first finding of the rule comes, and when its last one goes.
    others = (f"SELECT 1 FROM findings AS o WHERE o.trace_id = {f}.trace_id AND o.rule_id = {f}.rule_id "
              f"AND o.idx <> {f}.idx")
    return _m004_count(_m004_trace_of(f), "rule", f"{f}.rule_id", traces=f"NOT EXISTS ({others})", items="1",
                       sign=sign)


def _m004_finding_budget(f: str, sign: str) -> list[str]:
    """The same for the budget metrics a budget-exceeded finding lists."""
    over, metric = _m004_over("o.data", "j")
    others = (f"SELECT 1 FROM findings AS o, {over} WHERE o.trace_id = {f}.trace_id "
              f"AND o.rule_id = 'budget-exceeded' AND o.idx <> {f}.idx AND {metric} = version_counts.key")
    return _m004_count(_m004_trace_of(f), "budget", _m004_metrics(f"{f}.data"), traces=f"NOT EXISTS ({others})",
                       items="1", sign=sign)


@_known
def m004_version_indexes(db: Database) -> None:
    cols = ", ".join(f"{col} {typ} NOT NULL DEFAULT 0" for col, typ, _ in _M004_SUMS)
    # One row per prompt name, version and hour (UTC, "2026-01-14T10"; NULL for traces without a start time).
    db.execute(f"CREATE TABLE version_hours (prompt_name TEXT, prompt_version TEXT, hour TEXT, {cols})")
    db.execute("CREATE INDEX version_hours_key ON version_hours(prompt_name, prompt_version, hour)")
    # Per version and hour: traces by model ("model"), traces and findings by rule ("rule"), traces over each budget
    # metric ("budget", from budget-exceeded findings' data.over).
    db.execute(
        "CREATE TABLE version_counts (prompt_name TEXT, prompt_version TEXT, kind TEXT NOT NULL, key TEXT, hour TEXT, "
        "traces INTEGER NOT NULL DEFAULT 0, items INTEGER NOT NULL DEFAULT 0)"
    )
    # traces and items in the index too: the version table sums tens of thousands of these rows without a lookup.
    db.execute("CREATE INDEX version_counts_key ON version_counts(prompt_name, prompt_version, kind, key, hour, "
               "traces, items)")
    # Percentiles are read by walking an index to the rank (LIMIT 1 OFFSET k), maxima by one seek. The per-day and
    # per-hour indexes give each bucket of the plot over time its p95 latency the same way; the per-hour one also
    # holds every value a time-bounded version table needs, so that it never reads the traces' rows.
    # Known costs only; a NULL one (nothing priced: $0) sorts first, where $0 belongs.
    db.execute("CREATE INDEX traces_version_cost ON traces(prompt_name, prompt_version, cost, cost_unknown_steps) "
               "WHERE cost_unknown_steps = 0")
    db.execute("CREATE INDEX traces_version_latency ON traces(prompt_name, prompt_version, latency_ms)")
    db.execute("CREATE INDEX traces_version_llm_calls ON traces(prompt_name, prompt_version, llm_calls)")
    db.execute("CREATE INDEX traces_version_tool_calls ON traces(prompt_name, prompt_version, tool_calls)")
    # started_at itself at the end: SQLite counts an index as covering only if it holds every column a query names.
    db.execute("CREATE INDEX traces_version_day ON traces(prompt_name, prompt_version, substr(started_at, 1, 10), "
               "latency_ms, started_at)")
    db.execute("CREATE INDEX traces_version_hour ON traces(prompt_name, prompt_version, substr(started_at, 1, 13), "
               "latency_ms, cost, cost_unknown_steps, llm_calls, tool_calls, started_at)")
    reads = ", ".join(_M004_READS)
    has_findings = "EXISTS (SELECT 1 FROM findings WHERE trace_id = {r}.id)"
    has_trace = "EXISTS (SELECT 1 FROM traces WHERE id = {f}.trace_id)"
    budget = "{f}.rule_id = 'budget-exceeded' AND " + has_trace
    triggers = {
        "traces_versions_insert": ("AFTER INSERT ON traces", "", _m004_trace("NEW", "+")),
        "traces_versions_delete": ("AFTER DELETE ON traces", "", _m004_trace("OLD", "-")),
        "traces_versions_update": (f"AFTER UPDATE OF {reads} ON traces", "",
                                   _m004_trace("OLD", "-") + _m004_trace("NEW", "+")),
        # The WHEN clauses keep the common case cheap: the statements run only when there is something to count.
        "traces_versions_insert_findings": ("AFTER INSERT ON traces", has_findings.format(r="NEW"),
                                            _m004_trace_findings("NEW", "+")),
        "traces_versions_delete_findings": ("AFTER DELETE ON traces", has_findings.format(r="OLD"),
                                            _m004_trace_findings("OLD", "-")),
        "traces_versions_update_findings": ("AFTER UPDATE OF prompt_name, prompt_version, started_at ON traces",
                                            has_findings.format(r="NEW"),
                                            _m004_trace_findings("OLD", "-") + _m004_trace_findings("NEW", "+")),
        "findings_versions_insert": ("AFTER INSERT ON findings", has_trace.format(f="NEW"), _m004_finding("NEW", "+")),
        "findings_versions_delete": ("AFTER DELETE ON findings", has_trace.format(f="OLD"), _m004_finding("OLD", "-")),
        "findings_versions_insert_budget": ("AFTER INSERT ON findings", budget.format(f="NEW"),
                                            _m004_finding_budget("NEW", "+")),
        "findings_versions_delete_budget": ("AFTER DELETE ON findings", budget.format(f="OLD"),
                                            _m004_finding_budget("OLD", "-")),
    }
    for trigger, (event, when, body) in triggers.items():
        when = f"WHEN {when}" if when else ""
        db.execute(f"CREATE TRIGGER {trigger} {event} {when} BEGIN\n" + ";\n".join(body) + ";\nEND")
    # An existing store: the sums and counts of the traces it already has.
    sums = ", ".join(f"total({expr.format(r='traces')})" for _, _, expr in _M004_SUMS)
    db.execute(f"INSERT INTO version_hours SELECT prompt_name, prompt_version, substr(started_at, 1, 13), {sums} "
               "FROM traces GROUP BY 1, 2, 3")
    db.execute("INSERT INTO version_counts SELECT prompt_name, prompt_version, 'model', model, "
               "substr(started_at, 1, 13), count(*), count(*) FROM traces GROUP BY 1, 2, 4, 5")
    db.execute("INSERT INTO version_counts SELECT t.prompt_name, t.prompt_version, 'rule', f.rule_id, "
               "substr(t.started_at, 1, 13), count(DISTINCT f.trace_id), count(*) "
               "FROM findings AS f JOIN traces AS t ON t.id = f.trace_id GROUP BY 1, 2, 4, 5")
    over, metric = _m004_over("f.data", "j")
    db.execute(f"INSERT INTO version_counts SELECT t.prompt_name, t.prompt_version, 'budget', {metric}, "
               f"substr(t.started_at, 1, 13), count(DISTINCT f.trace_id), "
               f"count(DISTINCT f.trace_id || char(31) || f.idx) FROM findings AS f JOIN traces AS t "
               f"ON t.id = f.trace_id, {over} WHERE f.rule_id = 'budget-exceeded' AND {metric} IS NOT NULL "
               "GROUP BY 1, 2, 4, 5")
