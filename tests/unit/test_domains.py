from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from inventory_service.domain import (
    INSUFFICIENT_STOCK,
    ORDER_CANCELLED,
    UNKNOWN_PRODUCT,
    Product,
    ReservationStatus,
    cancelled_before_reserve,
    release,
    reserve,
    wanted_quantities,
)
from notification_service.domain import Notification, NotificationStatus
from order_service.domain import Order, OrderLine, OrderStatus
from payment_service.domain import Payment, PaymentStatus
from shared_domain.contracts import NotificationKind

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=1)
ADDRESS = {"street": "1 Main St", "city": "X", "state": "Y", "zip_code": "1", "country": "US"}


def line(price: str, quantity: int = 1) -> OrderLine:
    return OrderLine(uuid4(), quantity, Decimal(price))


def place(*lines: OrderLine) -> Order:
    return Order.place(uuid4(), list(lines), ADDRESS, NOW)


# ------------------------------------------------------------------ order


@pytest.mark.parametrize(
    ("lines", "total"),
    [
        ([line("19.99", 3)], Decimal("59.97")),
        ([line("10.00", 2), line("5.50")], Decimal("25.50")),
        ([line("0.1", 3)], Decimal("0.30")),
        ([line("0.125")], Decimal("0.13")),
        ([line("0.125"), line("0.125")], Decimal("0.26")),
        ([line("1"), line("2")], Decimal("3.00")),
    ],
)
def test_place_totals_with_decimal_and_half_up_rounding(
    lines: list[OrderLine], total: Decimal
) -> None:
    order = place(*lines)

    assert order.total_amount == total
    assert str(order.total_amount) == str(total)
    assert isinstance(order.total_amount, Decimal)


def test_place_starts_pending_with_one_history_entry() -> None:
    customer = uuid4()
    order = Order.place(customer, [line("1.00")], ADDRESS, NOW, "key-1", "fp")

    assert order.status is OrderStatus.PENDING
    assert (order.customer_id, order.idempotency_key, order.request_fingerprint) == (
        customer,
        "key-1",
        "fp",
    )
    assert order.created_at == order.updated_at == NOW
    assert order.failure_reason is None
    assert isinstance(order.saga_id, UUID) and order.saga_id != order.id
    assert [(c.status, c.reason, c.at) for c in order.changes] == [
        (OrderStatus.PENDING, "order placed", NOW)
    ]


def test_place_copies_the_item_list() -> None:
    items = [line("1.00")]
    order = Order.place(uuid4(), items, ADDRESS, NOW)
    items.append(line("2.00"))

    assert len(order.items) == 1


def test_place_needs_at_least_one_item() -> None:
    with pytest.raises(ValueError, match="at least one item"):
        Order.place(uuid4(), [], ADDRESS, NOW)


def test_line_subtotal_rounds_half_up() -> None:
    assert line("0.125", 1).subtotal == Decimal("0.13")
    assert line("3.335", 1).subtotal == Decimal("3.34")
    assert line("2.50", 4).subtotal == Decimal("10.00")


@pytest.mark.parametrize(
    "path",
    [
        [OrderStatus.PROCESSING, OrderStatus.COMPLETED],
        [OrderStatus.PROCESSING, OrderStatus.CANCELLED],
        [OrderStatus.PROCESSING, OrderStatus.FAILED],
        [OrderStatus.COMPLETED],
        [OrderStatus.CANCELLED],
    ],
)
def test_move_to_follows_the_lifecycle(path: list[OrderStatus]) -> None:
    order = place(line("1.00"))

    assert all(order.move_to(status, None, LATER) for status in path)
    assert order.status is path[-1]
    assert order.updated_at == LATER
    assert [c.status for c in order.changes] == [OrderStatus.PENDING, *path]


@pytest.mark.parametrize("terminal", [OrderStatus.COMPLETED, OrderStatus.CANCELLED])
@pytest.mark.parametrize("status", list(OrderStatus))
def test_completed_or_cancelled_order_never_moves(
    terminal: OrderStatus, status: OrderStatus
) -> None:
    order = place(line("1.00"))
    order.move_to(terminal, "why", NOW)
    changes = list(order.changes)

    assert order.move_to(status, "late", LATER) is False
    assert order.status is terminal
    assert order.changes == changes
    assert order.updated_at == NOW


@pytest.mark.parametrize(
    "status", [OrderStatus.PENDING, OrderStatus.PROCESSING, OrderStatus.FAILED]
)
def test_failed_order_ignores_stale_events(status: OrderStatus) -> None:
    order = place(line("1.00"))
    order.move_to(OrderStatus.FAILED, "refund failed", NOW)

    assert order.move_to(status, "late", LATER) is False
    assert order.status is OrderStatus.FAILED


def test_failed_order_takes_the_outcome_of_an_operator_retry() -> None:
    order = place(line("1.00"))
    order.move_to(OrderStatus.FAILED, "refund failed", NOW)

    assert order.move_to(OrderStatus.CANCELLED, "refunded on retry", LATER) is True
    assert order.status is OrderStatus.CANCELLED
    assert order.failure_reason == "refunded on retry"


def test_processing_arriving_after_completed_is_ignored() -> None:
    order = place(line("1.00"))

    assert order.move_to(OrderStatus.COMPLETED, None, NOW) is True
    assert order.move_to(OrderStatus.PROCESSING, None, LATER) is False
    assert order.status is OrderStatus.COMPLETED


def test_duplicate_and_backwards_moves_are_ignored() -> None:
    order = place(line("1.00"))
    order.move_to(OrderStatus.PROCESSING, None, NOW)

    assert order.move_to(OrderStatus.PROCESSING, None, LATER) is False
    assert order.move_to(OrderStatus.PENDING, None, LATER) is False
    assert order.status is OrderStatus.PROCESSING
    assert len(order.changes) == 2


@pytest.mark.parametrize("status", [OrderStatus.CANCELLED, OrderStatus.FAILED])
def test_cancel_and_fail_record_the_reason(status: OrderStatus) -> None:
    order = place(line("1.00"))

    order.move_to(status, "payment failed: card_declined", LATER)

    assert order.failure_reason == "payment failed: card_declined"
    assert order.changes[-1].status is status
    assert order.changes[-1].reason == "payment failed: card_declined"
    assert order.changes[-1].at == LATER


def test_completion_does_not_set_a_failure_reason() -> None:
    order = place(line("1.00"))

    order.move_to(OrderStatus.COMPLETED, "all good", LATER)

    assert order.failure_reason is None
    assert order.changes[-1].reason == "all good"


# ------------------------------------------------------------------ inventory


def product(stock: int, reserved: int = 0) -> Product:
    return Product(uuid4(), "widget", Decimal("9.99"), stock, reserved)


def catalogue(*products: Product) -> dict[UUID, Product]:
    return {p.id: p for p in products}


def test_wanted_quantities_sums_duplicates_and_sorts() -> None:
    a, b, c = sorted((uuid4() for _ in range(3)), key=str)

    wanted = wanted_quantities([(c, 1), (a, 2), (b, 4), (a, 3), (c, 5)])

    assert wanted == {a: 5, b: 4, c: 6}
    assert list(wanted) == [a, b, c]


def test_wanted_quantities_of_nothing_is_empty() -> None:
    assert wanted_quantities([]) == {}


def test_reserve_takes_every_line() -> None:
    p1, p2 = product(10), product(3, reserved=1)
    order_id = uuid4()

    reservation = reserve(order_id, {p1.id: 4, p2.id: 3}, catalogue(p1, p2), NOW)

    assert reservation.status is ReservationStatus.RESERVED
    assert (reservation.order_id, reservation.items) == (order_id, {p1.id: 4, p2.id: 3})
    assert reservation.failure_reason is None
    assert (p1.stock, p1.reserved, p2.stock, p2.reserved) == (6, 4, 0, 4)


def test_reserve_refuses_unknown_product_without_touching_stock() -> None:
    known = product(10)
    missing = uuid4()

    reservation = reserve(uuid4(), {known.id: 2, missing: 1}, catalogue(known), NOW)

    assert reservation.status is ReservationStatus.FAILED
    assert reservation.failure_reason == UNKNOWN_PRODUCT
    assert reservation.failure_detail == {"product_id": str(missing)}
    assert (known.stock, known.reserved) == (10, 0)


def test_reserve_is_all_or_nothing_on_insufficient_stock() -> None:
    plenty = Product(UUID(int=1), "plenty", Decimal("1.00"), 10, 0)
    short = Product(UUID(int=2), "short", Decimal("1.00"), 2, 1)
    wanted = wanted_quantities([(short.id, 3), (plenty.id, 5)])
    assert list(wanted) == [plenty.id, short.id]

    reservation = reserve(uuid4(), wanted, catalogue(plenty, short), NOW)

    assert reservation.status is ReservationStatus.FAILED
    assert reservation.failure_reason == INSUFFICIENT_STOCK
    assert reservation.failure_detail == {
        "product_id": str(short.id),
        "requested": 3,
        "available": 2,
    }
    assert (plenty.stock, plenty.reserved, short.stock, short.reserved) == (10, 0, 2, 1)


def test_reserve_exactly_the_available_stock() -> None:
    p = product(3)

    reservation = reserve(uuid4(), {p.id: 3}, catalogue(p), NOW)

    assert reservation.status is ReservationStatus.RESERVED
    assert (p.stock, p.reserved) == (0, 3)


def test_release_restores_stock() -> None:
    p1, p2 = product(10), product(5)
    products = catalogue(p1, p2)
    reservation = reserve(uuid4(), {p1.id: 4, p2.id: 5}, products, NOW)

    release(reservation, products, LATER)

    assert reservation.status is ReservationStatus.RELEASED
    assert reservation.updated_at == LATER
    assert (p1.stock, p1.reserved, p2.stock, p2.reserved) == (10, 0, 5, 0)


@pytest.mark.parametrize("how", ["failed", "released", "cancelled"])
def test_release_of_a_non_reserved_reservation_raises(how: str) -> None:
    p = product(1)
    products = catalogue(p)
    if how == "failed":
        reservation = reserve(uuid4(), {p.id: 2}, products, NOW)
    elif how == "released":
        reservation = reserve(uuid4(), {p.id: 1}, products, NOW)
        release(reservation, products, NOW)
    else:
        reservation = cancelled_before_reserve(uuid4(), NOW)

    with pytest.raises(ValueError, match="cannot release"):
        release(reservation, products, LATER)
    assert (p.stock, p.reserved) == (1, 0)


def test_cancelled_before_reserve_is_an_empty_tombstone() -> None:
    order_id = uuid4()

    tombstone = cancelled_before_reserve(order_id, NOW)

    assert tombstone.status is ReservationStatus.CANCELLED
    assert tombstone.order_id == order_id
    assert tombstone.items == {}
    assert tombstone.failure_reason == ORDER_CANCELLED


# ------------------------------------------------------------------ payment


def test_charged_payment_needs_a_refund() -> None:
    order_id, customer = uuid4(), uuid4()

    payment = Payment.charged(order_id, customer, Decimal("25.50"), "ch_1", NOW)

    assert payment.status is PaymentStatus.COMPLETED
    assert (payment.order_id, payment.customer_id, payment.amount) == (
        order_id,
        customer,
        Decimal("25.50"),
    )
    assert payment.provider_reference == "ch_1"
    assert payment.failure_reason is None
    assert payment.needs_refund is True
    assert payment.refunded_amount == Decimal("0.00")


def test_declined_payment_needs_no_refund() -> None:
    payment = Payment.declined(uuid4(), None, Decimal("25.50"), "card_declined", NOW)

    assert payment.status is PaymentStatus.FAILED
    assert payment.failure_reason == "card_declined"
    assert payment.provider_reference is None
    assert payment.needs_refund is False
    assert payment.refunded_amount == Decimal("0.00")


def test_mark_refunded_from_completed() -> None:
    payment = Payment.charged(uuid4(), uuid4(), Decimal("25.50"), "ch_1", NOW)

    payment.mark_refunded(LATER)

    assert payment.status is PaymentStatus.REFUNDED
    assert payment.updated_at == LATER
    assert payment.needs_refund is False
    assert payment.refunded_amount == Decimal("25.50")


def test_mark_refunded_refuses_a_declined_payment() -> None:
    payment = Payment.declined(uuid4(), uuid4(), Decimal("25.50"), "card_declined", NOW)

    with pytest.raises(ValueError, match="cannot refund a failed payment"):
        payment.mark_refunded(LATER)
    assert payment.status is PaymentStatus.FAILED
    assert payment.updated_at == NOW


def test_mark_refunded_refuses_a_second_refund() -> None:
    payment = Payment.charged(uuid4(), uuid4(), Decimal("25.50"), "ch_1", NOW)
    payment.mark_refunded(NOW)

    with pytest.raises(ValueError, match="cannot refund a refunded payment"):
        payment.mark_refunded(LATER)
    assert payment.updated_at == NOW


# ------------------------------------------------------------------ notification


@pytest.mark.parametrize(
    ("error", "status"),
    [(None, NotificationStatus.SENT), ("smtp down", NotificationStatus.FAILED)],
)
def test_notification_record_status(error: str | None, status: NotificationStatus) -> None:
    order_id, customer = uuid4(), uuid4()

    note = Notification.record(
        order_id, customer, NotificationKind.ORDER_CONFIRMATION, 2, error, NOW
    )

    assert note.status is status
    assert (note.error, note.attempts, note.channel) == (error, 2, "email")
    assert (note.order_id, note.customer_id) == (order_id, customer)
    assert note.created_at == note.updated_at == NOW


@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        (NotificationKind.ORDER_CONFIRMATION, "Your order {} is confirmed"),
        (NotificationKind.ORDER_CANCELLED, "Your order {} was cancelled"),
    ],
)
def test_notification_subject_names_the_order(kind: NotificationKind, subject: str) -> None:
    order_id = uuid4()

    note = Notification.record(order_id, uuid4(), kind, 1, None, NOW)

    assert note.subject == subject.format(order_id)
