from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from order_service.domain import Order, OrderLine
from order_service.schemas import MAX_ITEMS, MAX_QUANTITY, MAX_TOTAL, PlaceOrder
from scripts.sample import ADDRESS
from shared_domain.contracts import (
    COMMAND_PAYLOADS,
    COMMANDS_EXCHANGE,
    EVENT_PAYLOADS,
    EVENTS_EXCHANGE,
    PAYLOADS,
    Envelope,
    ItemLine,
    MessageType,
    OrderCreated,
    PaymentProcessed,
    ProcessPayment,
    exchange_for,
)


def envelope(**overrides: Any) -> Envelope:
    fields: dict[str, Any] = {
        "type": MessageType.ORDER_CREATED.value,
        "saga_id": uuid4(),
        "order_id": uuid4(),
        "correlation_id": "req-42",
        "source": "order_service",
        "payload": {"total_amount": "12.50", "items": [{"quantity": 2}]},
    }
    return Envelope(**{**fields, **overrides})


def test_envelope_json_round_trip() -> None:
    original = envelope(causation_id=uuid4(), attempt=3)

    restored = Envelope.model_validate_json(original.model_dump_json())

    assert restored == original
    assert restored.timestamp.tzinfo is not None


def test_envelope_defaults() -> None:
    a, b = envelope(), envelope()

    assert a.message_id != b.message_id
    assert a.causation_id is None
    assert a.attempt == 1


@pytest.mark.parametrize("bad", [{"attempt": 0}, {"unexpected": 1}, {"saga_id": "not-a-uuid"}])
def test_envelope_rejects_bad_fields(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        envelope(**bad)


def test_follow_keeps_the_thread_and_points_at_its_cause() -> None:
    cause = envelope(causation_id=uuid4(), attempt=4)
    payload = ProcessPayment(customer_id=uuid4(), amount=Decimal("12.5"))

    reply = cause.follow(MessageType.PAYMENT_PROCESS, payload, "saga_orchestrator")

    assert (reply.saga_id, reply.order_id, reply.correlation_id) == (
        cause.saga_id,
        cause.order_id,
        cause.correlation_id,
    )
    assert reply.causation_id == cause.message_id
    assert reply.message_id != cause.message_id
    assert (reply.type, reply.source, reply.attempt) == ("payment.process", "saga_orchestrator", 1)
    assert reply.payload == {"customer_id": str(payload.customer_id), "amount": "12.50"}


def test_follow_takes_a_plain_dict_payload() -> None:
    reply = envelope().follow(MessageType.ORDER_PROCESSING, {"k": "v"}, "saga_orchestrator")

    assert reply.payload == {"k": "v"}


@pytest.mark.parametrize(
    ("amount", "wire"),
    [("12.5", "12.50"), ("0", "0.00"), ("7", "7.00"), ("999999999999.99", "999999999999.99")],
)
def test_money_serialises_as_a_two_decimal_string(amount: str, wire: str) -> None:
    payment = PaymentProcessed(payment_id=uuid4(), amount=Decimal(amount), provider_reference="r")

    assert json.loads(payment.model_dump_json())["amount"] == wire
    assert payment.model_dump(mode="json")["amount"] == wire
    assert payment.model_dump()["amount"] == Decimal(amount)


def test_money_round_trips_through_json() -> None:
    payment = PaymentProcessed(payment_id=uuid4(), amount=Decimal("12.50"), provider_reference="r")

    assert PaymentProcessed.model_validate_json(payment.model_dump_json()) == payment


@pytest.mark.parametrize("amount", ["12.345", "0.001", "-1.00", "-0.01", "1000000000000.00"])
def test_money_rejects_bad_amounts(amount: str) -> None:
    with pytest.raises(ValidationError):
        ProcessPayment(customer_id=uuid4(), amount=Decimal(amount))


def test_contracts_are_frozen_and_strict() -> None:
    payment = ProcessPayment(customer_id=uuid4(), amount=Decimal("1.00"))

    with pytest.raises(ValidationError):
        payment.amount = Decimal("2.00")  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ProcessPayment(customer_id=uuid4(), amount=Decimal("1.00"), extra="x")  # type: ignore[call-arg]


def test_every_message_type_has_a_payload_model() -> None:
    assert set(PAYLOADS) == set(MessageType)
    assert not set(COMMAND_PAYLOADS) & set(EVENT_PAYLOADS)


@pytest.mark.parametrize("message_type", list(MessageType))
def test_exchange_for(message_type: MessageType) -> None:
    command = message_type in COMMAND_PAYLOADS

    assert exchange_for(message_type) == (COMMANDS_EXCHANGE if command else EVENTS_EXCHANGE)


def test_command_and_event_exchanges() -> None:
    assert exchange_for(MessageType.PAYMENT_PROCESS) == "saga.commands"
    assert exchange_for(MessageType.NOTIFICATION_SEND) == "saga.commands"
    assert exchange_for(MessageType.PAYMENT_PROCESSED) == "saga.events"
    assert exchange_for(MessageType.ORDER_CREATED) == "saga.events"
    assert {t.value.split(".")[1] for t in COMMAND_PAYLOADS} == {
        "process",
        "refund",
        "reserve",
        "release",
        "create",
        "cancel",
        "send",
    }


# ------------------------------------------------------------------ PlaceOrder


def order(**item: Any) -> dict[str, Any]:
    line = {"product_id": str(uuid4()), "quantity": 1, "price": "9.99", **item}
    return {"customer_id": str(uuid4()), "items": [line], "shipping_address": ADDRESS}


def test_place_order_accepts_the_largest_quantity_and_refuses_more() -> None:
    placed = PlaceOrder.model_validate(order(quantity=MAX_QUANTITY))

    assert placed.items[0].quantity == MAX_QUANTITY
    assert placed.items[0].price == Decimal("9.99")
    with pytest.raises(ValidationError, match="quantity"):
        PlaceOrder.model_validate(order(quantity=MAX_QUANTITY + 1))


@pytest.mark.parametrize(
    "item",
    [
        {"quantity": 0},
        {"quantity": -1},
        {"price": "9.999"},
        {"price": "0"},
        {"price": "-1.00"},
        {"colour": "red"},
    ],
)
def test_place_order_refuses_bad_items(item: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PlaceOrder.model_validate(order(**item))


def test_place_order_refuses_an_empty_item_list() -> None:
    body = order()
    body["items"] = []

    with pytest.raises(ValidationError, match="items"):
        PlaceOrder.model_validate(body)


def test_place_order_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="coupon"):
        PlaceOrder.model_validate({**order(), "coupon": "FREE"})


def test_place_order_refuses_an_incomplete_address() -> None:
    body = order()
    body["shipping_address"] = {**ADDRESS, "city": ""}

    with pytest.raises(ValidationError, match="city"):
        PlaceOrder.model_validate(body)


def test_the_largest_order_the_limits_allow_has_a_total_money_carries() -> None:
    body = order(quantity=MAX_QUANTITY, price="999999.99")
    body["items"] = body["items"] * MAX_ITEMS
    placed = PlaceOrder.model_validate(body)
    assert sum(i.price * i.quantity for i in placed.items) <= MAX_TOTAL


@pytest.mark.parametrize(
    "price", ["", "0", "0.00", "01.5", "1.999", "1000000", "1e3", " 5", "-1", 49.99, 5]
)
def test_a_price_outside_the_pattern_is_refused(price: object) -> None:
    with pytest.raises(ValidationError, match="string amount"):
        PlaceOrder.model_validate(order(price=price))


@pytest.mark.parametrize("price", ["0.01", "0.1", "0.5", "1", "1.5", "49.99", "999999.99"])
def test_a_price_inside_the_pattern_is_taken_exactly(price: str) -> None:
    assert PlaceOrder.model_validate(order(price=price)).items[0].price == Decimal(price)


def test_the_largest_accepted_total_is_representable() -> None:
    raw = order(quantity=MAX_QUANTITY, price="999999.99")
    raw["items"] = raw["items"] * MAX_ITEMS
    body = PlaceOrder.model_validate(raw)
    placed = Order.place(
        body.customer_id,
        [OrderLine(i.product_id, i.quantity, i.price) for i in body.items],
        ADDRESS,
        datetime.now(UTC),
    )

    created = OrderCreated(
        customer_id=placed.customer_id,
        items=[
            ItemLine(product_id=i.product_id, quantity=i.quantity, price=i.price)
            for i in placed.items
        ],
        total_amount=placed.total_amount,
        shipping_address=body.shipping_address,
    )
    assert created.total_amount == placed.total_amount
