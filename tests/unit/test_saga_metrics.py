"""What each saga transition counts in the orchestrator's metrics (saga_orchestrator.metrics),
read back from prometheus-client's registry as differences."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from saga_orchestrator import metrics
from saga_orchestrator.domain import Saga, SagaStatus
from shared_domain.contracts import MessageType as T
from tests.unit.test_saga_timeouts import NOW, POLICY, expire, later, reply, started

NAMES = (
    "saga_instances_total",
    "saga_step_duration_seconds_count",
    "saga_step_duration_seconds_sum",
    "saga_compensation_total",
    "saga_failures_total",
    "saga_duration_seconds_count",
    "saga_duration_seconds_sum",
    "saga_step_resends_total",
    "saga_step_deadlines_passed_total",
)


def snapshot() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name in NAMES
    }


class Counted:
    """What the code under test added to the saga metrics."""

    def __init__(self) -> None:
        self.before = snapshot()

    def changes(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        after = snapshot()
        return {
            key: round(value - self.before.get(key, 0.0), 6)
            for key, value in after.items()
            if value != self.before.get(key, 0.0)
        }

    def of(self, name: str, **labels: str) -> float:
        return self.changes().get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def counted() -> Iterator[Counted]:
    yield Counted()


def count(saga: Saga, seconds: float, *, deadline_passed: bool = False) -> None:
    """What the handler does: tally the new transitions, 'commit', forget them."""
    metrics.tally(saga, later(seconds), deadline_passed=deadline_passed)()
    saga.history.clear()


def run(*replies: T) -> Saga:
    """A saga started at 0 s that gets reply n at n seconds, each counted as it commits."""
    saga = started()
    count(saga, 0)
    for i, message in enumerate(replies, start=1):
        reply(saga, message, later(i))
        count(saga, i)
    return saga


def test_a_completed_saga_counts_its_start_each_step_and_its_end(counted: Counted) -> None:
    saga = run(T.PAYMENT_PROCESSED, T.INVENTORY_RESERVED, T.SHIPPING_CREATED, T.NOTIFICATION_SENT)
    assert saga.status is SagaStatus.COMPLETED
    changes = counted.changes()
    assert changes.pop(("saga_instances_total", (("event", "started"),))) == 1
    assert changes.pop(("saga_instances_total", (("event", "completed"),))) == 1
    assert changes.pop(("saga_duration_seconds_count", (("outcome", "completed"),))) == 1
    assert changes.pop(("saga_duration_seconds_sum", (("outcome", "completed"),))) == 4
    for step in ("payment", "inventory", "shipping", "notification"):
        key = (("outcome", "completed"), ("step", step))
        assert changes.pop(("saga_step_duration_seconds_count", key)) == 1
        # each step's command went out as the one before it replied: one second each
        assert changes.pop(("saga_step_duration_seconds_sum", key)) == 1
    assert changes == {}


def test_a_shortage_counts_the_failure_the_compensation_and_the_cancellation(
    counted: Counted,
) -> None:
    saga = run(T.PAYMENT_PROCESSED, T.INVENTORY_FAILED, T.PAYMENT_REFUNDED, T.NOTIFICATION_SENT)
    assert saga.status is SagaStatus.CANCELLED
    assert counted.of("saga_failures_total", reason="inventory_failed") == 1
    assert counted.of("saga_compensation_total", step="payment") == 1
    assert counted.of("saga_instances_total", event="cancelled") == 1
    assert counted.of("saga_duration_seconds_count", outcome="cancelled") == 1
    # cancelled when the refund came back (3 s), not when the notice was sent
    assert counted.of("saga_duration_seconds_sum", outcome="cancelled") == 3
    assert (
        counted.of("saga_step_duration_seconds_count", step="payment", outcome="compensated") == 1
    )
    # the refund was sent at 2 s and answered at 3 s
    assert counted.of("saga_step_duration_seconds_sum", step="payment", outcome="compensated") == 1
    assert counted.of("saga_step_duration_seconds_count", step="inventory", outcome="failed") == 1
    assert (
        counted.of("saga_step_duration_seconds_count", step="notification", outcome="completed")
        == 1
    )


def test_deadlines_resends_and_a_step_given_up_are_counted_by_step(counted: Counted) -> None:
    saga = started()
    count(saga, 0)
    for _ in range(3):  # two re-sends, then the third deadline gives the step up
        expire(saga)
        assert saga.updated_at is not None
        count(saga, (saga.updated_at - NOW).total_seconds(), deadline_passed=True)
    assert counted.of("saga_step_deadlines_passed_total", step="payment") == 3
    assert counted.of("saga_step_resends_total", step="payment") == 2
    assert counted.of("saga_failures_total", reason="payment_timed_out") == 1
    assert counted.of("saga_step_duration_seconds_count", step="payment", outcome="abandoned") == 1
    assert counted.of("saga_compensation_total", step="payment") == 1


def test_a_forced_compensation_is_its_own_reason(counted: Counted) -> None:
    saga = started()
    count(saga, 0)
    saga.force_compensation(later(1), POLICY, "operator says so")
    count(saga, 1)
    assert counted.of("saga_failures_total", reason="compensation_forced") == 1
    assert counted.of("saga_failures_total", reason="payment_timed_out") == 0
    assert counted.of("saga_step_duration_seconds_count", step="payment", outcome="abandoned") == 1


def test_a_compensation_that_keeps_failing_counts_once_given_up(counted: Counted) -> None:
    saga = started()
    count(saga, 0)
    reply(saga, T.PAYMENT_PROCESSED, later(1))
    reply(saga, T.INVENTORY_FAILED, later(2))
    count(saga, 2)
    for attempt in range(POLICY.compensation_max_attempts):
        reply(saga, T.PAYMENT_REFUND_FAILED, later(3 + attempt))
        count(saga, 3 + attempt)
    assert saga.status is SagaStatus.FAILED
    assert counted.of("saga_failures_total", reason="payment_compensation_failed") == 1
    assert counted.of("saga_instances_total", event="failed") == 1
    assert (
        counted.of(
            "saga_step_duration_seconds_count", step="payment", outcome="compensation_failed"
        )
        == 1
    )


def test_nothing_is_counted_until_the_tally_is_applied(counted: Counted) -> None:
    saga = started()
    tally = metrics.tally(saga, NOW + timedelta(seconds=1))
    assert counted.changes() == {}  # a unit of work that rolls back never calls it
    tally()
    assert counted.of("saga_instances_total", event="started") == 1
