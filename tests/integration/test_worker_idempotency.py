"""The idempotency contract every worker keeps, as one suite run against all four
(payment, inventory, shipping, notification) on the real database and broker, in both
saga styles: in orchestration the worker is sent its commands; in choreography it
reacts to the events that stand for them (shared_domain.choreography), with the same
guarantees:

- a repeated command, redelivered or re-sent with a new id, re-emits the outcome
  recorded the first time and records nothing new;
- concurrent duplicates record one outcome;
- an undo that arrives before its command is recorded, and the late command is
  refused without doing anything;
- a repeated undo undoes once;
- in choreography, the outcome carries the order forward and an undo's its reason back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from aio_pika.abc import AbstractChannel

from inventory_service import handlers as inventory_handlers
from notification_service import handlers as notification_handlers
from payment_service import handlers as payment_handlers
from payment_service.provider import SimulatedProvider
from scripts.sample import ADDRESS
from shared_domain.choreography import CHOREOGRAPHY, ORCHESTRATION, reacting
from shared_domain.contracts import EVENTS_EXCHANGE, Envelope, MessageType
from shared_domain.messaging.consumer import Handler
from shared_domain.runtime import Runtime
from shipping_service import handlers as shipping_handlers
from tests.integration.conftest import capture, deliver
from tests.integration.conftest import command as envelope

pytestmark = pytest.mark.integration

LAPTOP = uuid.UUID("550e8400-e29b-41d4-a716-446655440001")  # seeded with stock 50


def laptops(quantity: int) -> list[dict[str, Any]]:
    return [{"product_id": str(LAPTOP), "quantity": quantity, "price": "1299.99"}]


def placed(items: list[dict[str, Any]], total: str) -> dict[str, Any]:
    """An order.created payload: what choreography's events carry forward as `order`."""
    return {
        "customer_id": str(uuid.uuid4()),
        "items": items,
        "total_amount": total,
        "shipping_address": ADDRESS,
    }


async def rows(rt: Runtime[Any], sql: str, order_id: uuid.UUID) -> list[dict[str, Any]]:
    async with rt.pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch(sql, order_id)]


class WorkerContract:
    """What each worker's subclass names: its messages and how to read its records."""

    replies: ClassVar[str]  # routing key pattern of the worker's replies
    done: ClassVar[str]  # the reply to a command that did its work
    refused: ClassVar[str]  # the reply to a command that came after its undo
    undone: ClassVar[str | None]  # the reply to an undo (None: the worker has no undo)
    record_id: ClassVar[str]  # the payload field naming what the command recorded
    records: ClassVar[str]  # SQL: the worker's records for an order ($1)

    def handlers(self, rt: Runtime[Any]) -> Mapping[MessageType, Handler]:
        raise NotImplementedError

    def command(self, order_id: uuid.UUID) -> Envelope:
        raise NotImplementedError

    def undo(self, order_id: uuid.UUID) -> Envelope:
        raise NotImplementedError

    def event(self, order_id: uuid.UUID) -> Envelope:
        """Choreography: the event the worker does its command's work on."""
        raise NotImplementedError

    def undo_event(self, order_id: uuid.UUID) -> Envelope:
        """Choreography: what the worker undoes on (the undo command itself when only
        the order service's unwind sends it)."""
        return self.undo(order_id)

    carries_order: ClassVar[bool] = True  # its outcome event passes the order on

    # ------------------------------------------------------------------ the style

    @pytest.fixture(params=[ORCHESTRATION, CHOREOGRAPHY])
    def style(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    def consumed(self, rt: Runtime[Any], style: str) -> Mapping[MessageType, Handler]:
        """What the worker's consumer hands its messages to in `style`."""
        handlers = self.handlers(rt)
        return reacting(handlers) if style == CHOREOGRAPHY else handlers

    def action(self, order_id: uuid.UUID, style: str) -> Envelope:
        return self.event(order_id) if style == CHOREOGRAPHY else self.command(order_id)

    def undoing(self, order_id: uuid.UUID, style: str) -> Envelope:
        return self.undo_event(order_id) if style == CHOREOGRAPHY else self.undo(order_id)

    def assert_carried(self, style: str, cause: Envelope, answers: list[dict[str, Any]]) -> None:
        """Choreography's events pass on what the next step needs; orchestration's don't."""
        order = cause.payload.get("order", cause.payload)
        for answer in answers:
            carried = answer["payload"].get("order")
            if style == CHOREOGRAPHY and self.carries_order:
                assert carried is not None, answer
                assert carried["customer_id"] == order["customer_id"]
            else:
                assert carried is None, answer

    async def assert_nothing_done(self, rt: Runtime[Any], order_id: uuid.UUID) -> None:
        """After an undo and its late command: the command had no effect."""
        raise NotImplementedError

    async def assert_undone_once(self, rt: Runtime[Any], order_id: uuid.UUID) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ the suite

    async def test_a_repeated_command_re_emits_the_recorded_outcome(
        self, rt: Runtime[Any], channel: AbstractChannel, style: str
    ) -> None:
        replies = await capture(channel, EVENTS_EXCHANGE, self.replies)
        handlers = self.consumed(rt, style)
        order_id = uuid.uuid4()
        first = self.action(order_id, style)
        resent = first.model_copy(update={"message_id": uuid.uuid4()})
        for message in (first, first, resent):  # done, redelivered, re-sent after a timeout
            await deliver(handlers, message)
        answers = [await replies.next_json() for _ in range(3)]
        assert [a["type"] for a in answers] == [self.done] * 3
        assert len({a["payload"][self.record_id] for a in answers}) == 1
        assert [a["causation_id"] for a in answers] == [
            str(first.message_id),
            str(first.message_id),
            str(resent.message_id),
        ]
        self.assert_carried(style, first, answers)
        assert len(await rows(rt, self.records, order_id)) == 1

    async def test_concurrent_duplicates_record_one_outcome(
        self, rt: Runtime[Any], channel: AbstractChannel, style: str
    ) -> None:
        replies = await capture(channel, EVENTS_EXCHANGE, self.replies)
        handlers = self.consumed(rt, style)
        order_id = uuid.uuid4()
        first = self.action(order_id, style)
        copies = [first.model_copy(update={"message_id": uuid.uuid4()}) for _ in range(5)]
        results = await asyncio.gather(
            *(deliver(handlers, c) for c in copies), return_exceptions=True
        )
        # A loser of the race may fail (a unique key) and is retried, as the consumer would.
        for copy, result in zip(copies, results, strict=True):
            if isinstance(result, BaseException):
                await deliver(handlers, copy)
        answers = [await replies.next_json() for _ in copies]
        assert {a["type"] for a in answers} == {self.done}
        assert len({a["payload"][self.record_id] for a in answers}) == 1
        self.assert_carried(style, first, answers)
        assert len(await rows(rt, self.records, order_id)) == 1

    async def test_an_undo_before_its_command_refuses_the_late_command(
        self, rt: Runtime[Any], channel: AbstractChannel, style: str
    ) -> None:
        if self.undone is None:
            pytest.skip("this worker's command has no undo")
        replies = await capture(channel, EVENTS_EXCHANGE, self.replies)
        handlers = self.consumed(rt, style)
        order_id = uuid.uuid4()
        await deliver(handlers, self.undoing(order_id, style))
        await deliver(handlers, self.action(order_id, style))
        await deliver(handlers, self.action(order_id, style))  # re-sent: refused again
        answers = [await replies.next_json() for _ in range(3)]
        assert [a["type"] for a in answers] == [self.undone, self.refused, self.refused]
        self.assert_reason_carried(style, answers[0])
        await self.assert_nothing_done(rt, order_id)

    async def test_a_repeated_undo_undoes_once(
        self, rt: Runtime[Any], channel: AbstractChannel, style: str
    ) -> None:
        if self.undone is None:
            pytest.skip("this worker's command has no undo")
        replies = await capture(channel, EVENTS_EXCHANGE, self.replies)
        handlers = self.consumed(rt, style)
        order_id = uuid.uuid4()
        undo = self.undoing(order_id, style)
        for message in (self.action(order_id, style), undo, undo):
            await deliver(handlers, message)
        answers = [await replies.next_json() for _ in range(3)]
        assert [a["type"] for a in answers] == [self.done, self.undone, self.undone]
        assert answers[1]["payload"] == answers[2]["payload"]
        self.assert_reason_carried(style, answers[1])
        await self.assert_undone_once(rt, order_id)

    def assert_reason_carried(self, style: str, undone: dict[str, Any]) -> None:
        """Choreography: an undo's event carries why back to the undo before it."""
        reason = undone["payload"].get("reason")
        if style == CHOREOGRAPHY:
            assert reason and "failed" in reason, undone
        else:
            assert reason is None, undone


class TestPayment(WorkerContract):
    replies = "payment.*"
    done = "payment.processed"
    refused = "payment.failed"
    undone = "payment.refunded"
    record_id = "payment_id"
    records = "SELECT * FROM payments WHERE order_id = $1"

    @pytest.fixture
    def rt(self, payment_rt: Runtime[Any]) -> Runtime[Any]:
        return payment_rt

    def handlers(self, rt: Runtime[Any]) -> Mapping[MessageType, Handler]:
        return payment_handlers.build_handlers(rt, SimulatedProvider(0.0))

    def command(self, order_id: uuid.UUID) -> Envelope:
        payload = {"customer_id": str(uuid.uuid4()), "amount": "20.00"}
        return envelope(MessageType.PAYMENT_PROCESS, payload, order_id)

    def undo(self, order_id: uuid.UUID) -> Envelope:
        return envelope(MessageType.PAYMENT_REFUND, {"reason": "inventory failed"}, order_id)

    def event(self, order_id: uuid.UUID) -> Envelope:
        return envelope(MessageType.ORDER_CREATED, placed(laptops(1), "20.00"), order_id)

    def undo_event(self, order_id: uuid.UUID) -> Envelope:
        return envelope(MessageType.INVENTORY_FAILED, {"reason": "out of stock"}, order_id)

    async def assert_nothing_done(self, rt: Runtime[Any], order_id: uuid.UUID) -> None:
        [payment] = await rows(rt, self.records, order_id)
        assert (payment["status"], payment["amount"]) == ("failed", Decimal("0.00"))
        assert payment["provider_reference"] is None  # never charged

    async def assert_undone_once(self, rt: Runtime[Any], order_id: uuid.UUID) -> None:
        [payment] = await rows(rt, self.records, order_id)
        assert (payment["status"], payment["amount"]) == ("refunded", Decimal("20.00"))


class TestInventory(WorkerContract):
    replies = "inventory.*"
    done = "inventory.reserved"
    refused = "inventory.failed"
    undone = "inventory.released"
    record_id = "reservation_id"
    records = "SELECT * FROM reservations WHERE order_id = $1"

    @pytest.fixture
    def rt(self, inventory_rt: Runtime[Any]) -> Runtime[Any]:
        return inventory_rt

    def handlers(self, rt: Runtime[Any]) -> Mapping[MessageType, Handler]:
        return inventory_handlers.build_handlers(rt)

    def command(self, order_id: uuid.UUID) -> Envelope:
        return envelope(MessageType.INVENTORY_RESERVE, {"items": laptops(3)}, order_id)

    def undo(self, order_id: uuid.UUID) -> Envelope:
        return envelope(MessageType.INVENTORY_RELEASE, {"reason": "shipping failed"}, order_id)

    def event(self, order_id: uuid.UUID) -> Envelope:
        charged = {
            "payment_id": str(uuid.uuid4()),
            "amount": "3899.97",
            "provider_reference": "sim-1",
            "order": placed(laptops(3), "3899.97"),
        }
        return envelope(MessageType.PAYMENT_PROCESSED, charged, order_id)

    def undo_event(self, order_id: uuid.UUID) -> Envelope:
        return envelope(MessageType.SHIPPING_FAILED, {"reason": "no carrier"}, order_id)

    async def laptop(self, rt: Runtime[Any]) -> tuple[int, int]:
        async with rt.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT stock, reserved FROM products WHERE id = $1", LAPTOP)
        return row["stock"], row["reserved"]

    async def assert_nothing_done(self, rt: Runtime[Any], order_id: uuid.UUID) -> None:
        [reservation] = await rows(rt, self.records, order_id)
        assert reservation["status"] == "cancelled"
        assert await self.laptop(rt) == (50, 0)

    async def assert_undone_once(self, rt: Runtime[Any], order_id: uuid.UUID) -> None:
        [reservation] = await rows(rt, self.records, order_id)
        assert reservation["status"] == "released"
        assert await self.laptop(rt) == (50, 0)


class TestShipping(WorkerContract):
    replies = "shipping.*"
    done = "shipping.created"
    refused = "shipping.failed"
    undone = "shipping.cancelled"
    record_id = "shipment_id"
    records = "SELECT * FROM shipments WHERE order_id = $1"

    @pytest.fixture
    def rt(self, shipping_rt: Runtime[Any]) -> Runtime[Any]:
        return shipping_rt

    def handlers(self, rt: Runtime[Any]) -> Mapping[MessageType, Handler]:
        return shipping_handlers.build_handlers(rt)

    def command(self, order_id: uuid.UUID) -> Envelope:
        payload = {"items": laptops(1), "shipping_address": ADDRESS}
        return envelope(MessageType.SHIPPING_CREATE, payload, order_id)

    def event(self, order_id: uuid.UUID) -> Envelope:
        reserved = {"reservation_id": str(uuid.uuid4()), "order": placed(laptops(1), "1299.99")}
        return envelope(MessageType.INVENTORY_RESERVED, reserved, order_id)

    def undo(self, order_id: uuid.UUID) -> Envelope:
        return envelope(MessageType.SHIPPING_CANCEL, {"reason": "payment failed"}, order_id)

    async def assert_nothing_done(self, rt: Runtime[Any], order_id: uuid.UUID) -> None:
        [shipment] = await rows(rt, self.records, order_id)
        assert shipment["status"] == "cancelled"
        assert shipment["tracking_number"] is None  # never booked

    async def assert_undone_once(self, rt: Runtime[Any], order_id: uuid.UUID) -> None:
        [shipment] = await rows(rt, self.records, order_id)
        assert shipment["status"] == "cancelled"
        assert shipment["tracking_number"] is not None  # booked, then cancelled


class TestNotification(WorkerContract):
    replies = "notification.*"
    done = "notification.sent"
    refused = "notification.failed"
    undone = None
    record_id = "notification_id"
    records = "SELECT * FROM notifications WHERE order_id = $1"

    @pytest.fixture
    def rt(self, notification_rt: Runtime[Any]) -> Runtime[Any]:
        return notification_rt

    def handlers(self, rt: Runtime[Any]) -> Mapping[MessageType, Handler]:
        return notification_handlers.build_handlers(rt)

    carries_order = False  # the last step: nobody after it needs the order

    def command(self, order_id: uuid.UUID) -> Envelope:
        payload = {"kind": "order_confirmation", "customer_id": str(uuid.uuid4()), "reason": None}
        return envelope(MessageType.NOTIFICATION_SEND, payload, order_id)

    def event(self, order_id: uuid.UUID) -> Envelope:
        shipped = {
            "shipment_id": str(uuid.uuid4()),
            "carrier": "sim",
            "tracking_number": "SIM-1",
            "order": placed(laptops(1), "1299.99"),
        }
        return envelope(MessageType.SHIPPING_CREATED, shipped, order_id)
