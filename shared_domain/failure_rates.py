"""A worker's chaos knobs, changeable while it runs: the probability that a simulated
provider, carrier or mail gateway fails. Each starts at its environment variable; an
operator's value is stored in the service's database, so every replica (one started
later too) applies it, each within `REFRESH_INTERVAL`; clearing it returns to the
environment's value.

An operator's value lasts while the service runs: every replica says it is alive in
the same database each time it reads, and the first replica to start when none is
alive clears what an earlier run set, so the environment is again what a service
starts with."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, DateTime, Float, MetaData, String, Table

from shared_domain.contracts import utcnow
from shared_domain.pg import connection

if TYPE_CHECKING:
    from shared_domain.db import Connection
    from shared_domain.runtime import Runtime

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 1.0  # seconds; one small query a replica, whatever the load


ALIVE_FOR = 3 * REFRESH_INTERVAL  # a replica not seen for this long has stopped
INSTANCE = uuid.uuid4().hex  # this process, among the service's replicas


def define_failure_rates_table(metadata: MetaData) -> Table:
    Table(
        "failure_rate_replicas",
        metadata,
        Column("instance", String(100), primary_key=True),
        Column("seen_at", DateTime(timezone=True), nullable=False),
    )
    return Table(
        "failure_rates",
        metadata,
        Column("name", String(50), primary_key=True),
        Column("rate", Float, nullable=False),
        Column("set_at", DateTime(timezone=True), nullable=False),
        Column("set_by", String(200), nullable=False),
    )


@dataclass
class FailureRate:
    """One knob: what the environment says, and what applies now."""

    name: str
    default: float
    value: float
    env: str = ""
    overridden: bool = False  # an operator's value, not the environment's

    @classmethod
    def of(cls, name: str, rate: float | FailureRate) -> FailureRate:
        """`rate` itself, or a knob fixed at it (a simulated part built with a number)."""
        return rate if isinstance(rate, FailureRate) else cls(name, rate, rate)


class FailureRates:
    """A service's knobs by name; what its simulated parts read on every call."""

    def __init__(self, defaults: Mapping[str, tuple[str, float]]) -> None:
        # name -> (environment variable, start-up value)
        self.knobs = {
            name: FailureRate(name, value, value, env) for name, (env, value) in defaults.items()
        }

    def __getitem__(self, name: str) -> FailureRate:
        return self.knobs[name]

    def apply(self, overrides: Mapping[str, float]) -> None:
        for name, knob in self.knobs.items():
            value = overrides.get(name)
            new = knob.default if value is None else value
            if new != knob.value:
                log.warning("failure rate %s now %s (was %s)", name, new, knob.value)
            knob.value = new
            knob.overridden = value is not None

    def view(self) -> list[dict[str, Any]]:
        return [
            {
                "name": k.name,
                "rate": k.value,
                "default": k.default,
                "env": k.env,
                "source": "operator" if k.overridden else "environment",
            }
            for k in self.knobs.values()
        ]


_READ = "SELECT name, rate FROM failure_rates"
_SET = (
    "INSERT INTO failure_rates (name, rate, set_at, set_by) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (name) DO UPDATE SET rate = EXCLUDED.rate, set_at = EXCLUDED.set_at, "
    "set_by = EXCLUDED.set_by"
)
_CLEAR = "DELETE FROM failure_rates WHERE name = $1"
_ALIVE = (
    "INSERT INTO failure_rate_replicas (instance, seen_at) VALUES ($1, now()) "
    "ON CONFLICT (instance) DO UPDATE SET seen_at = now()"
)
_OTHERS_ALIVE = (
    "SELECT count(*) FROM failure_rate_replicas "
    "WHERE instance <> $1 AND seen_at > now() - make_interval(secs => $2)"
)
_FORGET_STOPPED = (
    "DELETE FROM failure_rate_replicas WHERE seen_at <= now() - make_interval(secs => $1)"
)
_GONE = "DELETE FROM failure_rate_replicas WHERE instance = $1"


async def read(conn: Connection) -> dict[str, float]:
    return {row["name"]: row["rate"] for row in await conn.fetch(_READ)}


async def store(conn: Connection, name: str, rate: float | None, actor: str) -> None:
    if rate is None:
        await conn.execute(_CLEAR, name)
    else:
        await conn.execute(_SET, name, rate, utcnow(), actor[:200])


async def start(rt: Runtime[Any]) -> None:
    """Join the service's running replicas; the first one clears an earlier run's values."""
    if rt.failure_rates is None:
        return
    async with connection(rt.pool) as conn, conn.transaction():
        await conn.execute(_FORGET_STOPPED, ALIVE_FOR)
        if not await conn.fetchval(_OTHERS_ALIVE, INSTANCE, ALIVE_FOR):
            stale = await read(conn)
            if stale:
                log.warning(
                    "no other replica is running: the operator's failure rates of an "
                    "earlier run (%s) give way to the environment's",
                    ", ".join(f"{k}={v}" for k, v in sorted(stale.items())),
                )
                await conn.execute("DELETE FROM failure_rates")
        await conn.execute(_ALIVE, INSTANCE)
    await load(rt)


async def load(rt: Runtime[Any], *, alive: bool = False) -> None:
    """Apply what the database holds to this replica's knobs (saying it is alive)."""
    if rt.failure_rates is not None:
        async with connection(rt.pool) as conn:
            if alive:
                await conn.execute(_ALIVE, INSTANCE)
            rt.failure_rates.apply(await read(conn))


async def leave(rt: Runtime[Any]) -> None:
    if rt.failure_rates is not None:
        async with connection(rt.pool) as conn:
            await conn.execute(_GONE, INSTANCE)


async def follow(rt: Runtime[Any], stop: asyncio.Event) -> None:
    """Keep this replica's knobs on what the database holds, until `stop`."""
    if rt.failure_rates is None:
        return
    while not stop.is_set():
        try:
            await load(rt, alive=True)
        except Exception as exc:  # the database being away must not stop the worker
            log.warning("cannot read the failure rates (keeping the current ones): %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REFRESH_INTERVAL)
    with contextlib.suppress(Exception):  # a replica that cannot say so ages out instead
        await leave(rt)
