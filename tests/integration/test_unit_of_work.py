"""A unit of work whose database session is ended under it, against the real PostgreSQL:
the failure is an outage (retried, or answered with a 503), never an internal error, and
the next unit of work gets a working connection.

The service talks to PostgreSQL through a relay that can hold back the end of a
connection, which opens on demand the window that is otherwise a race: the server's
FATAL goodbye has reached the client, the socket's end has not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from payment_service.app import SERVICE as PAYMENT
from payment_service.settings import Settings as PaymentSettings
from shared_domain.retry import is_outage
from shared_domain.runtime import Runtime
from tests.integration.conftest import open_runtime

pytestmark = pytest.mark.integration


class Relay:
    """A TCP relay to PostgreSQL that passes the server's bytes on at once and its
    end-of-stream `hold` seconds late."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.hold = 0.0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self.upstream)
        to_server = asyncio.create_task(self._pipe(client_r, server_w, 0.0))
        to_client = asyncio.create_task(self._pipe(server_r, client_w, None))
        self._tasks |= {to_server, to_client}
        await asyncio.gather(to_server, to_client, return_exceptions=True)
        self._tasks -= {to_server, to_client}

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: float | None
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            await asyncio.sleep(self.hold if hold is None else hold)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@pytest.fixture
async def relayed_rt(vhost: str, db_prefix: str) -> AsyncIterator[tuple[Runtime, Relay]]:
    defaults = PaymentSettings()
    relay = Relay(defaults.db_host, defaults.db_port)
    port = await relay.start()
    rt = await open_runtime(PAYMENT, PaymentSettings, vhost, db_prefix, DB_PORT=port)
    yield rt, relay
    await rt.stop()
    await relay.stop()


async def end_session(rt: Runtime, pid: int) -> None:
    s = rt.settings
    admin = await asyncpg.connect(
        host=s.db_host,
        port=PaymentSettings().db_port,
        user=s.db_user,
        password=s.db_password,
        database="postgres",
    )
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await asyncio.sleep(0.1)  # the goodbye has reached the client


# hold 0.5: the goodbye has arrived and the socket's end has not; hold 0: asyncpg has
# seen the socket close and taken the connection back from the unit of work.
@pytest.mark.parametrize("hold", [0.5, 0.0])
async def test_a_session_ended_mid_transaction_is_an_outage(relayed_rt, hold: float) -> None:
    rt, relay = relayed_rt
    relay.hold = hold
    with pytest.raises(Exception) as raised:
        async with rt.uow() as uow:
            await end_session(rt, await uow.conn.fetchval("SELECT pg_backend_pid()"))
            await uow.conn.execute("SELECT 1")

    assert is_outage(raised.value), repr(raised.value)
    async with rt.uow() as uow:
        assert await uow.conn.fetchval("SELECT 1") == 1


@pytest.mark.parametrize("hold", [0.5, 0.0])
async def test_an_idle_connection_ended_in_the_pool_fails_once_as_an_outage(
    relayed_rt, hold: float
) -> None:
    rt, relay = relayed_rt
    relay.hold = hold
    async with rt.uow() as uow:
        pid = await uow.conn.fetchval("SELECT pg_backend_pid()")
    await end_session(rt, pid)

    try:
        async with rt.uow() as uow:
            await uow.conn.execute("SELECT 1")
    except Exception as exc:  # handed out before its end was seen
        assert hold > 0 and is_outage(exc), repr(exc)
    async with rt.uow() as uow:
        assert await uow.conn.fetchval("SELECT pg_backend_pid()") != pid
