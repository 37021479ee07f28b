"""The order saga as a pure state machine: no database, broker or web framework.

`Saga.start()` and `Saga.handle(reply)` change the saga and return what must be sent
next. The handler persists the saga and emits those messages in one transaction.

Forward steps run in order: payment, inventory, shipping, notification. When a critical
step fails, the steps that had succeeded are compensated in reverse order. Notification
is not critical: its failure is recorded and the saga completes anyway. A compensation
that keeps failing is retried with backoff; once its attempts are used up the remaining
compensations still run, and the saga ends `failed` for a human to look at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from shared_domain.contracts import MessageType as T
from shared_domain.contracts import NotificationKind


class SagaStatus(StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


TERMINAL = frozenset({SagaStatus.COMPLETED, SagaStatus.CANCELLED, SagaStatus.FAILED})


class StepStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


class Step(StrEnum):
    PAYMENT = "payment"
    INVENTORY = "inventory"
    SHIPPING = "shipping"
    NOTIFICATION = "notification"


SAGA = "saga"  # history entries about the saga as a whole, not one step

FORWARD: tuple[Step, ...] = (Step.PAYMENT, Step.INVENTORY, Step.SHIPPING, Step.NOTIFICATION)
CRITICAL: frozenset[Step] = frozenset({Step.PAYMENT, Step.INVENTORY, Step.SHIPPING})

COMMAND = {
    Step.PAYMENT: T.PAYMENT_PROCESS,
    Step.INVENTORY: T.INVENTORY_RESERVE,
    Step.SHIPPING: T.SHIPPING_CREATE,
    Step.NOTIFICATION: T.NOTIFICATION_SEND,
}
COMPENSATION = {
    Step.PAYMENT: T.PAYMENT_REFUND,
    Step.INVENTORY: T.INVENTORY_RELEASE,
    Step.SHIPPING: T.SHIPPING_CANCEL,
}


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


REPLIES: dict[T, tuple[Step, Outcome]] = {
    T.PAYMENT_PROCESSED: (Step.PAYMENT, Outcome.SUCCEEDED),
    T.PAYMENT_FAILED: (Step.PAYMENT, Outcome.FAILED),
    T.PAYMENT_REFUNDED: (Step.PAYMENT, Outcome.COMPENSATED),
    T.PAYMENT_REFUND_FAILED: (Step.PAYMENT, Outcome.COMPENSATION_FAILED),
    T.INVENTORY_RESERVED: (Step.INVENTORY, Outcome.SUCCEEDED),
    T.INVENTORY_FAILED: (Step.INVENTORY, Outcome.FAILED),
    T.INVENTORY_RELEASED: (Step.INVENTORY, Outcome.COMPENSATED),
    T.INVENTORY_RELEASE_FAILED: (Step.INVENTORY, Outcome.COMPENSATION_FAILED),
    T.SHIPPING_CREATED: (Step.SHIPPING, Outcome.SUCCEEDED),
    T.SHIPPING_FAILED: (Step.SHIPPING, Outcome.FAILED),
    T.SHIPPING_CANCELLED: (Step.SHIPPING, Outcome.COMPENSATED),
    T.SHIPPING_CANCEL_FAILED: (Step.SHIPPING, Outcome.COMPENSATION_FAILED),
    T.NOTIFICATION_SENT: (Step.NOTIFICATION, Outcome.SUCCEEDED),
    T.NOTIFICATION_FAILED: (Step.NOTIFICATION, Outcome.FAILED),
}


@dataclass
class StepState:
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    compensation_attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "attempts": self.attempts,
            "compensation_attempts": self.compensation_attempts,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StepState:
        return cls(
            status=StepStatus(raw["status"]),
            attempts=raw.get("attempts", 0),
            compensation_attempts=raw.get("compensation_attempts", 0),
            started_at=_dt(raw.get("started_at")),
            finished_at=_dt(raw.get("finished_at")),
            error=raw.get("error"),
        )


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Outgoing:
    """A message the saga wants sent: a command to a service or an order event."""

    type: T
    payload: dict[str, Any]
    delay: float = 0.0


@dataclass(frozen=True)
class Transition:
    """One line of the saga's history."""

    step: str
    status: str
    message_type: str
    detail: str | None = None


@dataclass(frozen=True)
class CompensationPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


@dataclass
class Saga:
    id: UUID
    order_id: UUID
    order: dict[str, Any]  # the order.created payload: customer, items, total, address
    status: SagaStatus = SagaStatus.RUNNING
    steps: dict[Step, StepState] = field(default_factory=lambda: {s: StepState() for s in FORWARD})
    failure_reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0
    history: list[Transition] = field(default_factory=list)

    # ------------------------------------------------------------------ queries

    @property
    def current_step(self) -> Step | None:
        for name in reversed(FORWARD):
            if self.steps[name].status in (StepStatus.IN_PROGRESS, StepStatus.COMPENSATING):
                return name
        return None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    # ------------------------------------------------------------------ commands

    def start(self, now: datetime) -> list[Outgoing]:
        self.created_at = self.updated_at = now
        self._log(SAGA, "started", T.ORDER_CREATED.value)
        return [Outgoing(T.ORDER_PROCESSING, {}), *self._begin(Step.PAYMENT, now)]

    def handle(
        self, reply: T, payload: dict[str, Any], now: datetime, policy: CompensationPolicy
    ) -> list[Outgoing] | None:
        """Apply a reply. Returns the messages to send, or None when the reply does not
        fit the saga's state (a duplicate or a late, out-of-order reply): ignored."""
        step, outcome = REPLIES[reply]
        state = self.steps[step]
        reason = str(payload.get("reason") or reply.value)

        if outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
            if state.status is not StepStatus.IN_PROGRESS:
                return None
            if step is Step.NOTIFICATION:
                return self._notification_done(outcome, reason, reply, now)
            if self.status is not SagaStatus.RUNNING:
                return None
            if outcome is Outcome.SUCCEEDED:
                self._finish(step, StepStatus.COMPLETED, reply, now)
                return self._begin(FORWARD[FORWARD.index(step) + 1], now)
            self._finish(step, StepStatus.FAILED, reply, now, error=reason)
            self.failure_reason = f"{step.value} failed: {reason}"
            return self._compensate_next(now)

        if (
            state.status is not StepStatus.COMPENSATING
            or self.status is not SagaStatus.COMPENSATING
        ):
            return None
        if outcome is Outcome.COMPENSATED:
            self._finish(step, StepStatus.COMPENSATED, reply, now)
            return self._compensate_next(now)
        # compensation failed: retry with backoff until the attempts are used up
        state.error = reason
        if state.compensation_attempts < policy.max_attempts:
            state.compensation_attempts += 1
            delay = policy.delay(state.compensation_attempts - 1)
            self._log(
                step,
                "compensation retry",
                reply.value,
                f"attempt {state.compensation_attempts} in {delay:.1f}s: {reason}",
            )
            self.updated_at = now
            return [Outgoing(COMPENSATION[step], self._compensation_payload(), delay)]
        # Given up on this one: record it, and still undo what can be undone before it.
        self._finish(step, StepStatus.COMPENSATION_FAILED, reply, now, error=reason)
        self.failure_reason = (
            f"{self.failure_reason}; compensation of {step.value} failed after "
            f"{state.compensation_attempts} attempts: {reason}"
        )
        return self._compensate_next(now)

    # ------------------------------------------------------------------ internals

    def _begin(self, step: Step, now: datetime) -> list[Outgoing]:
        state = self.steps[step]
        state.status = StepStatus.IN_PROGRESS
        state.attempts += 1
        state.started_at = now
        self.updated_at = now
        self._log(step, StepStatus.IN_PROGRESS.value, COMMAND[step].value)
        return [Outgoing(COMMAND[step], self._command_payload(step))]

    def _finish(
        self, step: Step, status: StepStatus, reply: T, now: datetime, error: str | None = None
    ) -> None:
        state = self.steps[step]
        state.status = status
        state.finished_at = now
        state.error = error
        self.updated_at = now
        self._log(step, status.value, reply.value, error)

    def _notification_done(
        self, outcome: Outcome, reason: str, reply: T, now: datetime
    ) -> list[Outgoing]:
        failed = outcome is Outcome.FAILED
        self._finish(
            Step.NOTIFICATION,
            StepStatus.FAILED if failed else StepStatus.COMPLETED,
            reply,
            now,
            error=reason if failed else None,
        )
        if self.status is not SagaStatus.RUNNING:
            return []  # the order_cancelled notice of an already-cancelled saga
        self.status = SagaStatus.COMPLETED
        self._log(SAGA, SagaStatus.COMPLETED.value, reply.value)
        return [Outgoing(T.ORDER_COMPLETED, {"notification_failed": failed})]

    def _compensate_next(self, now: datetime) -> list[Outgoing]:
        self.status = SagaStatus.COMPENSATING
        for step in reversed(FORWARD):
            state = self.steps[step]
            if step in CRITICAL and state.status is StepStatus.COMPLETED:
                state.status = StepStatus.COMPENSATING
                state.compensation_attempts = 1
                self.updated_at = now
                self._log(step, StepStatus.COMPENSATING.value, COMPENSATION[step].value)
                return [Outgoing(COMPENSATION[step], self._compensation_payload())]
        if any(s.status is StepStatus.COMPENSATION_FAILED for s in self.steps.values()):
            return self._fail(now)
        return self._cancel(now)

    def _fail(self, now: datetime) -> list[Outgoing]:
        """A compensation could not be done: the saga stops here for a human to look at."""
        self.status = SagaStatus.FAILED
        self.updated_at = now
        self._log(SAGA, SagaStatus.FAILED.value, T.ORDER_FAILED.value, self.failure_reason)
        return [Outgoing(T.ORDER_FAILED, {"reason": self.failure_reason})]

    def _cancel(self, now: datetime) -> list[Outgoing]:
        self.status = SagaStatus.CANCELLED
        self.updated_at = now
        reason = self.failure_reason or "cancelled"
        self._log(SAGA, SagaStatus.CANCELLED.value, T.ORDER_CANCELLED.value, reason)
        notice = self.steps[Step.NOTIFICATION]
        notice.status = StepStatus.IN_PROGRESS
        notice.attempts += 1
        notice.started_at = now
        self._log(
            Step.NOTIFICATION,
            StepStatus.IN_PROGRESS.value,
            T.NOTIFICATION_SEND.value,
            NotificationKind.ORDER_CANCELLED.value,
        )
        return [
            Outgoing(T.ORDER_CANCELLED, {"reason": reason}),
            Outgoing(
                T.NOTIFICATION_SEND,
                self._notification_payload(NotificationKind.ORDER_CANCELLED, reason),
            ),
        ]

    def _command_payload(self, step: Step) -> dict[str, Any]:
        o = self.order
        if step is Step.PAYMENT:
            return {"customer_id": o["customer_id"], "amount": o["total_amount"]}
        if step is Step.INVENTORY:
            return {"items": o["items"]}
        if step is Step.SHIPPING:
            return {"items": o["items"], "shipping_address": o["shipping_address"]}
        return self._notification_payload(NotificationKind.ORDER_CONFIRMATION, None)

    def _notification_payload(self, kind: NotificationKind, reason: str | None) -> dict[str, Any]:
        return {"kind": kind.value, "customer_id": self.order["customer_id"], "reason": reason}

    def _compensation_payload(self) -> dict[str, Any]:
        return {"reason": self.failure_reason or "saga compensation"}

    def _log(self, step: str, status: str, message_type: str, detail: str | None = None) -> None:
        self.history.append(Transition(str(step), status, message_type, detail))
