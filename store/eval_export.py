"""Eval cases exported to other tools' formats: promptfoo tests, OpenAI evals, inspect-ai samples, Langfuse items."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import yaml

from .evals import _slug
from .importers.base import scrub
from .models import Assertion, EvalCase, Message

FORMATS: tuple[str, ...] = ("promptfoo", "openai-evals", "inspect", "langfuse")

_FILENAMES = {
    "promptfoo": "promptfoo_tests.yaml",
    "openai-evals": "evals.jsonl",
    "inspect": "inspect_samples.jsonl",
    "langfuse": "langfuse_dataset.jsonl",
}


def _known(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def default_filename(fmt: str) -> str:
    """The file name an export in this format gets when no path is given."""
    return _FILENAMES[_known(fmt)]


def export_cases(cases: list[EvalCase], fmt: str) -> str:
    """The whole export file's text. Cases are ordered by group and ID, so the same cases give the same bytes."""
    writer = _WRITERS[_known(fmt)]
    return writer(sorted(cases, key=lambda c: (c.group, c.id)))


# --- data that stays valid whatever a trace held ---------------------------------------------------------------


def _finite(value: Any) -> Any:
    # NaN and infinities are not JSON; kept as their names rather than dropped.
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _clean(value: Any) -> Any:
    """Lone surrogates replaced by U+FFFD (they are not Unicode, and strict readers refuse them), structure too
    deep kept as text, non-finite numbers named: what is left can be written as JSON and YAML by any reader."""
    return _finite(scrub(value))


def _jsonl(rows: list[dict[str, Any]]) -> str:
    # ASCII-only like `--json`: control characters, bidi overrides and the rest are escapes, inert on a terminal.
    return "".join(json.dumps(_clean(row), ensure_ascii=True, allow_nan=False, default=str) + "\n" for row in rows)


def _assertions(case: EvalCase) -> list[dict[str, Any]]:
    return [a.model_dump(mode="json") for a in case.assertions]


# --- messages ---------------------------------------------------------------------------------------------------

# Role names other sources use for the same thing; anything else unknown is sent as the user's.
_ROLE_ALIASES = {"human": "user", "ai": "assistant", "model": "assistant", "bot": "assistant", "function": "tool"}
_OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool")
_OPENAI_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what the Chat Completions API accepts as a message name


def _role(message: dict[str, Any], allowed: tuple[str, ...]) -> tuple[str, str]:
    """(the role as the source gave it, the role the target format gets)."""
    given = str(message.get("role") or "user")
    role = _ROLE_ALIASES.get(given.lower(), given.lower())
    if role == "developer" and "developer" not in allowed:
        role = "system"
    return given, role if role in allowed else "user"


def _text(content: Any) -> str:
    return Message(role="user", content=content).text()


def _arguments_text(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    return json.dumps({} if arguments is None else arguments, ensure_ascii=False, default=str)


def _openai_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The conversation as OpenAI Chat Completions messages, and the roles that had to change to get there."""
    out: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        given, role = _role(m, _OPENAI_ROLES)
        if given != role:
            changed.append({"index": i, "from": given, "to": role})
        msg: dict[str, Any] = {"role": role, "content": _text(m.get("content"))}
        name = m.get("name")
        if role != "tool" and isinstance(name, str) and _OPENAI_NAME.fullmatch(name):
            msg["name"] = name
        if role == "assistant" and m.get("tool_calls"):
            msg["tool_calls"] = [
                {"id": str(c.get("id") or f"call_{i}_{j}"), "type": "function",
                 "function": {"name": str(c.get("name") or ""), "arguments": _arguments_text(c.get("arguments"))}}
                for j, c in enumerate(m["tool_calls"]) if isinstance(c, dict)
            ]
        if role == "tool" and m.get("tool_call_id") is not None:
            msg["tool_call_id"] = str(m["tool_call_id"])
        out.append(msg)
    return out, changed


def _inspect_call(call: dict[str, Any], fallback_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(call.get("id") or fallback_id), "function": str(call.get("name") or ""),
                           "arguments": {}, "type": "function"}
    args = call.get("arguments")
    parsed: Any = args
    if isinstance(args, str):
        try:
            parsed = json.loads(args)
        except ValueError:
            parsed = None
    if isinstance(parsed, dict):
        out["arguments"] = parsed
    elif args is not None:
        # inspect's ToolCall wants an object; what the model sent is kept where inspect keeps bad arguments.
        out["parse_error"] = f"arguments are not a JSON object: {_arguments_text(args)}"
    return out


def _inspect_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The conversation as inspect-ai ChatMessage objects (system, user, assistant, tool), and the roles that had to
    change (inspect's dataset reader keeps no per-message metadata, so the sample's metadata says)."""
    out: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        given, role = _role(m, ("system", "user", "assistant", "tool"))
        if given != role:
            changed.append({"index": i, "from": given, "to": role})
        msg: dict[str, Any] = {"role": role, "content": _text(m.get("content"))}
        if role == "assistant" and m.get("tool_calls"):
            msg["tool_calls"] = [_inspect_call(c, f"call_{i}_{j}")
                                 for j, c in enumerate(m["tool_calls"]) if isinstance(c, dict)]
        if role == "tool":
            if m.get("tool_call_id") is not None:
                msg["tool_call_id"] = str(m["tool_call_id"])
            if isinstance(m.get("name"), str):
                msg["function"] = m["name"]
        out.append(msg)
    return out, changed


def _last_user_text(messages: list[dict[str, Any]]) -> str | None:
    for m in reversed(messages):
        if m.get("role") == "user":
            return str(m.get("content") or "")
    return None


# --- OpenAI evals, inspect-ai, Langfuse ---------------------------------------------------------------------------


def _source(case: EvalCase) -> dict[str, Any]:
    return dict(case.source_trace)


def _openai_evals(cases: list[EvalCase]) -> str:
    """openai/evals registry samples: `input` in chat format and `ideal`; the rest rides along in `metadata`,
    which the eval templates ignore (a sample may carry a superset of the keys a template reads)."""
    rows = []
    for case in cases:
        messages, changed = _openai_messages(case.input)
        metadata: dict[str, Any] = {
            "loupe_case_id": case.id, "group": case.group, "name": case.name, "source_trace": _source(case),
            "assertions": _assertions(case), "tool_results": case.tool_results,
        }
        if case.tools:
            metadata["tools"] = case.tools
        if case.recorded_output is not None:
            metadata["recorded_output"] = case.recorded_output
        if changed:
            metadata["roles_changed"] = changed
        rows.append({"input": messages, "ideal": case.expected, "metadata": metadata})
    return _jsonl(rows)


def _inspect(cases: list[EvalCase]) -> str:
    """inspect-ai Sample records (id, input, target, metadata), as `json_dataset` reads them."""
    rows = []
    for case in cases:
        messages, changed = _inspect_messages(case.input)
        metadata: dict[str, Any] = {
            "group": case.group, "name": case.name, "source_trace": _source(case),
            "assertions": _assertions(case), "tool_results": case.tool_results, "tools": case.tools,
            "model": case.model, "recorded_output": case.recorded_output, "content_hash": case.content_hash,
        }
        if changed:
            metadata["roles_changed"] = changed
        if not messages:
            # inspect refuses a sample without input; an empty user turn says "nothing was recorded" without
            # making anything up, and the metadata says so.
            messages = [{"role": "user", "content": ""}]
            metadata["no_input"] = "the source trace recorded no conversation"
        rows.append({"id": case.id, "input": messages, "target": case.expected, "metadata": metadata})
    return _jsonl(rows)


def _langfuse(cases: list[EvalCase]) -> str:
    """Langfuse dataset items, one CreateDatasetItemRequest body per line. The case ID is the item ID, so a second
    upload updates the items instead of adding copies; each group is its own dataset."""
    rows = []
    for case in cases:
        messages, changed = _openai_messages(case.input)
        item_input: dict[str, Any] = {"messages": messages, "tool_results": case.tool_results}
        if case.tools:
            item_input["tools"] = case.tools
        metadata: dict[str, Any] = {
            "source": "loupe", "group": case.group, "name": case.name, "source_trace": _source(case),
            "model": case.model, "recorded_output": case.recorded_output, "content_hash": case.content_hash,
        }
        if changed:
            metadata["roles_changed"] = changed
        row: dict[str, Any] = {
            "datasetName": f"loupe-{_slug(case.group)}",
            "id": case.id,
            "input": item_input,
            "expectedOutput": {"expected": case.expected, "assertions": _assertions(case)},
            "metadata": metadata,
        }
        if case.source_trace.get("id") is not None:
            row["sourceTraceId"] = str(case.source_trace["id"])
        rows.append(row)
    return _jsonl(rows)


# --- promptfoo ----------------------------------------------------------------------------------------------------

# promptfoo renders every string assertion value (and each string in a list value) as a nunjucks template before
# grading, and reads a value that starts with file:// (or package:) as a file or module to load. Case text must be
# neither: text that looks like either goes into a javascript assertion, in string literals with escaped braces.
_TEMPLATE_TAG = re.compile(r"\{[{%#]")
_LOADER_PREFIXES = ("file://", "package:")


def _inert(text: str) -> bool:
    return not _TEMPLATE_TAG.search(text) and not text.startswith(_LOADER_PREFIXES)


def _js_string(text: str) -> str:
    """A JavaScript string literal for the text (JSON string syntax is JavaScript's), braces escaped when the
    literal would otherwise hold a nunjucks tag: the escape is read by JavaScript, never seen by nunjucks."""
    literal = json.dumps(text, ensure_ascii=True)
    if _TEMPLATE_TAG.search(literal):
        literal = literal.replace("{", "\\u007b").replace("}", "\\u007d")
    return literal


_OUTPUT_TEXT = 'const text = typeof output === "string" ? output : JSON.stringify(output);'


def _js_assertion(body: list[str], metric: str | None) -> dict[str, Any]:
    # Several lines: promptfoo runs the value as a function body of (output, context) and needs the explicit return.
    out: dict[str, Any] = {"type": "javascript", "value": "\n".join(body) + "\n"}
    if metric:
        out["metric"] = metric
    return out


_PY_FLAGS = re.compile(r"\(\?([aiLmsux]+)\)")
_QUANTIFIER = re.compile(r"\{(\d*),(\d*)\}|\{\d+\}")


def js_regex(pattern: str) -> tuple[str, str] | None:
    """A Python regular expression in JavaScript's RegExp syntax, with the flags it needs; None when it uses
    Python syntax that JavaScript has no equivalent for (atomic groups, possessive quantifiers, scoped flags,
    conditionals, \\N{...}, verbose mode). Character classes keep their ASCII meaning in JavaScript (\\w, \\d, \\b),
    which is the same as Python's for English text."""
    flags = ""
    while (m := _PY_FLAGS.match(pattern)) is not None:  # Python's global flags, only allowed at the start
        for f in m.group(1):
            if f in "ims":
                flags += "" if f in flags else f
            elif f not in "ua":  # u: str patterns are Unicode already; a: JavaScript's classes are ASCII anyway
                return None
        pattern = pattern[m.end():]
    out: list[str] = []
    i, in_class, after_quantifier = 0, False, False
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1:i + 2]
            if not nxt or nxt in "NU" or (not in_class and nxt in "AZ" and "m" in flags):
                return None
            if not in_class and nxt == "A":
                out.append("^")
            elif not in_class and nxt == "Z":
                out.append("$")
            else:
                out.append(ch + nxt)
            i += 2
            after_quantifier = False
            continue
        if in_class:
            out.append(ch)
            in_class = ch != "]"
            i += 1
            continue
        if ch == "[":
            start = i + 2 if pattern[i + 1:i + 2] == "^" else i + 1
            out.append(pattern[i:start])
            if pattern[start:start + 1] == "]":  # "[]...]": a literal ] in Python, an empty class in JavaScript
                out.append("\\]")
                start += 1
            i, in_class, after_quantifier = start, True, False
            continue
        if ch == "(" and pattern[i + 1:i + 2] == "?":
            rest = pattern[i + 2:]
            if rest.startswith("P<"):
                out.append("(?<")
                i += 4
            elif rest.startswith("P="):
                end = pattern.find(")", i)
                if end < 0:
                    return None
                out.append(f"\\k<{pattern[i + 4:end]}>")
                i = end + 1
            elif rest.startswith("#"):
                end = pattern.find(")", i)
                if end < 0:
                    return None
                i = end + 1
            elif rest[:1] in (":", "=", "!") or rest.startswith(("<=", "<!")):
                out.append(pattern[i:i + 3])
                i += 3
            else:  # (?>...), (?(1)...), (?i:...), (?-i:...)
                return None
            after_quantifier = False
            continue
        if ch == "{":
            q = _QUANTIFIER.match(pattern, i)
            if q is not None:
                text = q.group(0)
                if q.group(1) == "" and q.group(2) is not None:  # {,n}: Python's 0 to n; literal text in JavaScript
                    text = "{0," + q.group(2) + "}"
                out.append(text)
                i = q.end()
                after_quantifier = True
                continue
        if ch == "+" and after_quantifier:  # a possessive quantifier (Python 3.11)
            return None
        out.append(ch)
        after_quantifier = ch in "*+?"
        i += 1
    if in_class:
        return None
    return "".join(out), flags


_NOT_SCORED = {
    "not-claims-success": "judged by loupe's reading of success claims (the success-after-tool-error rule), "
                          "which promptfoo has no equivalent for",
    "no-finding": "judged by loupe's rules over the whole trace",
    "must-call": "judged on the trace's tool calls, which promptfoo does not see",
    "must-not-call": "judged on the trace's tool calls, which promptfoo does not see",
    "must-confirm-before": "judged on the order of the trace's messages and tool calls",
    "valid-arguments": "judged on the trace's tool calls against the tool's schema",
    "max-repeated-calls": "judged on the trace's tool calls, which promptfoo does not see",
    "max-model-calls": "judged on the trace's steps, which promptfoo does not see",
    "max-tool-calls": "judged on the trace's steps, which promptfoo does not see",
}

_TOKEN_FIELDS = {"max-input-tokens": ("prompt", "input tokens"), "max-output-tokens": ("completion", "output tokens")}


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _text_assertion(a: Assertion, metric: str | None) -> tuple[list[dict[str, Any]], str | None]:
    values = [str(v) for v in (a.value if isinstance(a.value, list) else [a.value])]
    negate = a.type == "not-contains"
    any_of = bool(a.options.get("any", True))
    folded = bool(a.options.get("case_insensitive"))
    with_metric: dict[str, Any] = {"metric": metric} if metric else {}
    if not a.options.get("regex"):
        if all(_inert(v) for v in values):
            kind = ("not-" if negate else "") + ("i" if folded else "") + "contains-" + ("any" if any_of else "all")
            return [{"type": kind, "value": values, **with_metric}], None
        compare = "text.toLowerCase().includes(n.toLowerCase())" if folded else "text.includes(n)"
        test = f"needles.{'some' if any_of else 'every'}((n) => {compare})"
        return [_js_assertion([_OUTPUT_TEXT, f"const needles = [{', '.join(map(_js_string, values))}];",
                               f"return {'!' if negate else ''}{test};"], metric)], None
    translated = [js_regex(v) for v in values]
    if any(t is None for t in translated):
        return [], "its regular expression uses Python syntax that JavaScript's RegExp has no equivalent for"
    patterns = [(src, "".join(sorted(set(flags + ("i" if folded else ""))))) for src, flags in
                (t for t in translated if t is not None)]
    builtin = all(not flags and _inert(src) for src, flags in patterns)
    if builtin and (len(patterns) == 1 or negate == any_of):
        # One pattern; or all must match (one regex each); or none may match (one not-regex each).
        return [{"type": ("not-regex" if negate else "regex"), "value": src, **with_metric}
                for src, _ in patterns], None
    pairs = ", ".join(f"[{_js_string(src)}, {_js_string(flags)}]" for src, flags in patterns)
    test = f"patterns.{'some' if any_of else 'every'}(([source, flags]) => new RegExp(source, flags).test(text))"
    return [_js_assertion([_OUTPUT_TEXT, f"const patterns = [{pairs}];",
                           f"return {'!' if negate else ''}{test};"], metric)], None


def promptfoo_assertions(a: Assertion, metric: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """The promptfoo assertions that judge what a loupe assertion judges, or none and the reason promptfoo cannot:
    promptfoo sees the answer (and the provider's cost, latency and token usage), not the trace. The metric (the
    case's group, so promptfoo reports per group) is left out when promptfoo would read it as a template."""
    metric = metric if metric and _inert(metric) else None
    with_metric: dict[str, Any] = {"metric": metric} if metric else {}
    if a.type in ("contains", "not-contains"):
        return _text_assertion(a, metric)
    limit = _number(a.value)
    if a.type == "max-cost" and limit is not None:
        return [{"type": "cost", "threshold": limit, **with_metric}], None
    if a.type == "max-latency-seconds" and limit is not None:
        ms = limit * 1000
        return [{"type": "latency", "threshold": int(ms) if float(ms).is_integer() else ms, **with_metric}], None
    if a.type in _TOKEN_FIELDS and limit is not None:
        field, words = _TOKEN_FIELDS[a.type]
        # Unknown usage fails with its reason: a provider that reports no usage must not pass a token ceiling.
        return [_js_assertion([
            "const usage = context.providerResponse ? context.providerResponse.tokenUsage : undefined;",
            f"const used = usage ? usage.{field} : undefined;",
            f'if (typeof used !== "number") throw new Error({_js_string(words + " unknown: the provider reported no token usage")});',
            f"return used <= {json.dumps(limit)};",
        ], metric)], None
    if a.type in ("max-cost", "max-latency-seconds", *_TOKEN_FIELDS):
        return [], "its limit is not a number"
    return [], _NOT_SCORED.get(a.type, "promptfoo has no assertion for it")


def _safe_var(value: Any) -> bool:
    # A top-level string var that starts with file:// is read by promptfoo as a file to load.
    return not (isinstance(value, str) and value.startswith(_LOADER_PREFIXES))


def _promptfoo_test(case: EvalCase) -> dict[str, Any] | None:
    metric = case.group
    asserts: list[dict[str, Any]] = []
    not_scored: list[dict[str, Any]] = []
    for a in case.assertions:
        more, reason = promptfoo_assertions(a, metric)
        asserts.extend(more)
        if reason is not None:
            not_scored.append({**a.model_dump(mode="json"), "reason": reason})
    if not asserts:
        return None  # nothing promptfoo could judge: a test without assertions would pass whatever the answer
    messages, changed = _openai_messages(case.input)
    candidates: dict[str, Any] = {
        "messages": messages,
        "user_request": _last_user_text(messages),
        "tool_results": case.tool_results,
        "tools": case.tools or None,
        "source_trace": _source(case),
        "recorded_output": case.recorded_output,
    }
    variables = {k: v for k, v in candidates.items() if v is not None and _safe_var(v)}
    metadata: dict[str, Any] = {
        "loupe_case_id": case.id, "group": case.group, "name": case.name,
        "source_trace_id": str(case.source_trace.get("id", "")), "expected": case.expected,
    }
    omitted = [k for k, v in candidates.items() if v is not None and not _safe_var(v)]
    if omitted:
        metadata["omitted_vars"] = {k: "starts with file:// or package:, which promptfoo would load as a file"
                                    for k in omitted}
    if changed:
        metadata["roles_changed"] = changed
    if not_scored:
        metadata["not_scored_here"] = not_scored
        metadata["note"] = ("promptfoo judges the answer; the assertions under not_scored_here need the trace "
                            "and are scored by `loupe evals run`.")
    return {
        "description": f"{case.group}: {case.name} ({case.id})",
        "vars": variables,
        # An array var would otherwise become one test per element (promptfoo's var expansion).
        "options": {"disableVarExpansion": True},
        "assert": asserts,
        "metadata": metadata,
    }


# libyaml's emitter when PyYAML has it (several times faster on a few hundred cases), else PyYAML's own.
_SafeDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_SafeDumper):  # type: ignore[valid-type,misc]
    """Block style for text with line breaks (the emitter falls back to quoted where block style cannot hold the
    text); no anchors and aliases, which some readers mishandle, for values that appear twice."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _represent_str)


def promptfoo_left_out(cases: list[EvalCase]) -> list[str]:
    """IDs of the cases a promptfoo export leaves out: every assertion they have needs the trace (a test without
    assertions would pass whatever the answer). The file's header names them too."""
    return [c.id for c in sorted(cases, key=lambda c: (c.group, c.id)) if _promptfoo_test(c) is None]


def _case_ref(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "?", case_id)  # a comment line must stay one comment line


def _promptfoo(cases: list[EvalCase]) -> str:
    """A promptfoo test file: a YAML list of test cases (vars + assert + metadata), for `tests: file://...`."""
    tests: list[dict[str, Any]] = []
    skipped: list[str] = []
    for case in cases:
        test = _promptfoo_test(case)
        if test is None:
            skipped.append(case.id)
        else:
            tests.append(test)
    header = [
        f"# promptfoo tests exported by loupe: {len(tests)} of {len(cases)} eval cases.",
        "# Use it from promptfooconfig.yaml as  tests: file://<this file>",
        "# vars: messages (the conversation as OpenAI chat messages: the prompt '{{ messages | dump }}' sends it as",
        "# is), user_request, tool_results (the recorded results to replay, by tool and arguments), tools,",
        "# source_trace, recorded_output (what the source trace answered).",
        "# Assertions that need the trace, not only the answer, are listed in each test's metadata under",
        "# not_scored_here; `loupe evals run` scores them.",
    ]
    if skipped:
        header.append(f"# Not exported, every assertion needs the trace ({len(skipped)}): "
                      + ", ".join(_case_ref(c) for c in skipped))
    body = yaml.dump(_clean(tests), Dumper=_Dumper, sort_keys=False, allow_unicode=False, width=1 << 20,
                     default_flow_style=False)
    return "\n".join(header) + "\n" + body


_WRITERS: dict[str, Callable[[list[EvalCase]], str]] = {
    "promptfoo": _promptfoo,
    "openai-evals": _openai_evals,
    "inspect": _inspect,
    "langfuse": _langfuse,
}
