"""An OpenTelemetry SDK span exporter that writes an application's spans straight into a loupe store."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

try:
    from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
except ImportError as exc:
    raise ImportError(
        "store.exporter needs the OpenTelemetry SDK: pip install 'traceloupe[otel]'"
    ) from exc

from .db import Store, StoreError
from .importers.base import ImportResult
from .server import traces_from_request

SOURCE = "OpenTelemetry SDK (LoupeSpanExporter)"

_logger = logging.getLogger(__name__)


class LoupeSpanExporter(SpanExporter):
    """Spans from a TracerProvider into a loupe store, merged span by span with what the store holds.

    Spans are encoded exactly as the OTLP exporters encode them (`encode_spans`) and read by the same code that
    reads `loupe serve`'s requests and OTLP files, so a trace looks the same whichever way it arrived.

        provider.add_span_processor(BatchSpanProcessor(LoupeSpanExporter()))
    """

    def __init__(self, db_path: str | Path | None = None, *, source: str = SOURCE) -> None:
        self.store = Store(db_path)
        self.source = source
        self._closed = False
        self._lock = threading.Lock()

    @property
    def db_path(self) -> Path:
        return self.store.path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            if self._closed:
                _logger.warning("LoupeSpanExporter is shut down; %d spans not stored", len(spans))
                return SpanExportResult.FAILURE
            if not spans:
                return SpanExportResult.SUCCESS
            try:
                doc = MessageToDict(encode_spans(spans), preserving_proto_field_name=False)
                result = ImportResult()
                counts = self.store.insert_traces(traces_from_request(doc, self.source, result))
            except (sqlite3.Error, StoreError, ValueError) as exc:
                _logger.error("LoupeSpanExporter could not store %d spans in %s: %s", len(spans), self.db_path, exc)
                return SpanExportResult.FAILURE
            for problem in result.problems:
                _logger.warning("LoupeSpanExporter: %s", problem)
            for trace_id, _, why in counts.failed:
                _logger.error("LoupeSpanExporter: trace %s %s", trace_id, why)
            return SpanExportResult.FAILURE if counts.failed else SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self.store.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Every export is committed before it returns: there is nothing to flush."""
        return True
