from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.isolation import create_vhost, delete_vhost, drop_databases_sync
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
