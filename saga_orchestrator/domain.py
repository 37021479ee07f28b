"""The order saga as a pure state machine: no database, broker or web framework.

`Saga.start()` and `Saga.handle(reply)` change the saga and return what must be sent
next. The handler persists the saga and emits those messages in one transaction.

Forward steps run in order: payment, inventory, shipping, notification. When a critical
step fails, the steps that had succeeded are compensated in reverse order. Notification
is not critical: its failure is recorded and the saga completes anyway. A compensation
that keeps failing is retried with backoff; once its attempts are used up the remaining
compensations still run, and the saga ends `failed` for a human to look at.

Every command sent carries a deadline. A command with no reply by then is re-sent with
the same message id (the services answer a repeated command with the outcome they
recorded), waiting longer each time. When a step's attempts are used up it is
`abandoned`: the saga stops waiting for it and compensates it along with the steps
before it, because the command may still have run. The services accept an undo before
the command it undoes and then refuse that late command.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from shared_domain.backoff import Backoff
from shared_domain.contracts import MessageType, NotificationKind


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
    # The saga stopped waiting for the reply (timed out, or compensation was forced): the
    # command may still have run, so the step is compensated like a completed one.
    ABANDONED = "abandoned"
    # A failed compensation an operator asked to retry.
    COMPENSATION_PENDING = "compensation_pending"


ACTIVE = frozenset({StepStatus.IN_PROGRESS, StepStatus.COMPENSATING})
TO_UNDO = frozenset({StepStatus.COMPLETED, StepStatus.ABANDONED, StepStatus.COMPENSATION_PENDING})
UNDONE = frozenset({StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED})


class Observation(StrEnum):
    """What an observed event did to a saga (choreography: the observer only watches)."""

    APPLIED = "applied"
    STALE = "stale"  # a repeat, or too late to matter: ignored
    EARLY = "early"  # it comes after an event not seen yet: wait for that one
    KEPT = "kept"  # an undo's outcome before the saga undoes the step: kept until it does


class SagaConflict(Exception):
    """The saga's state does not allow the operation asked for."""


class Step(StrEnum):
    PAYMENT = "payment"
    INVENTORY = "inventory"
    SHIPPING = "shipping"
    NOTIFICATION = "notification"


SAGA = "saga"  # history entries about the saga as a whole, not one step


class HistoryStatus(StrEnum):
    """What one line of a saga's history records: a step entering a status, an attempt
    of its command, or a change of the saga as a whole (step `saga`)."""

    # a step entering one of its statuses (the values of StepStatus)
    IN_PROGRESS = StepStatus.IN_PROGRESS.value
    COMPLETED = StepStatus.COMPLETED.value
    FAILED = StepStatus.FAILED.value
    COMPENSATING = StepStatus.COMPENSATING.value
    COMPENSATED = StepStatus.COMPENSATED.value
    COMPENSATION_FAILED = StepStatus.COMPENSATION_FAILED.value
    ABANDONED = StepStatus.ABANDONED.value
    # another attempt of the step's command in flight
    RESENT = "resent"
    OVERDUE = "overdue"  # its deadline passed while messages were queued on its way
    COMPENSATION_RETRY = "compensation retry"
    # the saga as a whole (COMPLETED and FAILED above serve it too)
    STARTED = "started"
    CANCELLED = SagaStatus.CANCELLED.value
    RETRY = "retry"
    COMPENSATION_FORCED = "compensation forced"


# History statuses a step may record more than once: attempts, not outcomes.
REPEATABLE = frozenset(
    {HistoryStatus.RESENT, HistoryStatus.OVERDUE, HistoryStatus.COMPENSATION_RETRY}
)

FORWARD: tuple[Step, ...] = (Step.PAYMENT, Step.INVENTORY, Step.SHIPPING, Step.NOTIFICATION)
CRITICAL: frozenset[Step] = frozenset({Step.PAYMENT, Step.INVENTORY, Step.SHIPPING})

COMMAND = {
    Step.PAYMENT: MessageType.PAYMENT_PROCESS,
    Step.INVENTORY: MessageType.INVENTORY_RESERVE,
    Step.SHIPPING: MessageType.SHIPPING_CREATE,
    Step.NOTIFICATION: MessageType.NOTIFICATION_SEND,
}
COMPENSATION = {
    Step.PAYMENT: MessageType.PAYMENT_REFUND,
    Step.INVENTORY: MessageType.INVENTORY_RELEASE,
    Step.SHIPPING: MessageType.SHIPPING_CANCEL,
}


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


REPLIES: dict[MessageType, tuple[Step, Outcome]] = {
    MessageType.PAYMENT_PROCESSED: (Step.PAYMENT, Outcome.SUCCEEDED),
    MessageType.PAYMENT_FAILED: (Step.PAYMENT, Outcome.FAILED),
    MessageType.PAYMENT_REFUNDED: (Step.PAYMENT, Outcome.COMPENSATED),
    MessageType.PAYMENT_REFUND_FAILED: (Step.PAYMENT, Outcome.COMPENSATION_FAILED),
    MessageType.INVENTORY_RESERVED: (Step.INVENTORY, Outcome.SUCCEEDED),
    MessageType.INVENTORY_FAILED: (Step.INVENTORY, Outcome.FAILED),
    MessageType.INVENTORY_RELEASED: (Step.INVENTORY, Outcome.COMPENSATED),
    MessageType.INVENTORY_RELEASE_FAILED: (Step.INVENTORY, Outcome.COMPENSATION_FAILED),
    MessageType.SHIPPING_CREATED: (Step.SHIPPING, Outcome.SUCCEEDED),
    MessageType.SHIPPING_FAILED: (Step.SHIPPING, Outcome.FAILED),
    MessageType.SHIPPING_CANCELLED: (Step.SHIPPING, Outcome.COMPENSATED),
    MessageType.SHIPPING_CANCEL_FAILED: (Step.SHIPPING, Outcome.COMPENSATION_FAILED),
    MessageType.NOTIFICATION_SENT: (Step.NOTIFICATION, Outcome.SUCCEEDED),
    MessageType.NOTIFICATION_FAILED: (Step.NOTIFICATION, Outcome.FAILED),
}


@dataclass
class StepState:
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    compensation_attempts: int = 0
    # The command in flight: its id (re-sent unchanged), when it was first sent (a
    # scheduled one: when it is due), how often it was sent, and when the saga stops
    # waiting for its reply.
    command_id: UUID | None = None
    sent_at: datetime | None = None
    sends: int = 0
    deadline: datetime | None = None
    # Choreography: the outcome event of this step's undo ({"type", "payload"}), seen
    # before the saga undid the step: the undo of a saga the order service unwinds can
    # reach the observer before the unwind does. Applied once the saga undoes the step.
    early_undo: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        kept = {"early_undo": self.early_undo} if self.early_undo else {}
        return kept | {
            "status": self.status.value,
            "attempts": self.attempts,
            "compensation_attempts": self.compensation_attempts,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "error": self.error,
            "command_id": str(self.command_id) if self.command_id else None,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "sends": self.sends,
            "deadline": self.deadline.isoformat() if self.deadline else None,
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
            command_id=UUID(raw["command_id"]) if raw.get("command_id") else None,
            sent_at=_dt(raw.get("sent_at")),
            sends=raw.get("sends", 0),
            deadline=_dt(raw.get("deadline")),
            early_undo=raw.get("early_undo"),
        )


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Outgoing:
    """A message the saga wants sent: a command to a service (with its own id, kept
    across re-sends) or an order event (a fresh id)."""

    type: MessageType
    payload: dict[str, Any]
    delay: float = 0.0
    # Left out of equality: two messages with the same content are the same instruction.
    message_id: UUID | None = field(default=None, compare=False)
    attempt: int = 1


@dataclass(frozen=True)
class Transition:
    """One line of the saga's history."""

    step: str
    status: HistoryStatus
    message_type: str
    detail: str | None = None
    # The message the line is about (the reply received, the command sent) and what
    # caused that message, once known (see saga_orchestrator.messages.identify).
    message_id: UUID | None = None
    causation_id: UUID | None = None


@dataclass(frozen=True)
class StepTimeout:
    """How long to wait for a step's reply, and how many times to send its command."""

    seconds: float = 10.0
    max_attempts: int = 3


def _default_timeouts() -> dict[Step, StepTimeout]:
    return {step: StepTimeout() for step in FORWARD}


@dataclass(frozen=True)
class SagaPolicy:
    """Timeouts and retries of the saga, from the orchestrator's settings.

    Send n of a command waits `seconds` for n = 1, then `seconds * 2**(n-1)` (capped at
    `resend_max_wait`) less up to a quarter of jitter. A failed compensation is retried
    after `compensation_backoff.delay(attempt - 1)`.
    """

    compensation_max_attempts: int = 5
    compensation_backoff: Backoff = field(default_factory=lambda: Backoff(0.5, 30.0, 0.25))
    timeouts: Mapping[Step, StepTimeout] = field(default_factory=_default_timeouts)
    resend_max_wait: float = 120.0
    rand: Callable[[], float] = random.random

    def compensation_delay(self, attempt: int) -> float:
        return self.compensation_backoff.delay(attempt - 1, self.rand)

    def wait(self, step: Step, send: int) -> float:
        timeout = self.timeouts[step].seconds
        if send <= 1:
            return timeout
        return Backoff(timeout, max(timeout, self.resend_max_wait), jitter=0.25).delay(
            send - 1, self.rand
        )

    def max_sends(self, step: Step) -> int:
        return self.timeouts[step].max_attempts


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
    correlation_id: str = ""
    history: list[Transition] = field(default_factory=list)
    # The W3C trace context the saga's trace continues from (its order.created's): kept
    # with the saga for the deadline watcher and the operator's actions. Opaque here.
    trace: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ queries

    @property
    def current_step(self) -> Step | None:
        for name in reversed(FORWARD):
            if self.steps[name].status in ACTIVE:
                return name
        return None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def deadline(self) -> datetime | None:
        """When the saga next needs the timeout check: the earliest open deadline."""
        deadlines = [s.deadline for s in self.steps.values() if s.status in ACTIVE and s.deadline]
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------------------ commands

    def start(self, now: datetime, policy: SagaPolicy) -> list[Outgoing]:
        self.created_at = self.updated_at = now
        self._log(SAGA, HistoryStatus.STARTED, MessageType.ORDER_CREATED.value)
        return [Outgoing(MessageType.ORDER_PROCESSING, {}), self._begin(Step.PAYMENT, now, policy)]

    def handle(
        self, reply: MessageType, payload: dict[str, Any], now: datetime, policy: SagaPolicy
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
                return self._notification_done(outcome is Outcome.FAILED, reason, reply, now)
            if self.status is not SagaStatus.RUNNING:
                return None
            if outcome is Outcome.SUCCEEDED:
                self._finish(step, StepStatus.COMPLETED, reply, now)
                return [self._begin(FORWARD[FORWARD.index(step) + 1], now, policy)]
            self._finish(step, StepStatus.FAILED, reply, now, error=reason)
            self.failure_reason = f"{step.value} failed: {reason}"
            return self._compensate_next(now, policy)

        if (
            state.status is not StepStatus.COMPENSATING
            or self.status is not SagaStatus.COMPENSATING
        ):
            return None
        if outcome is Outcome.COMPENSATED:
            self._finish(step, StepStatus.COMPENSATED, reply, now)
            return self._compensate_next(now, policy)
        # compensation failed: retry with backoff until the attempts are used up
        state.error = reason
        if state.compensation_attempts < policy.compensation_max_attempts:
            state.compensation_attempts += 1
            delay = policy.compensation_delay(state.compensation_attempts - 1)
            self._log(
                step,
                HistoryStatus.COMPENSATION_RETRY,
                reply.value,
                f"attempt {state.compensation_attempts} in {delay:.1f}s: {reason}",
            )
            return [self._undo(step, now, policy, delay)]
        return self._give_up_compensation(step, reply.value, reason, now, policy)

    def observe(
        self, event: MessageType, payload: dict[str, Any], now: datetime, policy: SagaPolicy
    ) -> Observation:
        """Choreography: follow a service's event as if it answered the saga's command,
        but send nothing (each service acts on the event itself), keep no deadline and
        take a failed undo as final (the service retried it). The events of one saga
        may reach the observer out of order when one of them is retried: a forward
        step's event before the step began is `EARLY`; an undo's outcome before the
        saga undoes the step is `KEPT` on the step and applied when it does (an undo
        is final: it would answer the same again)."""
        step, outcome = REPLIES[event]
        state = self.steps[step]
        before = state.status
        observing = replace(policy, compensation_max_attempts=0)
        if self.handle(event, payload, now, observing) is None:
            if outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
                # A forward step not begun is early only while the saga runs: once it
                # is undone, such an event is a late action its service refused.
                early = self.status is SagaStatus.RUNNING and before is StepStatus.PENDING
                return Observation.EARLY if early else Observation.STALE
            if self.is_terminal or before in UNDONE or state.early_undo is not None:
                return Observation.STALE
            if before is StepStatus.PENDING and self.status is not SagaStatus.RUNNING:
                return Observation.STALE  # the tombstone of a step the undos came before
            state.early_undo = {"type": event.value, "payload": payload}
            self.updated_at = now
            return Observation.KEPT
        self._apply_early_undos(now, observing)
        self._forget_commands()
        return Observation.APPLIED

    def _apply_early_undos(self, now: datetime, policy: SagaPolicy) -> None:
        """The undo outcomes kept for steps the saga is now undoing, in its order."""
        while True:
            kept = next(
                (
                    s
                    for s in reversed(FORWARD)
                    if self.steps[s].status is StepStatus.COMPENSATING and self.steps[s].early_undo
                ),
                None,
            )
            if kept is None:
                return
            undo = self.steps[kept].early_undo or {}
            self.steps[kept].early_undo = None
            self.handle(MessageType(undo["type"]), undo["payload"], now, policy)

    def unwind_observed(self, now: datetime, policy: SagaPolicy, reason: str) -> bool:
        """Choreography: the order service unwinds the saga (no outcome in time), as an
        operator's forced compensation would; False if the saga is not running."""
        if self.status is not SagaStatus.RUNNING:
            return False
        self._abandon_and_undo(now, policy, reason, reason, by="order_service", cause="timeout")
        self._apply_early_undos(now, replace(policy, compensation_max_attempts=0))
        self._forget_commands()
        return True

    def fail_observed(self, now: datetime, reason: str) -> bool:
        """Choreography: the order service failed the order, with no outcome long after
        it unwound the saga. What was still awaited is given up on (an undo as failed, a
        step as abandoned) and the saga fails; False if it had ended already."""
        if self.is_terminal:
            return False
        for step in FORWARD:
            state = self.steps[step]
            if state.status is StepStatus.COMPENSATING:
                self._finish(step, StepStatus.COMPENSATION_FAILED, "order_service", now, reason)
            elif state.status is StepStatus.IN_PROGRESS:
                self._finish(step, StepStatus.ABANDONED, "order_service", now, reason)
        self.failure_reason = f"{self.failure_reason}; {reason}" if self.failure_reason else reason
        self._fail(now)
        self._forget_commands()
        return True

    def start_observed(self, now: datetime, policy: SagaPolicy) -> None:
        """Choreography: the saga begins as it would, but the observer sends nothing."""
        self.start(now, policy)
        self._forget_commands()

    def _forget_commands(self) -> None:
        """An observer sent no command: it has none in flight and no deadline to keep."""
        for state in self.steps.values():
            state.command_id = state.deadline = None

    def on_timeout(
        self, now: datetime, policy: SagaPolicy, queued: Mapping[Step, int] | None = None
    ) -> list[Outgoing]:
        """The deadline of the command in flight has passed: re-send it (same id), or,
        once its attempts are used up, stop waiting and move on. While messages are
        `queued` on the step's way (the command's queue, and the replies' queue), the
        command or its reply is most likely among them, late rather than lost: the
        attempt passes without a copy, so an overloaded system is not handed copies of
        work it already has (the step still gives up after the same time)."""
        step = next(
            (
                name
                for name in reversed(FORWARD)
                if self.steps[name].status in ACTIVE
                and (deadline := self.steps[name].deadline) is not None
                and deadline <= now
            ),
            None,
        )
        if step is None:
            return []
        state = self.steps[step]
        undoing = state.status is StepStatus.COMPENSATING
        command = COMPENSATION[step] if undoing else COMMAND[step]
        if state.sends < policy.max_sends(step):
            waiting = (queued or {}).get(step, 0)
            if waiting > 0:
                self._next_attempt(
                    step,
                    now,
                    policy,
                    HistoryStatus.OVERDUE,
                    f"{waiting} message(s) queued on its way, no copy sent",
                )
                return []
            return [self._resend(step, now, policy, "no reply in time")]
        reason = f"no reply to {command.value} after {state.sends} attempt(s)"
        if undoing:
            return self._give_up_compensation(step, "timeout", reason, now, policy)
        if step is Step.NOTIFICATION:
            return self._notification_done(True, reason, "timeout", now)
        self._finish(step, StepStatus.ABANDONED, "timeout", now, error=reason)
        self.failure_reason = f"{step.value} timed out: {reason}"
        return self._compensate_next(now, policy)

    def retry(self, now: datetime, policy: SagaPolicy) -> list[Outgoing]:
        """Operator: resume the saga from where it stopped. A failed saga re-runs the
        compensations that failed; a stuck one re-sends the command in flight."""
        if self.status is SagaStatus.FAILED:
            failed = [s for s in FORWARD if self.steps[s].status is StepStatus.COMPENSATION_FAILED]
            if not failed:
                raise SagaConflict("saga failed but no compensation failed; nothing to retry")
            for step in failed:
                self.steps[step].status = StepStatus.COMPENSATION_PENDING
            self.status = SagaStatus.COMPENSATING
            self._log(
                SAGA, HistoryStatus.RETRY, "admin", "retrying compensation of " + ", ".join(failed)
            )
            return self._compensate_next(now, policy)
        if self.is_terminal:
            raise SagaConflict(f"saga is {self.status.value}; there is nothing to retry")
        current = self.current_step
        if current is None:
            raise SagaConflict(f"saga is {self.status.value} but has no step in flight")
        self._log(SAGA, HistoryStatus.RETRY, "admin", f"re-sending the {current.value} step")
        return [self._resend(current, now, policy, "retry requested", restart=True)]

    def force_compensation(self, now: datetime, policy: SagaPolicy, reason: str) -> list[Outgoing]:
        """Operator: stop a running saga and undo what it did, including the step in
        flight (its command may still run)."""
        if self.status is not SagaStatus.RUNNING:
            hint = (
                "; use retry to re-send a stuck compensation"
                if (self.status is SagaStatus.COMPENSATING)
                else ""
            )
            raise SagaConflict(
                f"saga is {self.status.value}; only a running saga can be compensated{hint}"
            )
        return self._abandon_and_undo(
            now, policy, f"compensation forced: {reason}", reason, by="admin", cause="admin"
        )

    # ------------------------------------------------------------------ internals

    def _abandon_and_undo(
        self, now: datetime, policy: SagaPolicy, failure: str, reason: str, *, by: str, cause: str
    ) -> list[Outgoing]:
        """Stop the running saga (`by` says who) and undo what it did, including the step
        in flight: its command may still run."""
        self.failure_reason = failure
        self._log(SAGA, HistoryStatus.COMPENSATION_FORCED, by, reason)
        for step in FORWARD:
            if self.steps[step].status is StepStatus.IN_PROGRESS:
                self._finish(step, StepStatus.ABANDONED, cause, now, error=failure)
        return self._compensate_next(now, policy)

    def _dispatch(
        self,
        step: Step,
        command: MessageType,
        payload: dict[str, Any],
        now: datetime,
        policy: SagaPolicy,
        delay: float = 0.0,
    ) -> Outgoing:
        """Send a new command for the step and start waiting for its reply."""
        state = self.steps[step]
        state.command_id = uuid4()
        state.sent_at = now + timedelta(seconds=delay)
        state.sends = 1
        state.deadline = now + timedelta(seconds=delay + policy.wait(step, 1))
        self.updated_at = now
        return Outgoing(command, payload, delay, state.command_id)

    def _resend(
        self, step: Step, now: datetime, policy: SagaPolicy, why: str, restart: bool = False
    ) -> Outgoing:
        state = self.steps[step]
        command = self._next_attempt(step, now, policy, HistoryStatus.RESENT, why, restart)
        return Outgoing(
            command,
            self._payload_for(step, command),
            message_id=state.command_id,
            attempt=state.sends,
        )

    def _next_attempt(
        self,
        step: Step,
        now: datetime,
        policy: SagaPolicy,
        status: HistoryStatus,
        why: str,
        restart: bool = False,
    ) -> MessageType:
        """Count one more attempt of the step's command in flight and wait for it anew."""
        state = self.steps[step]
        command = COMPENSATION[step] if state.status is StepStatus.COMPENSATING else COMMAND[step]
        state.sends = 1 if restart else state.sends + 1
        state.deadline = now + timedelta(seconds=policy.wait(step, state.sends))
        self.updated_at = now
        self._log(
            step, status, command.value, f"{why}; attempt {state.sends} of {policy.max_sends(step)}"
        )
        return command

    def _begin(self, step: Step, now: datetime, policy: SagaPolicy) -> Outgoing:
        state = self.steps[step]
        state.status = StepStatus.IN_PROGRESS
        state.attempts += 1
        state.started_at = now
        self._log(step, HistoryStatus.IN_PROGRESS, COMMAND[step].value)
        return self._dispatch(step, COMMAND[step], self._command_payload(step), now, policy)

    def _undo(self, step: Step, now: datetime, policy: SagaPolicy, delay: float = 0.0) -> Outgoing:
        return self._dispatch(
            step, COMPENSATION[step], self._compensation_payload(), now, policy, delay
        )

    def _finish(
        self, step: Step, status: StepStatus, cause: str, now: datetime, error: str | None = None
    ) -> None:
        state = self.steps[step]
        state.status = status
        state.finished_at = now
        state.error = error
        state.deadline = None
        self.updated_at = now
        self._log(step, HistoryStatus(status.value), str(cause), error)

    def _give_up_compensation(
        self, step: Step, cause: str, reason: str, now: datetime, policy: SagaPolicy
    ) -> list[Outgoing]:
        """Record that this undo could not be done, and still undo what came before it."""
        state = self.steps[step]
        self._finish(step, StepStatus.COMPENSATION_FAILED, cause, now, error=reason)
        self.failure_reason = (
            f"{self.failure_reason}; compensation of {step.value} failed after "
            f"{state.compensation_attempts} attempt(s): {reason}"
        )
        return self._compensate_next(now, policy)

    def _notification_done(
        self, failed: bool, reason: str, cause: str, now: datetime
    ) -> list[Outgoing]:
        self._finish(
            Step.NOTIFICATION,
            StepStatus.FAILED if failed else StepStatus.COMPLETED,
            cause,
            now,
            error=reason if failed else None,
        )
        if self.status is not SagaStatus.RUNNING:
            return []  # the order_cancelled notice of an already-cancelled saga
        self.status = SagaStatus.COMPLETED
        self._log(SAGA, HistoryStatus.COMPLETED, str(cause))
        return [Outgoing(MessageType.ORDER_COMPLETED, {"notification_failed": failed})]

    def _compensate_next(self, now: datetime, policy: SagaPolicy) -> list[Outgoing]:
        self.status = SagaStatus.COMPENSATING
        for step in reversed(FORWARD):
            state = self.steps[step]
            if step in CRITICAL and state.status in TO_UNDO:
                state.status = StepStatus.COMPENSATING
                state.compensation_attempts = 1
                self._log(step, HistoryStatus.COMPENSATING, COMPENSATION[step].value)
                return [self._undo(step, now, policy)]
        if any(s.status is StepStatus.COMPENSATION_FAILED for s in self.steps.values()):
            return self._fail(now)
        return self._cancel(now, policy)

    def _fail(self, now: datetime) -> list[Outgoing]:
        """A compensation could not be done: the saga stops here for a human to look at."""
        self.status = SagaStatus.FAILED
        self.updated_at = now
        self._log(SAGA, HistoryStatus.FAILED, MessageType.ORDER_FAILED.value, self.failure_reason)
        return [Outgoing(MessageType.ORDER_FAILED, {"reason": self.failure_reason})]

    def _cancel(self, now: datetime, policy: SagaPolicy) -> list[Outgoing]:
        self.status = SagaStatus.CANCELLED
        self.updated_at = now
        reason = self.failure_reason or "cancelled"
        self._log(SAGA, HistoryStatus.CANCELLED, MessageType.ORDER_CANCELLED.value, reason)
        notice = self.steps[Step.NOTIFICATION]
        notice.status = StepStatus.IN_PROGRESS
        notice.attempts += 1
        notice.started_at = now
        self._log(
            Step.NOTIFICATION,
            HistoryStatus.IN_PROGRESS,
            MessageType.NOTIFICATION_SEND.value,
            NotificationKind.ORDER_CANCELLED.value,
        )
        return [
            Outgoing(MessageType.ORDER_CANCELLED, {"reason": reason}),
            self._dispatch(
                Step.NOTIFICATION,
                MessageType.NOTIFICATION_SEND,
                self._notification_payload(NotificationKind.ORDER_CANCELLED, reason),
                now,
                policy,
            ),
        ]

    def _payload_for(self, step: Step, command: MessageType) -> dict[str, Any]:
        """The payload of the command in flight, rebuilt identically for a re-send."""
        if command is COMPENSATION.get(step):
            return self._compensation_payload()
        if step is Step.NOTIFICATION and self.status is not SagaStatus.RUNNING:
            return self._notification_payload(
                NotificationKind.ORDER_CANCELLED, self.failure_reason or "cancelled"
            )
        return self._command_payload(step)

    def _command_payload(self, step: Step) -> dict[str, Any]:
        o = self.order
        if step is Step.PAYMENT:
            return {"customer_id": o["customer_id"], "amount": o["total_amount"]}
        if step is Step.INVENTORY:
            return {"items": o["items"], "customer_id": o["customer_id"]}
        if step is Step.SHIPPING:
            return {
                "items": o["items"],
                "shipping_address": o["shipping_address"],
                "customer_id": o["customer_id"],
            }
        return self._notification_payload(NotificationKind.ORDER_CONFIRMATION, None)

    def _notification_payload(self, kind: NotificationKind, reason: str | None) -> dict[str, Any]:
        return {"kind": kind.value, "customer_id": self.order["customer_id"], "reason": reason}

    def _compensation_payload(self) -> dict[str, Any]:
        return {"reason": self.failure_reason or "saga compensation"}

    def _log(
        self, step: str, status: HistoryStatus, message_type: str, detail: str | None = None
    ) -> None:
        self.history.append(Transition(str(step), status, message_type, detail))
