from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from saga_orchestrator.domain import (
    Outgoing,
    Saga,
    SagaPolicy,
    SagaStatus,
    Step,
    StepState,
    StepStatus,
)
from shared_domain.backoff import Backoff
from shared_domain.contracts import PAYLOADS, Address, ItemLine, OrderCreated
from shared_domain.contracts import MessageType as T


def policy_of(max_attempts: int, base_delay: float, max_delay: float) -> SagaPolicy:
    """A policy without jitter, so delays are exact."""
    return SagaPolicy(
        compensation_max_attempts=max_attempts,
        compensation_backoff=Backoff(base_delay, max_delay, jitter=0.0),
    )


NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
POLICY = policy_of(3, 0.5, 30.0)

CUSTOMER = uuid4()
ORDER = OrderCreated(
    customer_id=CUSTOMER,
    items=[
        ItemLine(product_id=uuid4(), quantity=2, price=Decimal("10.00")),
        ItemLine(product_id=uuid4(), quantity=1, price=Decimal("5.50")),
    ],
    total_amount=Decimal("25.50"),
    shipping_address=Address(
        street="1 Main St", city="Springfield", state="IL", zip_code="62701", country="US"
    ),
).model_dump(mode="json")


def types(out: list[Outgoing] | None) -> list[T]:
    assert out is not None
    return [o.type for o in out]


def send(
    saga: Saga,
    reply: T,
    payload: dict[str, Any] | None = None,
    now: datetime = NOW,
    policy: SagaPolicy = POLICY,
) -> list[Outgoing] | None:
    return saga.handle(reply, payload or {}, now, policy)


def advance(saga: Saga, *replies: T) -> Saga:
    for reply in replies:
        assert send(saga, reply) is not None, reply
    return saga


def at_payment() -> Saga:
    saga = Saga(id=uuid4(), order_id=uuid4(), order=copy.deepcopy(ORDER))
    saga.start(NOW, POLICY)
    return saga


def at_inventory() -> Saga:
    return advance(at_payment(), T.PAYMENT_PROCESSED)


def at_shipping() -> Saga:
    return advance(at_inventory(), T.INVENTORY_RESERVED)


def at_notification() -> Saga:
    return advance(at_shipping(), T.SHIPPING_CREATED)


def completed() -> Saga:
    return advance(at_notification(), T.NOTIFICATION_SENT)


def cancelled_after_payment_failure() -> Saga:
    return advance(at_payment(), T.PAYMENT_FAILED)


def refunding_after_inventory_failure() -> Saga:
    return advance(at_inventory(), T.INVENTORY_FAILED)


def releasing_after_shipping_failure() -> Saga:
    return advance(at_shipping(), T.SHIPPING_FAILED)


def failed_compensation() -> Saga:
    saga = refunding_after_inventory_failure()
    for _ in range(POLICY.compensation_max_attempts):
        send(saga, T.PAYMENT_REFUND_FAILED)
    assert saga.status is SagaStatus.FAILED
    return saga


def statuses(saga: Saga) -> dict[Step, StepStatus]:
    return {step: state.status for step, state in saga.steps.items()}


def test_start_marks_order_processing_and_requests_payment() -> None:
    saga = Saga(id=uuid4(), order_id=uuid4(), order=ORDER)

    out = saga.start(NOW, POLICY)

    assert out == [
        Outgoing(T.ORDER_PROCESSING, {}),
        Outgoing(T.PAYMENT_PROCESS, {"customer_id": str(CUSTOMER), "amount": "25.50"}),
    ]
    assert saga.status is SagaStatus.RUNNING
    assert saga.created_at == saga.updated_at == NOW
    payment = saga.steps[Step.PAYMENT]
    assert (payment.status, payment.attempts, payment.started_at) == (
        StepStatus.IN_PROGRESS,
        1,
        NOW,
    )
    assert all(saga.steps[s].status is StepStatus.PENDING for s in list(Step)[1:])
    assert [(h.step, h.status, h.message_type) for h in saga.history] == [
        ("saga", "started", "order.created"),
        ("payment", "in_progress", "payment.process"),
    ]


@pytest.mark.parametrize(
    ("setup", "reply", "done", "following", "command"),
    [
        (at_payment, T.PAYMENT_PROCESSED, Step.PAYMENT, Step.INVENTORY, T.INVENTORY_RESERVE),
        (at_inventory, T.INVENTORY_RESERVED, Step.INVENTORY, Step.SHIPPING, T.SHIPPING_CREATE),
        (at_shipping, T.SHIPPING_CREATED, Step.SHIPPING, Step.NOTIFICATION, T.NOTIFICATION_SEND),
    ],
)
def test_forward_success_starts_the_next_step(
    setup: Callable[[], Saga], reply: T, done: Step, following: Step, command: T
) -> None:
    saga = setup()

    out = send(saga, reply, now=LATER)

    assert types(out) == [command]
    assert saga.status is SagaStatus.RUNNING
    assert saga.steps[done].status is StepStatus.COMPLETED
    assert saga.steps[done].finished_at == LATER
    assert saga.steps[done].error is None
    assert saga.steps[following].status is StepStatus.IN_PROGRESS
    assert saga.steps[following].attempts == 1
    assert saga.steps[following].started_at == LATER
    assert saga.updated_at == LATER
    assert saga.current_step is following
    assert [(h.step, h.status, h.message_type) for h in saga.history[-2:]] == [
        (done.value, "completed", reply.value),
        (following.value, "in_progress", command.value),
    ]


def test_command_payloads_carry_the_order_data() -> None:
    saga = Saga(id=uuid4(), order_id=uuid4(), order=ORDER)
    sent = {o.type: o.payload for o in saga.start(NOW, POLICY)}
    for reply in (T.PAYMENT_PROCESSED, T.INVENTORY_RESERVED, T.SHIPPING_CREATED):
        sent.update({o.type: o.payload for o in send(saga, reply) or []})

    assert sent[T.PAYMENT_PROCESS] == {"customer_id": str(CUSTOMER), "amount": "25.50"}
    assert sent[T.INVENTORY_RESERVE] == {"items": ORDER["items"], "customer_id": str(CUSTOMER)}
    assert sent[T.SHIPPING_CREATE] == {
        "items": ORDER["items"],
        "shipping_address": ORDER["shipping_address"],
        "customer_id": str(CUSTOMER),
    }
    assert sent[T.NOTIFICATION_SEND] == {
        "kind": "order_confirmation",
        "customer_id": str(CUSTOMER),
        "reason": None,
    }


def test_notification_sent_completes_the_saga() -> None:
    saga = at_notification()

    out = send(saga, T.NOTIFICATION_SENT, now=LATER)

    assert out == [Outgoing(T.ORDER_COMPLETED, {"notification_failed": False})]
    assert saga.status is SagaStatus.COMPLETED
    assert saga.is_terminal
    assert saga.current_step is None
    assert set(statuses(saga).values()) == {StepStatus.COMPLETED}
    assert saga.steps[Step.NOTIFICATION].finished_at == LATER
    assert saga.history[-1].status == "completed"


def test_notification_failure_still_completes_the_saga() -> None:
    saga = at_notification()

    out = send(saga, T.NOTIFICATION_FAILED, {"reason": "smtp down"})

    assert out == [Outgoing(T.ORDER_COMPLETED, {"notification_failed": True})]
    assert saga.status is SagaStatus.COMPLETED
    assert saga.failure_reason is None
    notification = saga.steps[Step.NOTIFICATION]
    assert (notification.status, notification.error) == (StepStatus.FAILED, "smtp down")
    assert all(saga.steps[s].status is StepStatus.COMPLETED for s in list(Step)[:3])


def test_payment_failure_cancels_with_nothing_to_undo() -> None:
    saga = at_payment()

    out = send(saga, T.PAYMENT_FAILED, {"reason": "card_declined"})

    reason = "payment failed: card_declined"
    assert out == [
        Outgoing(T.ORDER_CANCELLED, {"reason": reason}),
        Outgoing(
            T.NOTIFICATION_SEND,
            {"kind": "order_cancelled", "customer_id": str(CUSTOMER), "reason": reason},
        ),
    ]
    assert saga.status is SagaStatus.CANCELLED
    assert saga.is_terminal
    assert saga.failure_reason == reason
    assert statuses(saga) == {
        Step.PAYMENT: StepStatus.FAILED,
        Step.INVENTORY: StepStatus.PENDING,
        Step.SHIPPING: StepStatus.PENDING,
        Step.NOTIFICATION: StepStatus.IN_PROGRESS,
    }
    assert saga.steps[Step.PAYMENT].error == "card_declined"
    assert saga.steps[Step.NOTIFICATION].attempts == 1


def test_failure_without_reason_uses_the_reply_type() -> None:
    saga = at_payment()

    send(saga, T.PAYMENT_FAILED)

    assert saga.failure_reason == "payment failed: payment.failed"
    assert saga.steps[Step.PAYMENT].error == "payment.failed"


def test_inventory_failure_refunds_the_payment_then_cancels() -> None:
    saga = at_inventory()

    out = send(saga, T.INVENTORY_FAILED, {"reason": "insufficient_stock"})

    reason = "inventory failed: insufficient_stock"
    assert out == [Outgoing(T.PAYMENT_REFUND, {"reason": reason})]
    assert saga.status is SagaStatus.COMPENSATING
    assert not saga.is_terminal
    assert saga.current_step is Step.PAYMENT
    assert saga.steps[Step.PAYMENT].status is StepStatus.COMPENSATING
    assert saga.steps[Step.PAYMENT].compensation_attempts == 1
    assert saga.steps[Step.INVENTORY].status is StepStatus.FAILED

    out = send(saga, T.PAYMENT_REFUNDED, {"amount": "25.50"})

    assert types(out) == [T.ORDER_CANCELLED, T.NOTIFICATION_SEND]
    assert out is not None and out[0].payload == {"reason": reason}
    assert saga.status is SagaStatus.CANCELLED
    assert saga.steps[Step.PAYMENT].status is StepStatus.COMPENSATED
    assert saga.steps[Step.SHIPPING].status is StepStatus.PENDING


def test_shipping_failure_releases_inventory_before_refunding() -> None:
    saga = at_shipping()
    sent: list[T] = []

    sent += types(send(saga, T.SHIPPING_FAILED, {"reason": "no carrier"}))
    assert saga.current_step is Step.INVENTORY
    assert saga.steps[Step.PAYMENT].status is StepStatus.COMPLETED
    sent += types(send(saga, T.INVENTORY_RELEASED))
    assert saga.current_step is Step.PAYMENT
    assert saga.steps[Step.PAYMENT].compensation_attempts == 1
    sent += types(send(saga, T.PAYMENT_REFUNDED))

    assert sent == [T.INVENTORY_RELEASE, T.PAYMENT_REFUND, T.ORDER_CANCELLED, T.NOTIFICATION_SEND]
    assert T.SHIPPING_CANCEL not in sent
    assert saga.status is SagaStatus.CANCELLED
    assert saga.failure_reason == "shipping failed: no carrier"
    assert statuses(saga) == {
        Step.PAYMENT: StepStatus.COMPENSATED,
        Step.INVENTORY: StepStatus.COMPENSATED,
        Step.SHIPPING: StepStatus.FAILED,
        Step.NOTIFICATION: StepStatus.IN_PROGRESS,
    }


@pytest.mark.parametrize("max_attempts", [1, 3, 5])
def test_failing_compensation_is_retried_with_growing_delay_then_fails(
    max_attempts: int,
) -> None:
    policy = policy_of(max_attempts, 0.5, 30.0)
    saga = refunding_after_inventory_failure()
    retries: list[Outgoing] = []

    out = send(saga, T.PAYMENT_REFUND_FAILED, {"reason": "provider down"}, policy=policy)
    while out and out[0].type is T.PAYMENT_REFUND:
        assert saga.status is SagaStatus.COMPENSATING
        retries += out
        out = send(saga, T.PAYMENT_REFUND_FAILED, {"reason": "provider down"}, policy=policy)

    assert len(retries) + 1 == max_attempts
    assert [r.delay for r in retries] == [0.5 * 2**i for i in range(max_attempts - 1)]
    assert all(r.payload == {"reason": "inventory failed: inventory.failed"} for r in retries)
    assert saga.status is SagaStatus.FAILED
    assert saga.is_terminal
    assert saga.current_step is None
    payment = saga.steps[Step.PAYMENT]
    assert payment.status is StepStatus.COMPENSATION_FAILED
    assert payment.compensation_attempts == max_attempts
    assert payment.error == "provider down"
    assert saga.failure_reason == (
        "inventory failed: inventory.failed; compensation of payment failed after "
        f"{max_attempts} attempt(s): provider down"
    )
    assert out == [Outgoing(T.ORDER_FAILED, {"reason": saga.failure_reason})]


def test_compensation_retry_delay_is_capped() -> None:
    policy = policy_of(5, 0.5, 0.75)
    saga = refunding_after_inventory_failure()

    delays = [
        o.delay
        for _ in range(4)
        for o in send(saga, T.PAYMENT_REFUND_FAILED, policy=policy) or []
        if o.type is T.PAYMENT_REFUND
    ]

    assert delays == [0.5, 0.75, 0.75, 0.75]


def test_compensation_retry_is_recorded_in_history() -> None:
    saga = refunding_after_inventory_failure()

    send(saga, T.PAYMENT_REFUND_FAILED, {"reason": "timeout"})

    last = saga.history[-1]
    assert (last.step, last.status, last.message_type) == (
        "payment",
        "compensation retry",
        "payment.refund_failed",
    )
    assert last.detail == "attempt 2 in 0.5s: timeout"


def test_retried_compensation_that_succeeds_moves_on() -> None:
    saga = releasing_after_shipping_failure()

    retry = send(saga, T.INVENTORY_RELEASE_FAILED, {"reason": "db busy"})
    assert retry is not None
    assert [(o.type, o.delay) for o in retry] == [(T.INVENTORY_RELEASE, 0.5)]
    assert saga.steps[Step.INVENTORY].error == "db busy"
    out = send(saga, T.INVENTORY_RELEASED)

    assert out is not None
    assert [(o.type, o.delay) for o in out] == [(T.PAYMENT_REFUND, 0.0)]
    assert saga.steps[Step.INVENTORY].status is StepStatus.COMPENSATED
    assert saga.steps[Step.INVENTORY].error is None
    assert saga.status is SagaStatus.COMPENSATING


def test_policy_delay_doubles_up_to_the_maximum() -> None:
    policy = policy_of(9, 1.0, 5.0)

    assert [policy.compensation_delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


@pytest.mark.parametrize(
    ("setup", "reply"),
    [
        (at_payment, T.PAYMENT_PROCESSED),
        (at_payment, T.PAYMENT_FAILED),
        (at_inventory, T.INVENTORY_RESERVED),
        (at_inventory, T.INVENTORY_FAILED),
        (at_shipping, T.SHIPPING_CREATED),
        (at_shipping, T.SHIPPING_FAILED),
        (at_notification, T.NOTIFICATION_SENT),
        (at_notification, T.NOTIFICATION_FAILED),
        (refunding_after_inventory_failure, T.PAYMENT_REFUNDED),
        (releasing_after_shipping_failure, T.INVENTORY_RELEASED),
        (cancelled_after_payment_failure, T.NOTIFICATION_SENT),
    ],
)
def test_duplicate_reply_is_ignored(setup: Callable[[], Saga], reply: T) -> None:
    saga = setup()
    assert send(saga, reply) is not None
    before = copy.deepcopy(saga)

    assert send(saga, reply, now=LATER) is None
    assert saga == before


@pytest.mark.parametrize(
    ("setup", "reply"),
    [
        (at_payment, T.SHIPPING_CREATED),
        (at_payment, T.INVENTORY_RESERVED),
        (at_payment, T.NOTIFICATION_SENT),
        (at_payment, T.PAYMENT_REFUNDED),
        (at_inventory, T.PAYMENT_REFUNDED),
        (at_inventory, T.PAYMENT_REFUND_FAILED),
        (at_inventory, T.INVENTORY_RELEASED),
        (at_notification, T.SHIPPING_CANCELLED),
        (cancelled_after_payment_failure, T.INVENTORY_RESERVED),
        (cancelled_after_payment_failure, T.PAYMENT_PROCESSED),
        (refunding_after_inventory_failure, T.INVENTORY_RESERVED),
        (refunding_after_inventory_failure, T.SHIPPING_CREATED),
        (releasing_after_shipping_failure, T.PAYMENT_REFUNDED),
        (releasing_after_shipping_failure, T.SHIPPING_CANCELLED),
        (completed, T.PAYMENT_REFUNDED),
        (completed, T.SHIPPING_FAILED),
        (failed_compensation, T.PAYMENT_REFUNDED),
        (failed_compensation, T.PAYMENT_REFUND_FAILED),
    ],
)
def test_out_of_order_reply_is_ignored(setup: Callable[[], Saga], reply: T) -> None:
    saga = setup()
    before = copy.deepcopy(saga)

    assert send(saga, reply, now=LATER) is None
    assert saga == before


@pytest.mark.parametrize(
    ("reply", "step_status"),
    [(T.NOTIFICATION_SENT, StepStatus.COMPLETED), (T.NOTIFICATION_FAILED, StepStatus.FAILED)],
)
def test_cancellation_notice_reply_is_recorded_but_emits_nothing(
    reply: T, step_status: StepStatus
) -> None:
    saga = cancelled_after_payment_failure()
    reason = saga.failure_reason

    out = send(saga, reply, {"reason": "smtp down"}, now=LATER)

    assert out == []
    assert saga.status is SagaStatus.CANCELLED
    assert saga.failure_reason == reason
    assert saga.current_step is None
    notification = saga.steps[Step.NOTIFICATION]
    assert (notification.status, notification.finished_at) == (step_status, LATER)
    assert (saga.history[-1].step, saga.history[-1].status) == ("notification", step_status.value)


def test_happy_path_history() -> None:
    saga = completed()

    assert [(h.step, h.status, h.message_type) for h in saga.history] == [
        ("saga", "started", "order.created"),
        ("payment", "in_progress", "payment.process"),
        ("payment", "completed", "payment.processed"),
        ("inventory", "in_progress", "inventory.reserve"),
        ("inventory", "completed", "inventory.reserved"),
        ("shipping", "in_progress", "shipping.create"),
        ("shipping", "completed", "shipping.created"),
        ("notification", "in_progress", "notification.send"),
        ("notification", "completed", "notification.sent"),
        ("saga", "completed", "notification.sent"),
    ]


def test_compensation_history() -> None:
    saga = releasing_after_shipping_failure()
    advance(saga, T.INVENTORY_RELEASED, T.PAYMENT_REFUNDED)

    assert [(h.step, h.status, h.message_type, h.detail) for h in saga.history[6:]] == [
        ("shipping", "failed", "shipping.failed", "shipping.failed"),
        ("inventory", "compensating", "inventory.release", None),
        ("inventory", "compensated", "inventory.released", None),
        ("payment", "compensating", "payment.refund", None),
        ("payment", "compensated", "payment.refunded", None),
        ("saga", "cancelled", "order.cancelled", "shipping failed: shipping.failed"),
        ("notification", "in_progress", "notification.send", "order_cancelled"),
    ]


def test_a_compensation_given_up_on_does_not_stop_the_ones_before_it() -> None:
    policy = policy_of(2, 0.5, 30.0)
    saga = releasing_after_shipping_failure()

    retry = send(saga, T.INVENTORY_RELEASE_FAILED, {"reason": "db down"}, policy=policy)
    assert retry is not None and types(retry) == [T.INVENTORY_RELEASE]
    refund = send(saga, T.INVENTORY_RELEASE_FAILED, {"reason": "db down"}, policy=policy)

    assert refund is not None and types(refund) == [T.PAYMENT_REFUND]
    assert saga.status is SagaStatus.COMPENSATING
    assert saga.steps[Step.INVENTORY].status is StepStatus.COMPENSATION_FAILED

    out = send(saga, T.PAYMENT_REFUNDED, policy=policy)

    assert out == [Outgoing(T.ORDER_FAILED, {"reason": saga.failure_reason})]
    assert saga.status is SagaStatus.FAILED
    assert saga.steps[Step.PAYMENT].status is StepStatus.COMPENSATED
    assert saga.failure_reason is not None
    assert "compensation of inventory failed after 2 attempt(s): db down" in saga.failure_reason
    assert (saga.history[-1].step, saga.history[-1].status) == ("saga", "failed")


@pytest.mark.parametrize(
    ("setup", "step", "terminal"),
    [
        (at_payment, Step.PAYMENT, False),
        (at_inventory, Step.INVENTORY, False),
        (at_shipping, Step.SHIPPING, False),
        (at_notification, Step.NOTIFICATION, False),
        (refunding_after_inventory_failure, Step.PAYMENT, False),
        (releasing_after_shipping_failure, Step.INVENTORY, False),
        (cancelled_after_payment_failure, Step.NOTIFICATION, True),
        (completed, None, True),
        (failed_compensation, None, True),
    ],
)
def test_current_step_and_terminal(
    setup: Callable[[], Saga], step: Step | None, terminal: bool
) -> None:
    saga = setup()

    assert saga.current_step is step
    assert saga.is_terminal is terminal


@pytest.mark.parametrize(
    "replies",
    [
        [T.PAYMENT_PROCESSED, T.INVENTORY_RESERVED, T.SHIPPING_CREATED, T.NOTIFICATION_SENT],
        [T.PAYMENT_PROCESSED, T.INVENTORY_RESERVED, T.SHIPPING_CREATED, T.NOTIFICATION_FAILED],
        [T.PAYMENT_FAILED, T.NOTIFICATION_SENT],
        [T.PAYMENT_PROCESSED, T.INVENTORY_FAILED, T.PAYMENT_REFUND_FAILED, T.PAYMENT_REFUNDED],
        [T.PAYMENT_PROCESSED, T.INVENTORY_RESERVED, T.SHIPPING_FAILED, T.INVENTORY_RELEASED],
        [T.PAYMENT_PROCESSED, T.INVENTORY_FAILED, *[T.PAYMENT_REFUND_FAILED] * 3],
    ],
)
def test_outgoing_payloads_fit_their_contracts(replies: list[T]) -> None:
    saga = Saga(id=uuid4(), order_id=uuid4(), order=ORDER)
    sent = saga.start(NOW, POLICY)
    for reply in replies:
        out = send(saga, reply, {"reason": "boom"})
        assert out is not None, reply
        sent += out

    assert len(sent) > len(replies)
    for message in sent:
        PAYLOADS[message.type].model_validate(message.payload)


def test_step_state_round_trip() -> None:
    state = StepState(
        status=StepStatus.COMPENSATING,
        attempts=2,
        started_at=NOW,
        finished_at=LATER,
        error="boom",
        compensation_attempts=3,
    )

    raw = json.loads(json.dumps(state.to_dict()))

    assert raw["status"] == "compensating"
    assert raw["started_at"] == NOW.isoformat()
    assert StepState.from_dict(raw) == state


def test_step_state_defaults_round_trip() -> None:
    assert StepState.from_dict(StepState().to_dict()) == StepState()
    assert StepState.from_dict({"status": "failed"}) == StepState(status=StepStatus.FAILED)
