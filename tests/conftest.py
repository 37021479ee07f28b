from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from scripts.isolation import create_vhost, delete_vhost, drop_databases_sync
from shared_domain import tracing
from tests.support import RUN_ID


@pytest.fixture(scope="session")
def vhost() -> Iterator[str]:
    name = f"saga_test_{RUN_ID}"
    create_vhost(name)
    yield name
    delete_vhost(name)


@pytest.fixture(scope="session")
def db_prefix() -> Iterator[str]:
    prefix = f"saga_test_{RUN_ID}_"
    yield prefix
    drop_databases_sync(prefix)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The spans shared_domain.tracing makes, kept in memory: an SDK provider's tracer in
    place of the module's (the process's global provider is left alone)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "TRACER", provider.get_tracer("test"))
    monkeypatch.setattr(tracing, "_active", True)
    yield exporter
    provider.shutdown()
