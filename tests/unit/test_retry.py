"""The shared retry policies: one backoff formula, and the outage classification."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from shared_domain.backoff import Backoff
from shared_domain.retry import is_outage


def test_backoff_doubles_up_to_the_maximum_without_jitter() -> None:
    backoff = Backoff(0.5, 3.0, jitter=0.0)

    assert [backoff.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_jitter_takes_off_at_most_its_share() -> None:
    backoff = Backoff(1.0, 60.0, jitter=0.5)

    assert backoff.delay(3, rand=lambda: 0.0) == 8.0
    assert backoff.delay(3, rand=lambda: 1.0) == 4.0
    assert backoff.ceiling(1000) == 60.0  # no overflow for large retry numbers


def wrapped(cause: BaseException) -> Exception:
    """How SQLAlchemy hands a driver error up: a new exception with the cause chained."""
    try:
        raise RuntimeError("while executing") from cause
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("connection refused"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.exceptions.ObjectNotInPrerequisiteStateError(
            'database "x" is not currently accepting connections'
        ),
        wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")),
        DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
        # the server's FATAL goodbye reached the connection before its socket's end did
        asyncpg.exceptions.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        ),
    ],
)
def test_unreachable_dependencies_are_outages(error: BaseException) -> None:
    assert is_outage(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad amount"),
        TimeoutError("the provider took too long"),
        IntegrityError("INSERT", {}, Exception("duplicate key")),
        wrapped(KeyError("product")),
        asyncpg.exceptions.InternalClientError("unknown error in protocol implementation"),
    ],
)
def test_other_failures_are_not(error: BaseException) -> None:
    assert not is_outage(error)
