from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from scripts.isolation import create_vhost, delete_vhost, drop_databases_sync
from shared_domain import tracing
from tests.support import RUN_ID

# How `make test` shares the modules out to its two pytest-xdist workers. The modules
# on the session's e2e stack are one unit of work: one worker runs them one after the
# other, with one such stack, as a plain run would. Each other module is a unit of its
# own, to either worker: a module with a stack of its own (or a few service processes)
# may run beside the session's. Each stack's pools are small (support.test_env), so that
# two at once stay well within the 100 connections a default PostgreSQL server takes.
SESSION_STACK = "session-stack"
OWN_STACK_MODULES = frozenset(
    {
        "tests/e2e/test_access.py",
        "tests/e2e/test_schemathesis.py",
        "tests/e2e/test_observability.py",
    }
)


def work_unit(nodeid: str) -> str:
    """The unit of work a test goes to a worker with."""
    module = nodeid.split("::", 1)[0]
    if module.startswith(("tests/e2e/", "tests/chaos/")) and module not in OWN_STACK_MODULES:
        return SESSION_STACK
    return module


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    # A scheduler of pytest-xdist's by scope, with work_unit as the scope. (Its
    # xdist_group marks go by a node id that pytest 9.2 no longer lets plugins rewrite.)
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByWorkUnit(config, log)


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
