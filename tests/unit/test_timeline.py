"""The timeline a saga's history is drawn as: a step's command with its reply, the
undoing apart and in the order it ran, and what passed deadlines did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from saga_orchestrator.timeline import timeline

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def lines(*rows: tuple[str, str, str, str | None]) -> list[dict[str, Any]]:
    return [
        {
            "step": step,
            "status": status,
            "message_type": kind,
            "detail": detail,
            "at": T0 + timedelta(milliseconds=10 * i),
        }
        for i, (step, status, kind, detail) in enumerate(rows)
    ]


def test_a_failed_shipment_undoes_inventory_then_payment_as_entries_of_their_own() -> None:
    entries = timeline(
        lines(
            ("saga", "started", "order.created", None),
            ("payment", "in_progress", "payment.process", None),
            ("payment", "completed", "payment.processed", None),
            ("inventory", "in_progress", "inventory.reserve", None),
            ("inventory", "completed", "inventory.reserved", None),
            ("shipping", "in_progress", "shipping.create", None),
            ("shipping", "failed", "shipping.failed", "carrier_unavailable"),
            ("inventory", "compensating", "inventory.release", None),
            ("inventory", "compensated", "inventory.released", None),
            ("payment", "compensating", "payment.refund", None),
            ("payment", "compensated", "payment.refunded", None),
            ("saga", "cancelled", "order.cancelled", "shipping failed"),
        )
    )
    assert [(e["kind"], e["step"], e["status"]) for e in entries] == [
        ("saga", "saga", "started"),
        ("do", "payment", "completed"),
        ("do", "inventory", "completed"),
        ("do", "shipping", "failed"),
        ("undo", "inventory", "compensated"),
        ("undo", "payment", "compensated"),
        ("saga", "saga", "cancelled"),
    ]
    payment = entries[1]
    assert payment["duration_ms"] == 10.0
    assert (payment["sends"], payment["resends"], payment["deadlines_passed"]) == (1, 0, 0)


def test_re_sends_and_passed_deadlines_stay_on_the_steps_entry() -> None:
    entries = timeline(
        lines(
            ("payment", "in_progress", "payment.process", None),
            ("payment", "resent", "payment.process", "no reply in 10s; attempt 2 of 3"),
            ("payment", "overdue", "payment.process", "3 messages queued on its way"),
            ("payment", "completed", "payment.processed", None),
        )
    )
    assert len(entries) == 1
    entry = entries[0]
    assert entry["status"] == "completed"
    assert (entry["sends"], entry["resends"], entry["deadlines_passed"]) == (2, 1, 2)
    assert entry["duration_ms"] == 30.0


def test_a_retried_compensation_starts_a_new_undo_entry() -> None:
    entries = timeline(
        lines(
            ("payment", "compensating", "payment.refund", None),
            ("payment", "compensation retry", "payment.refund_failed", "attempt 2 in 0.1s"),
            ("payment", "compensation_failed", "payment.refund_failed", "outage"),
            ("saga", "retry", "admin", "retrying compensation of payment"),
            ("payment", "compensating", "payment.refund", None),
            ("payment", "compensated", "payment.refunded", None),
        )
    )
    undo = [(e["kind"], e["status"]) for e in entries if e["kind"] != "saga"]
    assert undo == [("undo", "compensation_failed"), ("undo", "compensated")]
