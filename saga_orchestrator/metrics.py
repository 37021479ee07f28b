"""The saga's own Prometheus metrics. Counters and histograms are read off the
transitions a unit of work gives a saga and counted when it commits, so a rolled-back
batch counts nothing and a replayed one counts once. The active sagas are read from the
database when scraped: right whatever replica started them, and after a restart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram

from saga_orchestrator import views
from saga_orchestrator.domain import (
    CRITICAL,
    FORWARD,
    SAGA,
    HistoryStatus,
    Saga,
    SagaStatus,
    Step,
)
from saga_orchestrator.settings import Settings
from shared_domain.metrics import LATENCY_BUCKETS, Reading
from shared_domain.runtime import Runtime

INSTANCES = Counter(
    "saga_instances_total",
    "Sagas started (event=started) and sagas ending, by how they ended "
    "(event=completed, cancelled or failed; a saga an operator retried may end again).",
    ["event"],
)
ACTIVE = Gauge(
    "saga_instances_active",
    "Sagas not yet terminal, by status (running or compensating), read from the database.",
    ["status"],
)
STREAM_SUBSCRIBERS = Gauge(
    "saga_stream_subscribers",
    "Clients of this process's live saga stream (GET /api/v1/sagas/stream and one saga's).",
)
STEP_DURATION = Histogram(
    "saga_step_duration_seconds",
    "From a step's command being sent to its reply being handled (or the saga giving up "
    "on it), by step and the status the step reached: completed, failed, compensated, "
    "compensation_failed or abandoned.",
    ["step", "outcome"],
    buckets=LATENCY_BUCKETS,
)
COMPENSATIONS = Counter(
    "saga_compensation_total", "Compensations begun (each undo sent), by step.", ["step"]
)
FAILURES = Counter(
    "saga_failures_total",
    "What went wrong, by reason: <step>_failed, <step>_timed_out, "
    "<step>_compensation_failed, compensation_forced (a notification failure is counted "
    "too, though its saga completes).",
    ["reason"],
)
DURATION = Histogram(
    "saga_duration_seconds",
    "From a saga's start to its end, by outcome (completed, cancelled or failed).",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)
RESENDS = Counter(
    "saga_step_resends_total",
    "Commands sent again (same message id) for want of a reply, or at an operator's retry, "
    "by step.",
    ["step"],
)
DEADLINES = Counter(
    "saga_step_deadlines_passed_total",
    "Deadlines a step's command passed without a reply (each one re-sends it, waits on "
    "messages still queued, or gives the step up), by step.",
    ["step"],
)

_ENDED = {
    HistoryStatus.COMPLETED: SagaStatus.COMPLETED,
    HistoryStatus.CANCELLED: SagaStatus.CANCELLED,
    HistoryStatus.FAILED: SagaStatus.FAILED,
}


def _start_at_zero() -> None:
    """Every series a dashboard or an alert asks for exists from the start, at 0: a
    counter first seen at 1 would hide its first increase from rate()."""
    for event in ("started", *(status.value for status in _ENDED.values())):
        INSTANCES.labels(event)
    for step in FORWARD:
        RESENDS.labels(step.value)
        DEADLINES.labels(step.value)
        FAILURES.labels(f"{step.value}_failed")
        FAILURES.labels(f"{step.value}_timed_out")
    for step in (s for s in FORWARD if s in CRITICAL):
        COMPENSATIONS.labels(step.value)
        FAILURES.labels(f"{step.value}_compensation_failed")
    FAILURES.labels("compensation_forced")
    # The latency panels take rate() of the buckets: a bucket first seen already filled
    # (every saga of a burst done between two scrapes) would show no latency at all.
    for step in FORWARD:
        for outcome in _STEP_OUTCOMES:
            STEP_DURATION.labels(step.value, outcome.value)
    for status in _ENDED.values():
        DURATION.labels(status.value)


_STEP_OUTCOMES = frozenset(
    {
        HistoryStatus.COMPLETED,
        HistoryStatus.FAILED,
        HistoryStatus.COMPENSATED,
        HistoryStatus.COMPENSATION_FAILED,
        HistoryStatus.ABANDONED,
    }
)
_TIMEOUT = "timeout"  # the cause a transition records when a deadline made it


def tally(saga: Saga, now: datetime, *, deadline_passed: bool = False) -> Callable[[], None]:
    """What the saga's new transitions (those not saved yet) count, to be counted when
    their unit of work commits (`uow.on_commit`). `deadline_passed`: the deadline watcher
    made them (the first one names the step)."""
    counts: list[tuple[Counter, str]] = []
    timings: list[tuple[Histogram, tuple[str, ...], float]] = []
    transitions = list(saga.history)
    if deadline_passed and transitions:
        counts.append((DEADLINES, transitions[0].step))
    for t in transitions:
        if t.step == SAGA:
            if t.status is HistoryStatus.STARTED:
                counts.append((INSTANCES, "started"))
            elif t.status in _ENDED:
                outcome = _ENDED[t.status].value
                counts.append((INSTANCES, outcome))
                if saga.created_at is not None:
                    timings.append((DURATION, (outcome,), _since(saga.created_at, now)))
            elif t.status is HistoryStatus.COMPENSATION_FORCED:
                counts.append((FAILURES, "compensation_forced"))
        elif t.status is HistoryStatus.RESENT:
            counts.append((RESENDS, t.step))
        elif t.status is HistoryStatus.COMPENSATING:
            counts.append((COMPENSATIONS, t.step))
        elif t.status in _STEP_OUTCOMES:
            state = saga.steps[Step(t.step)]
            sent = state.sent_at or state.started_at
            if sent is not None:
                timings.append((STEP_DURATION, (t.step, t.status.value), _since(sent, now)))
            reason = _failure_reason(t.step, t.status, t.message_type)
            if reason is not None:
                counts.append((FAILURES, reason))
    return lambda: _apply(counts, timings)


def _since(then: datetime, now: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


def _failure_reason(step: str, status: HistoryStatus, cause: str) -> str | None:
    if status is HistoryStatus.FAILED:
        return f"{step}_timed_out" if cause == _TIMEOUT else f"{step}_failed"
    if status is HistoryStatus.ABANDONED and cause == _TIMEOUT:
        return f"{step}_timed_out"  # abandoned by an operator: compensation_forced says so
    if status is HistoryStatus.COMPENSATION_FAILED:
        return f"{step}_compensation_failed"
    return None


def _apply(
    counts: list[tuple[Counter, str]], timings: list[tuple[Histogram, tuple[str, ...], float]]
) -> None:
    for counter, label in counts:
        counter.labels(label).inc()
    for histogram, labels, seconds in timings:
        histogram.labels(*labels).observe(seconds)


_NOT_TERMINAL = [SagaStatus.RUNNING.value, SagaStatus.COMPENSATING.value]


def readings(rt: Runtime[Settings]) -> dict[str, Reading]:
    async def active() -> None:
        counts = await views.count_by_status(rt.engine, _NOT_TERMINAL)
        for status in _NOT_TERMINAL:
            ACTIVE.labels(status).set(counts.get(status, 0))

    return {"active_sagas": active}


_start_at_zero()
