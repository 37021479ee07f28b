"""Retry policies, declared once and used everywhere.

- `Backoff` (in `shared_domain.backoff`, pure): the one backoff formula. The consumer uses
  it for redelivery delays, the saga for compensation retries and command re-sends.
- `startup_retrying`: waiting for a dependency while a process starts.
- `call_retrying`: a few quick tries of an outbound call (payment provider, carrier, mail).
- `is_outage`: whether a failure means "a dependency is unreachable" rather than "this
  message is bad"; the consumer retries the first kind without spending the message's
  retry budget, so an outage of any length dead-letters nothing.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import asyncpg
from sqlalchemy.exc import DBAPIError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)


def startup_retrying(
    timeout: float,
    *errors: type[BaseException],
    never: tuple[type[BaseException], ...] = (),
) -> AsyncRetrying:
    """Waiting for a dependency at start-up: keep trying until `timeout` seconds pass
    (but not on a `never` error: waiting would not change it)."""
    return AsyncRetrying(
        retry=retry_if_exception_type(errors or (Exception,)) & retry_if_not_exception_type(never),
        wait=wait_exponential(multiplier=0.2, max=3.0) + wait_random(0, 0.2),
        stop=stop_after_delay(timeout),
        reraise=True,
    )


def call_retrying(attempts: int, base: float, *errors: type[BaseException]) -> AsyncRetrying:
    """An outbound call (provider, carrier, mail server): a few quick tries with backoff."""
    return AsyncRetrying(
        retry=retry_if_exception_type(errors or (Exception,)),
        wait=wait_exponential(multiplier=base, max=base * 16) + wait_random(0, base),
        stop=stop_after_attempt(attempts),
        reraise=True,
    )


_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted
    socket.gaierror,  # the host name does not resolve
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: admin shutdown, cannot connect
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,  # the connection closed under us
)


# When the server ends a session (terminated backend, shutdown), its FATAL error can reach
# a connection that is idle or between two statements; asyncpg then leaves the protocol
# waiting for a sync point that never comes, and the next statement on that connection,
# before the socket's end is noticed, fails with "another operation (...) is in progress".
_SESSION_ENDED = "another operation"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_outage(exc: BaseException) -> bool:
    """True when the error says PostgreSQL or the network is unavailable."""
    for err in _chain(exc):
        if isinstance(err, DBAPIError) and err.connection_invalidated:
            return True
        if isinstance(err, _OUTAGE_ERRORS):
            return True
        if "not currently accepting connections" in str(err):  # ALLOW_CONNECTIONS false
            return True
        if isinstance(err, asyncpg.exceptions.InternalClientError) and _SESSION_ENDED in str(err):
            return True
    return False
