"""`loupe serve` under abuse: refused with a status and a reason, still serving afterwards, nothing half-written.

The bad-request table itself (garbage JSON, protobuf, gzip, content types) is in test_live_ingest.py; this adds
the size limit (--max-body), requests that are not HTTP at all, a store that cannot be written, and traces that
cannot be stored, each followed by a request that must still succeed."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from store.db import PreparedTrace, Store
from store.server import OTLPServer, parse_size
from tui import cli

from .test_live_ingest import HOST, HTTP_TIMEOUT, Server, post, request, serving, span

LIMIT = 4096


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`loupe serve --max-body 4K` in a subprocess."""
    tmp = tmp_path_factory.mktemp("serve-small")
    with serving(tmp, tmp / "s.db", "--max-body", "4K") as srv:
        yield srv


_n = iter(range(1, 10_000))


def good_request() -> tuple[bytes, str]:
    """A small valid request with a trace of its own; (body, trace ID)."""
    trace_id = f"{next(_n):032x}"
    return json.dumps(request(span("00000000000000e1", "ok", trace_id=trace_id))).encode(), trace_id


def still_serves(server: Server) -> None:
    body, trace_id = good_request()
    status, _, answer = post(server.url, body)
    assert (status, json.loads(answer)) == (200, {})
    with Store(server.db) as store:
        assert store.get_trace(trace_id).trace.steps[0].id == "00000000000000e1"


def count(db: Path) -> int:
    with Store(db) as store:
        return store.count_traces()


def padded(size: int) -> bytes:
    """A valid request whose JSON is `size` bytes long."""
    doc = request(span("00000000000000f1", "big", trace_id="f" * 32))
    text = json.dumps(doc)
    return (text[:-1] + " " * (size - len(text)) + "}").encode()


def test_max_body_by_content_length_names_the_limit(small: Server) -> None:
    before = count(small.db)
    status, _, body = post(small.url, padded(LIMIT + 1))
    assert status == 413
    reason = json.loads(body)["error"]
    assert f"{LIMIT:,}" in reason and "--max-body" in reason
    assert post(small.url, padded(LIMIT))[0] == 200  # the limit itself is taken
    assert count(small.db) == before + 1
    still_serves(small)


def test_max_body_in_chunks_and_once_decompressed(small: Server) -> None:
    before = count(small.db)
    # Chunked: no declared size; refused as the chunks pass the limit.
    conn = http.client.HTTPConnection(HOST, small.port, timeout=HTTP_TIMEOUT)
    try:
        conn.putrequest("POST", "/v1/traces")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for _ in range(3):
            conn.send(b"800\r\n" + b" " * 0x800 + b"\r\n")
        conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        assert resp.status == 413 and f"{LIMIT:,}" in json.loads(resp.read())["error"]
    finally:
        conn.close()
    # A small gzip body that inflates past the limit (a zip bomb in miniature).
    bomb = gzip.compress(padded(LIMIT * 50))
    assert len(bomb) < LIMIT
    status, _, body = post(small.url, bomb, encoding="gzip")
    assert status == 413 and "once decompressed" in json.loads(body)["error"]
    assert count(small.db) == before
    still_serves(small)


@pytest.mark.parametrize("raw", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",  # a TLS hello to a plain port
    b"GARBAGE GARBAGE GARBAGE\r\n\r\n",
    b"POST /v1/traces HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: nope\r\n\r\n{}",
    b"POST /v1/traces HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n",
    b"POST /v1/traces HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /v1/traces HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}",  # neither length nor chunks
])
def test_requests_that_are_not_http_or_lie_about_their_body(small: Server, raw: bytes) -> None:
    with socket.create_connection((HOST, small.port), timeout=HTTP_TIMEOUT) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1."), answer[:200]
    assert int(status_line.split()[1]) in (400, 411), status_line
    head, _, reason = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and reason.strip() and b"<html" not in reason  # a reason in words
    still_serves(small)


def test_a_bad_request_on_a_kept_alive_connection_leaves_it_usable(small: Server) -> None:
    conn = http.client.HTTPConnection(HOST, small.port, timeout=HTTP_TIMEOUT)
    try:
        conn.request("POST", "/v1/traces", body=b"{not json", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 400 and "not valid JSON" in json.loads(resp.read())["error"]
        body, trace_id = good_request()
        conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read()) == {}
    finally:
        conn.close()
    with Store(small.db) as store:
        assert store.get_trace(trace_id)


def test_max_body_option() -> None:
    assert parse_size("65536") == 65536 and parse_size("4K") == 4096 and parse_size("64MB") == 64 * 1024**2
    assert parse_size("1 GiB") == 1024**3
    for bad in ("", "-1", "0", "ten", "5Q"):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)
    result = CliRunner().invoke(cli.app, ["serve", "--max-body", "lots"])
    assert result.exit_code == 2 and "--max-body" in result.output
    helped = CliRunner().invoke(cli.app, ["serve", "--help"])
    assert "--max-body" in helped.output


# --------------------------------------------------------------------------- in-process: stores that fail


class _Running:
    def __init__(self, store: Store) -> None:
        self.server = OTLPServer(HOST, 0, store)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = self.server.url

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def test_a_full_disk_answers_503_stores_nothing_and_the_retry_succeeds(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")  # not one page more: the disk is full
    running = _Running(store)
    try:
        trace_id = "a" * 32
        body = json.dumps(request(*(span(f"{i:016x}", f"s{i}", trace_id=trace_id) for i in range(1, 40)))).encode()
        status, _, answer = post(running.url, body)
        assert status == 503
        reason = json.loads(answer)["error"]
        assert "disk is full" in reason and str(store.path) in reason
        assert store.count_traces() == 0  # nothing of the request
        store.conn.execute("PRAGMA max_page_count = 1073741823")  # space freed: the exporter's retry lands
        assert post(running.url, body)[0] == 200
        assert len(store.get_trace(trace_id).trace.steps) == 39
    finally:
        running.close()
        store.close()


def test_a_trace_that_cannot_be_stored_is_left_out_whole_and_counted(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "s.db")
    bad_trace, good_trace = "b" * 32, "c" * 32
    real = Store._write_rows

    def failing(self: Store, conn: sqlite3.Connection, prepared: PreparedTrace, stored: object) -> bool:
        existed = real(self, conn, prepared, stored)  # type: ignore[arg-type]
        if prepared.id == bad_trace:
            raise sqlite3.IntegrityError("a constraint failed")  # after its rows were written: they must go
        return existed

    monkeypatch.setattr(Store, "_write_rows", failing)
    running = _Running(store)
    try:
        doc = request(span("0000000000000001", "root", trace_id=bad_trace),
                      span("0000000000000002", "child", trace_id=bad_trace, parent="0000000000000001"),
                      span("0000000000000003", "fine", trace_id=good_trace))
        status, _, answer = post(running.url, json.dumps(doc).encode())
        assert status == 200
        partial = json.loads(answer)["partialSuccess"]
        # OTLP/HTTP: a partly accepted request is a 200 whose partial_success counts what was rejected, and why.
        assert int(partial["rejectedSpans"]) == 2 and bad_trace in partial["errorMessage"]
        assert [r.id for r in store.list_traces()] == [good_trace]
        for table in ("steps", "findings"):
            n = store.conn.execute(f"SELECT count(*) FROM {table} WHERE trace_id = ?", (bad_trace,)).fetchone()
            assert n[0] == 0, table
    finally:
        running.close()
        store.close()
