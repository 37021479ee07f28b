"""A minimal OTLP/HTTP trace receiver, for the tests, the benchmark, and a look at a
trace without a tracing backend (`python -m scripts.otlp_sink [PORT]` prints every span
it receives; port 4318 by default). It answers `POST /v1/traces` as a collector would,
decodes the protobuf with opentelemetry-proto, and keeps the spans in memory (or only
counts them).

    async with OtlpSink() as sink:   # OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint
        ...
        sink.spans  # every span received so far
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import sys
import zlib
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from scripts.isolation import free_port

# opentelemetry.proto.trace.v1.Span.SpanKind
KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS_ERROR = 2


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, which)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    name: str
    kind: str
    attributes: dict[str, Any]
    error: bool
    start_ns: int
    end_ns: int
    links: tuple[tuple[str, str], ...] = ()  # (trace id, span id)


@dataclass
class OtlpSink:
    keep: bool = True  # False: count spans only (a long benchmark)
    port: int = field(default_factory=free_port)
    spans: list[ReceivedSpan] = field(default_factory=list)
    received: int = 0
    requests: int = 0
    _runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        """The value for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter adds /v1/traces)."""
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        encoding = request.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        self.requests += 1
        for resource_spans in export.resource_spans:
            service = str(_attributes(resource_spans.resource.attributes).get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                self.received += len(scope_spans.spans)
                if not self.keep:
                    continue
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service=service,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=KINDS.get(span.kind, str(span.kind)),
                            attributes=_attributes(span.attributes),
                            error=span.status.code == STATUS_ERROR,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            links=tuple((li.trace_id.hex(), li.span_id.hex()) for li in span.links),
                        )
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )


def _print_span(span: ReceivedSpan) -> None:
    order = span.attributes.get("order.id") or ""
    millis = (span.end_ns - span.start_ns) / 1e6
    print(
        f"{span.trace_id[:8]} {span.span_id[:8]} <- {span.parent_id[:8] or 'root    '} "
        f"{span.service:<20} {span.kind:<8} {span.name:<32} {millis:7.1f} ms {order}",
        flush=True,
    )


async def _serve(port: int) -> None:
    sink = OtlpSink(port=port)
    seen = 0
    async with sink:
        print(f"receiving OTLP/HTTP traces on {sink.endpoint}/v1/traces", flush=True)
        while True:
            await asyncio.sleep(0.2)
            for span in sink.spans[seen:]:
                _print_span(span)
            seen = len(sink.spans)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(int(sys.argv[1]) if len(sys.argv) > 1 else 4318))
