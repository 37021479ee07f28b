"""One robust AMQP connection per process: a confirming publisher channel and a
consumer channel. aio-pika's robust connection reconnects by itself and restores
the declared topology and consumers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aio_pika.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractRobustConnection,
)

from shared_domain.messaging.topology import Binding, Bindings, declare_topology

log = logging.getLogger(__name__)

# The saga styles a process may run (ServiceSettings.saga_style).
STYLES = ("orchestration", "choreography", "choreography-unobserved")
STYLE_MARKER = "saga.style.{}"


class StyleConflict(Exception):
    """Other processes on this broker run another saga style: starting would rebind
    their queues under them."""


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready for the wire (already serialised)."""

    message_id: str
    exchange: str
    routing_key: str
    body: bytes
    message_type: str
    correlation_id: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)


class Broker:
    def __init__(
        self,
        url: str,
        *,
        prefetch_count: int,
        app_id: str,
        style: str = "orchestration",
        bindings: tuple[Bindings, Mapping[str, frozenset[Binding]]] | None = None,
    ) -> None:
        self._url = url
        self._style = style
        self._bindings = bindings
        self._prefetch = prefetch_count
        self._app_id = app_id
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._consume_channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}

    async def connect(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self._url, client_properties={"connection_name": self._app_id}
        )
        self._publish_channel = await self._connection.channel(publisher_confirms=True)
        await self._claim_style()
        wanted, every = self._bindings or (None, None)
        await declare_topology(self._publish_channel, wanted, every)
        self._consume_channel = await self._connection.channel()
        await self._consume_channel.set_qos(prefetch_count=self._prefetch)

    async def _claim_style(self) -> None:
        """Say which saga style this process runs, and refuse to go on beside processes
        that run another. Each style has a marker queue that lives while a process of
        that style is connected (auto-delete, consumed by each): one of another style
        with consumers means they run now."""
        assert self._connection is not None
        channel = await self._connection.channel()
        marker = await channel.declare_queue(
            STYLE_MARKER.format(self._style), durable=False, auto_delete=True
        )
        await marker.consume(_nothing_to_do, no_ack=True)
        for other in STYLES:
            if other == self._style:
                continue
            probe = await self._connection.channel()  # a missing queue closes its channel
            try:
                found = await probe.declare_queue(STYLE_MARKER.format(other), passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                continue
            running = found.declaration_result.consumer_count or 0
            await probe.close()
            if running:
                await channel.close()
                raise StyleConflict(_conflict(self._style, other, running))

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    @property
    def blocked(self) -> bool:
        """RabbitMQ has blocked the connection (`connection.blocked`: a memory or disk
        alarm): it reads nothing more from it, publishes and acks alike, until it sends
        `connection.unblocked`. aiormq tracks this in an event it keeps to itself and
        shows nowhere else; were it renamed, this reads as never blocked, and the
        memory-alarm chaos scenario, which expects to see the block, fails."""
        transport = getattr(self._connection, "transport", None)
        underlying = getattr(transport, "connection", None)
        unblocked = getattr(underlying, "_Connection__connection_unblocked", None)
        return self.is_connected and isinstance(unblocked, asyncio.Event) and not unblocked.is_set()

    @property
    def is_connected(self) -> bool:
        # `connected` is cleared while the robust connection is reconnecting, when
        # `is_closed` still says False.
        connected = getattr(self._connection, "connected", None)
        return (
            self._connection is not None
            and not self._connection.is_closed
            and (connected is None or connected.is_set())
            and self._publish_channel is not None
            and not self._publish_channel.is_closed
        )

    async def open_channel(self) -> AbstractChannel:
        """A short-lived channel of its own, with publisher confirms (dead-letter tooling).
        Closing it requeues whatever it fetched and did not ack."""
        if self._connection is None:
            raise RuntimeError("broker is not connected")
        if self.blocked:  # it would read nothing of ours, not even the channel's open
            raise ConnectionError("RabbitMQ blocked the connection (a memory or disk alarm)")
        return await self._connection.channel(publisher_confirms=True)

    async def queue_depths(self, names: list[str]) -> dict[str, int]:
        """Messages ready in each queue (not those delivered and unacknowledged), on a
        channel of its own: a passive declare of a missing queue closes its channel."""
        channel = await self.open_channel()
        try:
            depths = {}
            for name in names:
                queue = await channel.declare_queue(name, passive=True)
                depths[name] = queue.declaration_result.message_count or 0
            return depths
        finally:
            await channel.close()

    @property
    def consume_channel(self) -> AbstractChannel:
        if self._consume_channel is None:
            raise RuntimeError("broker is not connected")
        return self._consume_channel

    async def _exchange(self, name: str) -> AbstractExchange:
        if self._publish_channel is None:
            raise RuntimeError("broker is not connected")
        if name == "":
            return self._publish_channel.default_exchange
        exchange = self._exchanges.get(name)
        if exchange is None:
            exchange = await self._publish_channel.get_exchange(name, ensure=False)
            self._exchanges[name] = exchange
        return exchange

    async def publish(self, message: OutgoingMessage, *, expiration_ms: int | None = None) -> None:
        """Publish persistently and wait for the broker's confirm."""
        exchange = await self._exchange(message.exchange)
        await exchange.publish(
            aio_pika.Message(
                message.body,
                message_id=message.message_id,
                type=message.message_type,
                correlation_id=message.correlation_id,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                app_id=self._app_id,
                headers=dict(message.headers),
                expiration=expiration_ms / 1000 if expiration_ms is not None else None,
            ),
            routing_key=message.routing_key,
            mandatory=True,
        )

    async def publish_many(self, messages: list[OutgoingMessage]) -> None:
        """Publish concurrently on the confirming channel; confirms arrive in batches."""
        if len(messages) == 1:
            await self.publish(messages[0])
        elif messages:
            await asyncio.gather(*(self.publish(m) for m in messages))


async def _nothing_to_do(_message: object) -> None:
    """The style marker queue never gets a message: it is consumed to exist."""


def _conflict(mine: str, theirs: str, running: int) -> str:
    def setting(style: str) -> str:
        mode, _, observer = style.partition("-")
        return f"SAGA_MODE={mode}" + (" SAGA_OBSERVER=false" if observer else "")

    return (
        f"this process runs {setting(mine)}, but {running} process(es) on this broker run "
        f"{setting(theirs)}: every process of a deployment must run the same SAGA_MODE "
        "and SAGA_OBSERVER. Stop them first, or start this one with their settings."
    )
