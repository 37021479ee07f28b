"""Step deadlines, re-sends and the operator actions (retry, forced compensation)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from uuid import uuid4

import pytest

from saga_orchestrator.domain import (
    FORWARD,
    Outgoing,
    Saga,
    SagaConflict,
    SagaPolicy,
    SagaStatus,
    Step,
    StepState,
    StepStatus,
    StepTimeout,
)
from saga_orchestrator.settings import Settings
from shared_domain.backoff import Backoff
from shared_domain.contracts import MessageType as T
from tests.unit.test_saga_state_machine import NOW, ORDER, types

TIMEOUT = 10.0
POLICY = SagaPolicy(
    compensation_max_attempts=2,
    compensation_backoff=Backoff(0.5, 30.0, jitter=0.0),
    timeouts={step: StepTimeout(TIMEOUT, max_attempts=3) for step in FORWARD},
    resend_max_wait=25.0,
    rand=lambda: 0.0,  # no jitter: waits are exact
)


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def started() -> Saga:
    saga = Saga(id=uuid4(), order_id=uuid4(), order=copy.deepcopy(ORDER))
    saga.start(NOW, POLICY)
    return saga


def reply(saga: Saga, message: T, at: datetime = NOW) -> list[Outgoing]:
    out = saga.handle(message, {}, at, POLICY)
    assert out is not None, message
    return out


def expire(saga: Saga) -> list[Outgoing]:
    """Jump to the saga's deadline and let it fire."""
    deadline = saga.deadline
    assert deadline is not None
    return saga.on_timeout(deadline, POLICY)


def give_up(saga: Saga, step: Step) -> list[Outgoing]:
    """Let every send of the step's command time out; returns what the last one sent."""
    out: list[Outgoing] = []
    waiting = saga.steps[step].status
    while saga.steps[step].status is waiting:
        out = expire(saga)
    return out


def test_every_command_gets_an_id_and_a_deadline() -> None:
    saga = started()
    payment = saga.steps[Step.PAYMENT]

    assert payment.command_id is not None
    assert payment.sends == 1
    assert payment.deadline == later(TIMEOUT)
    assert saga.deadline == later(TIMEOUT)


def test_nothing_fires_before_the_deadline() -> None:
    saga = started()

    assert saga.on_timeout(later(TIMEOUT - 0.001), POLICY) == []
    assert saga.steps[Step.PAYMENT].sends == 1


def test_a_timed_out_command_is_resent_with_the_same_id_and_a_longer_wait() -> None:
    saga = started()
    first_id = saga.steps[Step.PAYMENT].command_id

    out = saga.on_timeout(later(TIMEOUT), POLICY)

    assert types(out) == [T.PAYMENT_PROCESS]
    assert out[0].message_id == first_id
    assert out[0].attempt == 2
    assert out[0].payload == {"customer_id": ORDER["customer_id"], "amount": "25.50"}
    assert saga.steps[Step.PAYMENT].deadline == later(TIMEOUT + 2 * TIMEOUT)
    third = saga.on_timeout(later(3 * TIMEOUT), POLICY)
    assert third[0].message_id == first_id and third[0].attempt == 3
    # 4 * TIMEOUT would be 40 s: capped at resend_max_wait
    assert saga.steps[Step.PAYMENT].deadline == later(3 * TIMEOUT + 25.0)
    assert saga.history[-1].status == "resent"


def test_while_messages_are_queued_on_its_way_an_attempt_passes_without_a_copy() -> None:
    saga = started()
    queued = {Step.PAYMENT: 40, Step.INVENTORY: 0}

    assert saga.on_timeout(later(TIMEOUT), POLICY, queued) == []
    assert saga.steps[Step.PAYMENT].sends == 2
    assert saga.steps[Step.PAYMENT].deadline == later(TIMEOUT + 2 * TIMEOUT)
    assert saga.history[-1].status == "overdue"
    assert "40 message(s) queued" in (saga.history[-1].detail or "")
    # the queue has drained: the last attempt sends the copy
    out = saga.on_timeout(later(3 * TIMEOUT), POLICY, {Step.PAYMENT: 0})
    assert types(out) == [T.PAYMENT_PROCESS] and out[0].attempt == 3
    # and the step gives up after the same time as without the queue
    out = saga.on_timeout(later(3 * TIMEOUT + 25.0), POLICY, queued)
    assert types(out) == [T.PAYMENT_REFUND]  # given up: undo a charge that went through late
    assert saga.status is SagaStatus.COMPENSATING


def test_resend_waits_are_jittered_but_never_shorter_than_three_quarters() -> None:
    low = SagaPolicy(timeouts={s: StepTimeout(8.0) for s in FORWARD}, rand=lambda: 1.0)
    high = SagaPolicy(timeouts={s: StepTimeout(8.0) for s in FORWARD}, rand=lambda: 0.0)

    assert low.wait(Step.PAYMENT, 1) == high.wait(Step.PAYMENT, 1) == 8.0
    assert (low.wait(Step.PAYMENT, 2), high.wait(Step.PAYMENT, 2)) == (12.0, 16.0)


def test_a_reply_after_a_resend_moves_on_as_usual() -> None:
    saga = started()
    saga.on_timeout(later(TIMEOUT), POLICY)

    out = reply(saga, T.PAYMENT_PROCESSED, later(TIMEOUT + 1))

    assert types(out) == [T.INVENTORY_RESERVE]
    assert saga.steps[Step.PAYMENT].deadline is None
    assert saga.deadline == later(TIMEOUT + 1 + TIMEOUT)


def test_payment_given_up_is_refunded_in_case_it_ran() -> None:
    saga = started()

    out = give_up(saga, Step.PAYMENT)

    assert types(out) == [T.PAYMENT_REFUND]
    assert saga.status is SagaStatus.COMPENSATING
    assert saga.steps[Step.PAYMENT].status is StepStatus.COMPENSATING
    assert saga.failure_reason == (
        "payment timed out: no reply to payment.process after 3 attempt(s)"
    )
    assert any(h.status == StepStatus.ABANDONED.value for h in saga.history)
    # the late reply to the abandoned command is ignored
    assert saga.handle(T.PAYMENT_PROCESSED, {}, NOW, POLICY) is None
    out = reply(saga, T.PAYMENT_REFUNDED)
    assert types(out) == [T.ORDER_CANCELLED, T.NOTIFICATION_SEND]
    assert saga.status is SagaStatus.CANCELLED


def test_inventory_given_up_releases_it_then_refunds_the_payment() -> None:
    saga = started()
    reply(saga, T.PAYMENT_PROCESSED)

    assert types(give_up(saga, Step.INVENTORY)) == [T.INVENTORY_RELEASE]
    assert types(reply(saga, T.INVENTORY_RELEASED)) == [T.PAYMENT_REFUND]
    assert types(reply(saga, T.PAYMENT_REFUNDED)) == [T.ORDER_CANCELLED, T.NOTIFICATION_SEND]
    assert saga.steps[Step.INVENTORY].status is StepStatus.COMPENSATED


def test_notification_given_up_still_completes_the_order() -> None:
    saga = started()
    for message in (T.PAYMENT_PROCESSED, T.INVENTORY_RESERVED, T.SHIPPING_CREATED):
        reply(saga, message)

    out = give_up(saga, Step.NOTIFICATION)

    assert out == [Outgoing(T.ORDER_COMPLETED, {"notification_failed": True})]
    assert saga.status is SagaStatus.COMPLETED
    assert saga.deadline is None


def test_cancellation_notice_given_up_leaves_the_saga_cancelled() -> None:
    saga = started()
    reply(saga, T.PAYMENT_FAILED)
    notice_id = saga.steps[Step.NOTIFICATION].command_id

    resent = expire(saga)
    assert types(resent) == [T.NOTIFICATION_SEND]
    assert resent[0].message_id == notice_id
    assert resent[0].payload["kind"] == "order_cancelled"

    assert give_up(saga, Step.NOTIFICATION) == []
    assert saga.status is SagaStatus.CANCELLED
    assert saga.steps[Step.NOTIFICATION].status is StepStatus.FAILED


def test_a_silent_compensation_is_resent_then_given_up() -> None:
    saga = started()
    reply(saga, T.PAYMENT_PROCESSED)
    refund = reply(saga, T.INVENTORY_FAILED)[0]

    resent = expire(saga)
    assert types(resent) == [T.PAYMENT_REFUND]
    assert resent[0].message_id == refund.message_id

    out = give_up(saga, Step.PAYMENT)

    assert types(out) == [T.ORDER_FAILED]
    assert saga.status is SagaStatus.FAILED
    assert saga.steps[Step.PAYMENT].status is StepStatus.COMPENSATION_FAILED


def test_a_failed_compensation_retried_gets_a_new_command_id() -> None:
    saga = started()
    reply(saga, T.PAYMENT_PROCESSED)
    first = reply(saga, T.INVENTORY_FAILED)[0]

    retry = reply(saga, T.PAYMENT_REFUND_FAILED)[0]

    assert retry.message_id != first.message_id
    assert retry.delay == 0.5
    # the deadline counts from when the delayed message goes out
    assert saga.steps[Step.PAYMENT].deadline == later(0.5 + TIMEOUT)


# ---------------------------------------------------------------- operator: retry


def failed_saga() -> Saga:
    saga = started()
    reply(saga, T.PAYMENT_PROCESSED)
    reply(saga, T.INVENTORY_FAILED)
    while saga.status is SagaStatus.COMPENSATING:
        reply(saga, T.PAYMENT_REFUND_FAILED)
    assert saga.status is SagaStatus.FAILED
    return saga


def test_retry_of_a_failed_saga_runs_the_failed_compensation_again() -> None:
    saga = failed_saga()

    out = saga.retry(later(60), POLICY)

    assert types(out) == [T.PAYMENT_REFUND]
    assert saga.status is SagaStatus.COMPENSATING
    assert saga.steps[Step.PAYMENT].compensation_attempts == 1
    assert types(reply(saga, T.PAYMENT_REFUNDED)) == [T.ORDER_CANCELLED, T.NOTIFICATION_SEND]
    assert saga.status is SagaStatus.CANCELLED
    assert saga.steps[Step.PAYMENT].status is StepStatus.COMPENSATED


def test_retry_of_a_stuck_saga_resends_the_command_in_flight() -> None:
    saga = started()
    reply(saga, T.PAYMENT_PROCESSED)
    expire(saga)
    expire(saga)  # two sends of inventory.reserve so far
    command_id = saga.steps[Step.INVENTORY].command_id

    out = saga.retry(later(100), POLICY)

    assert types(out) == [T.INVENTORY_RESERVE]
    assert out[0].message_id == command_id
    assert saga.steps[Step.INVENTORY].sends == 1  # a fresh set of attempts
    assert saga.deadline == later(100 + TIMEOUT)


@pytest.mark.parametrize("finished", ["completed", "cancelled"])
def test_retry_refuses_a_finished_saga(finished: str) -> None:
    saga = started()
    if finished == "completed":
        for message in (
            T.PAYMENT_PROCESSED,
            T.INVENTORY_RESERVED,
            T.SHIPPING_CREATED,
            T.NOTIFICATION_SENT,
        ):
            reply(saga, message)
    else:
        reply(saga, T.PAYMENT_FAILED)

    with pytest.raises(SagaConflict, match=f"saga is {finished}"):
        saga.retry(NOW, POLICY)


# ---------------------------------------------------------------- operator: compensate


def test_forced_compensation_undoes_the_step_in_flight_and_those_before_it() -> None:
    saga = started()
    reply(saga, T.PAYMENT_PROCESSED)

    out = saga.force_compensation(NOW, POLICY, "customer called")

    assert types(out) == [T.INVENTORY_RELEASE]
    assert saga.failure_reason == "compensation forced: customer called"
    assert types(reply(saga, T.INVENTORY_RELEASED)) == [T.PAYMENT_REFUND]
    assert types(reply(saga, T.PAYMENT_REFUNDED)) == [T.ORDER_CANCELLED, T.NOTIFICATION_SEND]
    assert saga.status is SagaStatus.CANCELLED


def test_forced_compensation_while_notifying_undoes_every_critical_step() -> None:
    saga = started()
    for message in (T.PAYMENT_PROCESSED, T.INVENTORY_RESERVED, T.SHIPPING_CREATED):
        reply(saga, message)

    out = saga.force_compensation(NOW, POLICY, "fraud")

    assert types(out) == [T.SHIPPING_CANCEL]
    assert saga.steps[Step.NOTIFICATION].status is StepStatus.ABANDONED


def test_forced_compensation_refuses_a_compensating_saga() -> None:
    saga = started()
    reply(saga, T.PAYMENT_PROCESSED)
    reply(saga, T.INVENTORY_FAILED)

    with pytest.raises(SagaConflict, match="use retry"):
        saga.force_compensation(NOW, POLICY, "again")


def test_forced_compensation_refuses_a_failed_saga() -> None:
    with pytest.raises(SagaConflict, match="saga is failed"):
        failed_saga().force_compensation(NOW, POLICY, "again")


# ---------------------------------------------------------------- persistence, settings


def test_step_state_round_trips_its_command_and_deadline() -> None:
    saga = started()
    state = saga.steps[Step.PAYMENT]

    again = StepState.from_dict(state.to_dict())

    assert again == state


def test_settings_build_the_policy_with_per_step_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHIPPING_STEP_TIMEOUT", "2.5")
    monkeypatch.setenv("STEP_MAX_ATTEMPTS", "4")
    monkeypatch.setenv("PAYMENT_STEP_MAX_ATTEMPTS", "2")

    policy = Settings().saga_policy()

    assert policy.timeouts[Step.SHIPPING] == StepTimeout(2.5, 4)
    assert policy.timeouts[Step.PAYMENT] == StepTimeout(10.0, 2)
    assert policy.timeouts[Step.NOTIFICATION].seconds == 30.0


@pytest.mark.parametrize(
    ("name", "value"),
    [("PAYMENT_STEP_TIMEOUT", "0"), ("STEP_MAX_ATTEMPTS", "0"), ("ADMIN_API_KEY", "short")],
)
def test_settings_refuse_bad_timeouts_and_weak_admin_keys(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ValueError, match=name):
        Settings()


def test_admin_key_unset_or_empty_disables_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().admin_api_key is None
    monkeypatch.setenv("ADMIN_API_KEY", "")
    assert Settings().admin_api_key is None
