"""Every package's domain is pure Python: importing it loads no database driver, broker
client, web framework or HTTP client. Each domain is imported in a fresh interpreter, so
what another test imported cannot hide what the domain pulls in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("sqlalchemy", "asyncpg", "aio_pika", "aiormq", "fastapi", "starlette", "httpx")
DOMAINS = sorted(p.parent.name for p in ROOT.glob("*/domain.py"))

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded_by(module: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(result.stdout))


def test_every_service_has_a_domain() -> None:
    assert DOMAINS == [
        "inventory_service",
        "notification_service",
        "order_service",
        "payment_service",
        "saga_orchestrator",
        "shipping_service",
    ]


@pytest.mark.parametrize("package", DOMAINS)
def test_domain_imports_no_io_library(package: str) -> None:
    loaded = loaded_by(f"{package}.domain")
    assert f"{package}" in loaded
    assert not loaded & set(FORBIDDEN), f"{package}.domain loads {sorted(loaded & set(FORBIDDEN))}"


def test_the_probe_sees_an_io_import() -> None:
    """The check can fail: a module that does I/O is caught."""
    assert {"asyncpg", "sqlalchemy"} <= loaded_by("shared_domain.retry")
