"""Choreography without a broker or database: what each service does on each event, what
travels forward and back in the events, which queue hears what in each style, and the
observer's passive saga (duplicates, out-of-order events, a failed undo)."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from order_service.domain import Order, OrderLine, OrderStatus
from order_service.handlers import _outcome
from saga_orchestrator.domain import Observation, Saga, SagaStatus, Step, StepState, StepStatus
from shared_domain import choreography
from shared_domain.choreography import REACTIONS, bindings, reacting
from shared_domain.contracts import (
    COMMANDS_EXCHANGE,
    EVENTS_EXCHANGE,
    PAYLOADS,
    Envelope,
    InventoryReleased,
    PaymentProcessed,
    PaymentRefunded,
    PaymentRefundFailed,
)
from shared_domain.contracts import MessageType as T
from shared_domain.messaging.broker import _conflict
from shared_domain.messaging.consumer import PermanentError
from tests.unit.test_saga_state_machine import NOW, ORDER, POLICY


def event(type_: T, payload: dict[str, Any], source: str = "payment_service") -> Envelope:
    return Envelope(
        type=type_.value,
        saga_id=uuid4(),
        order_id=uuid4(),
        correlation_id="c",
        source=source,
        payload=payload,
    )


class Worker:
    """Command handlers that record what they were given and answer as a worker does."""

    def __init__(self, *commands: T) -> None:
        self.seen: list[tuple[Envelope, Any]] = []
        self.commands = {c: self.handle for c in commands}

    async def handle(self, envelope: Envelope, command: Any) -> None:
        self.seen.append((envelope, command))


async def react(worker: Worker, incoming: Envelope) -> tuple[Envelope, Any]:
    handlers = reacting(worker.commands)
    payload = PAYLOADS[T(incoming.type)].model_validate(incoming.payload)
    await handlers[T(incoming.type)](incoming, payload)
    return worker.seen[-1]


async def test_payment_charges_on_order_created_and_carries_the_order_forward() -> None:
    worker = Worker(T.PAYMENT_PROCESS, T.PAYMENT_REFUND)
    created = event(T.ORDER_CREATED, copy.deepcopy(ORDER), "order_service")
    command, payload = await react(worker, created)
    assert command.type == "payment.process" and command.message_id == created.message_id
    assert str(payload.customer_id) == ORDER["customer_id"]
    assert f"{payload.amount:.2f}" == ORDER["total_amount"]
    processed = command.follow(
        T.PAYMENT_PROCESSED,
        PaymentProcessed(payment_id=uuid4(), amount=payload.amount, provider_reference="r"),
        "payment_service",
    )
    assert processed.causation_id == created.message_id
    assert processed.payload["order"] == ORDER, "the order travels on for inventory"
    PaymentProcessed.model_validate(processed.payload)


async def test_each_forward_step_is_built_from_the_order_its_event_carries() -> None:
    inventory = Worker(T.INVENTORY_RESERVE, T.INVENTORY_RELEASE)
    _, reserve = await react(
        inventory,
        event(
            T.PAYMENT_PROCESSED,
            {
                "payment_id": str(uuid4()),
                "amount": "1.00",
                "provider_reference": "r",
                "order": ORDER,
            },
        ),
    )
    assert [str(i.product_id) for i in reserve.items] == [i["product_id"] for i in ORDER["items"]]
    shipping = Worker(T.SHIPPING_CREATE, T.SHIPPING_CANCEL)
    _, ship = await react(
        shipping,
        event(
            T.INVENTORY_RESERVED,
            {"reservation_id": str(uuid4()), "order": ORDER},
            "inventory_service",
        ),
    )
    assert ship.shipping_address.city == "Springfield"
    notification = Worker(T.NOTIFICATION_SEND)
    _, confirm = await react(
        notification,
        event(
            T.SHIPPING_CREATED,
            {"shipment_id": str(uuid4()), "carrier": "c", "tracking_number": "t", "order": ORDER},
            "shipping_service",
        ),
    )
    assert confirm.kind == "order_confirmation" and str(confirm.customer_id) == ORDER["customer_id"]


async def test_an_event_without_the_order_is_refused_as_from_another_style() -> None:
    inventory = Worker(T.INVENTORY_RESERVE, T.INVENTORY_RELEASE)
    bare = event(
        T.PAYMENT_PROCESSED,
        {"payment_id": str(uuid4()), "amount": "1.00", "provider_reference": "r"},
    )
    with pytest.raises(PermanentError, match="carries no order"):
        await react(inventory, bare)
    assert inventory.seen == []


async def test_the_reason_of_a_failure_travels_back_along_the_undos() -> None:
    inventory = Worker(T.INVENTORY_RESERVE, T.INVENTORY_RELEASE)
    failed = event(T.SHIPPING_FAILED, {"reason": "carrier down"}, "shipping_service")
    release, payload = await react(inventory, failed)
    assert payload.reason == "shipping failed: carrier down"
    released = release.follow(
        T.INVENTORY_RELEASED, InventoryReleased(reservation_id=uuid4()), "inventory_service"
    )
    assert released.payload["reason"] == "shipping failed: carrier down"

    payment = Worker(T.PAYMENT_PROCESS, T.PAYMENT_REFUND)
    refund, payload = await react(payment, released)
    assert payload.reason == "shipping failed: carrier down"
    refunded = refund.follow(
        T.PAYMENT_REFUNDED, PaymentRefunded(amount=Decimal("1.00")), "payment_service"
    )
    assert refunded.payload["reason"] == "shipping failed: carrier down"
    # what a message says itself is kept: a refund failure's own reason
    refused = refund.follow(
        T.PAYMENT_REFUND_FAILED, PaymentRefundFailed(reason="card closed"), "payment_service"
    )
    assert refused.payload == {"reason": "card closed"}


async def test_an_undo_that_failed_still_undoes_the_step_before_and_says_so() -> None:
    payment = Worker(T.PAYMENT_PROCESS, T.PAYMENT_REFUND)
    _, payload = await react(
        payment,
        event(T.INVENTORY_RELEASE_FAILED, {"reason": "db gone"}, "inventory_service"),
    )
    assert payload.reason == "compensation of inventory failed: db gone"


async def test_a_cancellation_is_told_to_the_customer_named_in_it() -> None:
    notification = Worker(T.NOTIFICATION_SEND)
    customer = str(uuid4())
    _, notice = await react(
        notification,
        event(
            T.ORDER_CANCELLED,
            {"reason": "payment failed: x", "customer_id": customer},
            "order_service",
        ),
    )
    assert notice.kind == "order_cancelled" and str(notice.customer_id) == customer
    assert notice.reason == "payment failed: x"
    with pytest.raises(PermanentError, match="names no customer"):
        await react(notification, event(T.ORDER_CANCELLED, {"reason": "r"}, "order_service"))


def test_a_worker_keeps_its_commands_and_reacts_only_to_its_own_events() -> None:
    handlers = reacting(Worker(T.SHIPPING_CREATE, T.SHIPPING_CANCEL).commands)
    assert set(handlers) == {
        T.SHIPPING_CREATE,
        T.SHIPPING_CANCEL,
        T.INVENTORY_RESERVED,
    }
    assert reacting({}) == {}, "the order service and the observer gain nothing"


def test_every_step_and_undo_has_its_reaction() -> None:
    commands = {r.command for r in REACTIONS.values()}
    assert commands == {
        T.PAYMENT_PROCESS,
        T.INVENTORY_RESERVE,
        T.SHIPPING_CREATE,
        T.NOTIFICATION_SEND,
        T.INVENTORY_RELEASE,
        T.PAYMENT_REFUND,
    }, "shipping is the last critical step: only the unwind cancels it, by command"
    assert T.SHIPPING_CANCEL in choreography.UNDOS


def test_each_style_binds_its_own_and_unbinds_the_others() -> None:
    orchestration, every = bindings("orchestration")
    choreographed, _ = bindings("choreography")
    unobserved, _ = bindings("choreography-unobserved")
    payment = "payment_service.commands"
    assert orchestration[payment] == {
        (COMMANDS_EXCHANGE, "payment.process"),
        (COMMANDS_EXCHANGE, "payment.refund"),
    }
    assert choreographed[payment] == {
        (EVENTS_EXCHANGE, "order.created"),
        (EVENTS_EXCHANGE, "inventory.failed"),
        (EVENTS_EXCHANGE, "inventory.released"),
        (EVENTS_EXCHANGE, "inventory.release_failed"),
        (COMMANDS_EXCHANGE, "payment.refund"),  # the order service's unwind
    }
    assert choreographed["notification_service.commands"] == {
        (EVENTS_EXCHANGE, "shipping.created"),
        (EVENTS_EXCHANGE, "order.cancelled"),
    }
    assert (EVENTS_EXCHANGE, "order.created") in choreographed["saga_orchestrator.events"]
    assert unobserved["saga_orchestrator.events"] == set()
    assert (EVENTS_EXCHANGE, "order.completed") not in choreographed["order_service.events"]
    for queue, bound in every.items():
        assert orchestration[queue] | choreographed[queue] == bound


def test_a_process_of_another_style_is_told_which_settings_differ() -> None:
    said = _conflict("orchestration", "choreography-unobserved", 3)
    assert "this process runs SAGA_MODE=orchestration" in said
    assert "3 process(es) on this broker run SAGA_MODE=choreography SAGA_OBSERVER=false" in said


# ----------------------------------------------------------------- the order service


@pytest.mark.parametrize(
    ("event_type", "payload", "expected"),
    [
        (T.PAYMENT_PROCESSED, {}, (OrderStatus.PROCESSING, None)),
        (
            T.PAYMENT_FAILED,
            {"reason": "declined"},
            (OrderStatus.CANCELLED, "payment failed: declined"),
        ),
        (
            T.PAYMENT_REFUNDED,
            {"reason": "inventory failed: short"},
            (OrderStatus.CANCELLED, "inventory failed: short"),
        ),
        (
            T.PAYMENT_REFUNDED,
            {"reason": "compensation of inventory failed: x"},
            (OrderStatus.FAILED, "compensation of inventory failed: x"),
        ),
        (
            T.PAYMENT_REFUND_FAILED,
            {"reason": "no"},
            (OrderStatus.FAILED, "compensation of payment failed: no"),
        ),
        (T.NOTIFICATION_FAILED, {"kind": "order_confirmation"}, (OrderStatus.COMPLETED, None)),
        (T.NOTIFICATION_SENT, {"kind": "order_cancelled"}, None),
    ],
)
def test_what_each_event_does_to_the_order(
    event_type: T, payload: dict[str, Any], expected: tuple[OrderStatus, str | None] | None
) -> None:
    assert _outcome(event_type, payload) == expected


def test_a_failed_order_stays_failed_when_the_undos_after_it_finish() -> None:
    order = Order.place(uuid4(), [OrderLine(uuid4(), 1, Decimal("10.00"))], {}, NOW)
    assert order.settle(OrderStatus.FAILED, "compensation of inventory failed: x", NOW)
    assert not order.settle(OrderStatus.CANCELLED, "inventory failed", NOW)
    assert order.status is OrderStatus.FAILED


# ----------------------------------------------------------------- the observer


def observed() -> Saga:
    saga = Saga(id=uuid4(), order_id=uuid4(), order=copy.deepcopy(ORDER))
    saga.start_observed(NOW, POLICY)
    return saga


def see(saga: Saga, *events: T, payload: dict[str, Any] | None = None) -> list[Observation]:
    return [saga.observe(e, payload or {}, NOW, POLICY) for e in events]


def test_the_observer_follows_the_happy_path_with_no_command_in_flight() -> None:
    saga = observed()
    assert saga.steps[Step.PAYMENT].status is StepStatus.IN_PROGRESS
    assert saga.deadline is None and saga.steps[Step.PAYMENT].command_id is None
    assert (
        see(
            saga, T.PAYMENT_PROCESSED, T.INVENTORY_RESERVED, T.SHIPPING_CREATED, T.NOTIFICATION_SENT
        )
        == [Observation.APPLIED] * 4
    )
    assert saga.status is SagaStatus.COMPLETED
    assert all(s.deadline is None and s.command_id is None for s in saga.steps.values())


def test_the_observer_waits_for_an_event_it_has_not_seen_and_ignores_a_repeat() -> None:
    saga = observed()
    assert see(saga, T.INVENTORY_RESERVED) == [Observation.EARLY]
    assert saga.steps[Step.INVENTORY].status is StepStatus.PENDING
    assert see(saga, T.PAYMENT_PROCESSED, T.PAYMENT_PROCESSED) == [
        Observation.APPLIED,
        Observation.STALE,
    ]
    assert see(saga, T.INVENTORY_RESERVED) == [Observation.APPLIED]
    # an undo before the failure that calls for it: kept, and applied once it comes
    saga = observed()
    see(saga, T.PAYMENT_PROCESSED)
    assert see(saga, T.PAYMENT_REFUNDED) == [Observation.KEPT]
    assert saga.steps[Step.PAYMENT].status is StepStatus.COMPLETED
    assert see(saga, T.INVENTORY_FAILED) == [Observation.APPLIED]
    assert saga.steps[Step.PAYMENT].status is StepStatus.COMPENSATED
    assert saga.status is SagaStatus.CANCELLED


def test_the_observer_sees_the_undos_in_reverse_order_and_the_cancellation_notice() -> None:
    saga = observed()
    see(saga, T.PAYMENT_PROCESSED, T.INVENTORY_RESERVED)
    assert (
        see(saga, T.SHIPPING_FAILED, T.INVENTORY_RELEASED, T.PAYMENT_REFUNDED)
        == [Observation.APPLIED] * 3
    )
    assert saga.status is SagaStatus.CANCELLED
    assert saga.steps[Step.NOTIFICATION].status is StepStatus.IN_PROGRESS  # the notice
    assert see(saga, T.NOTIFICATION_SENT) == [Observation.APPLIED]
    assert saga.status is SagaStatus.CANCELLED


def test_a_failed_undo_is_final_for_the_observer_and_the_saga_ends_failed() -> None:
    saga = observed()
    see(saga, T.PAYMENT_PROCESSED, T.INVENTORY_FAILED)
    assert see(saga, T.PAYMENT_REFUND_FAILED, payload={"reason": "no"}) == [Observation.APPLIED]
    assert saga.status is SagaStatus.FAILED
    assert saga.steps[Step.PAYMENT].status is StepStatus.COMPENSATION_FAILED
    assert see(saga, T.PAYMENT_REFUNDED) == [Observation.STALE], "over: nothing moves it"


def test_choreography_sends_order_status_from_the_order_service() -> None:
    from shared_domain.contracts import CHOREOGRAPHY_SENDERS, SENDERS

    assert SENDERS[T.ORDER_CANCELLED] == "saga_orchestrator"
    assert CHOREOGRAPHY_SENDERS[T.ORDER_CANCELLED] == "order_service"
    assert CHOREOGRAPHY_SENDERS[T.PAYMENT_PROCESSED] == "payment_service"
    assert CHOREOGRAPHY_SENDERS[T.PAYMENT_REFUND] == "order_service"


def test_an_unwound_order_is_not_completed_by_a_late_success() -> None:
    order = Order.place(uuid4(), [OrderLine(uuid4(), 1, Decimal("10.00"))], {}, NOW)
    assert order.unwind(NOW) and not order.unwind(NOW), "unwound once"
    assert not order.settle(OrderStatus.COMPLETED, None, NOW)
    assert order.settle(OrderStatus.CANCELLED, "no outcome in time", NOW)
    assert not order.unwind(NOW), "an ended order is not unwound"


def test_the_observer_follows_the_order_services_unwind_back_from_the_stuck_step() -> None:
    saga = observed()
    see(saga, T.PAYMENT_PROCESSED)
    assert saga.unwind_observed(NOW, POLICY, "no outcome within 120s")
    assert saga.steps[Step.INVENTORY].status is StepStatus.COMPENSATING  # it was in flight
    assert saga.deadline is None
    # shipping had not begun: its cancellation is a tombstone, nothing to follow
    assert see(saga, T.SHIPPING_CANCELLED, T.INVENTORY_RELEASED, T.PAYMENT_REFUNDED) == [
        Observation.STALE,
        Observation.APPLIED,
        Observation.APPLIED,
    ]
    assert saga.status is SagaStatus.CANCELLED
    assert saga.failure_reason == "no outcome within 120s"
    assert see(saga, T.INVENTORY_FAILED) == [Observation.STALE], "a refused late reservation"
    assert not saga.unwind_observed(NOW, POLICY, "again"), "only a running saga is unwound"


def test_the_observer_fails_the_saga_the_order_service_gave_up_on() -> None:
    saga = observed()
    see(saga, T.PAYMENT_PROCESSED)
    saga.unwind_observed(NOW, POLICY, "no outcome within 120s")
    assert saga.status is SagaStatus.COMPENSATING  # the release never answered
    assert saga.fail_observed(NOW, "no outcome within 120s of unwinding its saga")
    assert saga.status is SagaStatus.FAILED
    assert saga.steps[Step.INVENTORY].status is StepStatus.COMPENSATION_FAILED
    assert saga.steps[Step.PAYMENT].status is StepStatus.COMPLETED  # its refund never began
    assert saga.failure_reason == (
        "no outcome within 120s; no outcome within 120s of unwinding its saga"
    )
    assert saga.deadline is None
    assert see(saga, T.INVENTORY_RELEASED) == [Observation.STALE], "over: nothing moves it"
    assert not saga.fail_observed(NOW, "again"), "an ended saga stays as it ended"


def test_an_undo_seen_before_the_unwind_that_started_it_is_kept_until_the_unwind() -> None:
    """The order service unwinds a saga stuck at inventory: the release's outcome, and
    the refund's, can reach the observer before its shipping.cancel does."""
    saga = observed()
    see(saga, T.PAYMENT_PROCESSED)
    assert see(saga, T.INVENTORY_RELEASED, T.PAYMENT_REFUNDED) == [Observation.KEPT] * 2
    assert saga.status is SagaStatus.RUNNING
    assert see(saga, T.INVENTORY_RELEASED) == [Observation.STALE], "kept once"
    stored = saga.steps[Step.INVENTORY].to_dict()  # kept with the saga's row
    assert stored["early_undo"]["type"] == "inventory.released"
    assert StepState.from_dict(stored) == saga.steps[Step.INVENTORY]
    assert "early_undo" not in saga.steps[Step.SHIPPING].to_dict(), "none kept: no key"
    assert saga.unwind_observed(NOW, POLICY, "no outcome within 120s")
    assert saga.steps[Step.INVENTORY].status is StepStatus.COMPENSATED
    assert saga.steps[Step.PAYMENT].status is StepStatus.COMPENSATED
    assert saga.status is SagaStatus.CANCELLED
    assert all(s.early_undo is None for s in saga.steps.values())
    assert see(saga, T.INVENTORY_FAILED) == [Observation.STALE], "the late reservation refused"
