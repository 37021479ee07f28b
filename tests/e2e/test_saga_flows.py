"""The order saga end to end, over HTTP only: the happy path and every compensation, in
both saga styles (orchestration, and choreography with the orchestrator observing)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import LAPTOP, PRICES, Api, line, money, wait_for

pytestmark = pytest.mark.e2e


def history_of(saga: dict) -> list[tuple[str, str]]:
    return [(h["step"], h["status"]) for h in saga["history"]]


async def test_happy_path(saga_api: Api) -> None:
    api = saga_api
    await api.failure_rates()
    first = await api.in_stock(1)
    second = await api.in_stock(2, exclude=(first,))
    before = await api.stock()
    order = await api.place([line(first, 1), line(second, 2)])
    assert order["status"] == "pending"
    expected_total = money(PRICES[first]) + 2 * money(PRICES[second])
    assert money(order["total_amount"]) == expected_total
    assert order["saga_id"]

    done = await api.wait_terminal(order["id"])
    assert done["status"] == "completed"
    assert done["failure_reason"] is None
    assert [h["status"] for h in done["status_history"]] == ["pending", "processing", "completed"]

    payment = await api.data("payment_service", f"/orders/{order['id']}/payment")
    assert payment["status"] == "completed"
    assert money(payment["amount"]) == expected_total
    assert payment["provider_reference"]
    reservation = await api.data("inventory_service", f"/orders/{order['id']}/reservation")
    assert reservation["status"] == "reserved"
    shipment = await api.data("shipping_service", f"/orders/{order['id']}/shipment")
    assert shipment["status"] == "created"
    assert shipment["carrier"] and shipment["tracking_number"]
    notes = await api.data("notification_service", f"/orders/{order['id']}/notifications")
    assert [(n["kind"], n["status"]) for n in notes] == [("order_confirmation", "sent")]

    after = await api.stock()
    assert after[first] == (before[first][0] - 1, before[first][1] + 1)
    assert after[second] == (before[second][0] - 2, before[second][1] + 2)

    saga = await api.data("saga_orchestrator", f"/sagas/{order['saga_id']}")
    assert saga["status"] == "completed"
    assert {k: v["status"] for k, v in saga["steps"].items()} == {
        "payment": "completed",
        "inventory": "completed",
        "shipping": "completed",
        "notification": "completed",
    }


async def test_payment_failure_cancels_with_nothing_to_undo(saga_api: Api) -> None:
    api = saga_api
    await api.failure_rates(payment=1.0)
    before = await api.stock()
    order = await api.place([line(await api.in_stock(2), 2)])
    done = await api.wait_terminal(order["id"])
    assert done["status"] == "cancelled"
    assert "payment" in done["failure_reason"]

    payment = await api.data("payment_service", f"/orders/{order['id']}/payment")
    assert payment["status"] == "failed"
    assert await api.data("inventory_service", f"/orders/{order['id']}/reservation") is None
    assert await api.data("shipping_service", f"/orders/{order['id']}/shipment") is None
    assert await api.stock() == before
    notes = await api.data("notification_service", f"/orders/{order['id']}/notifications")
    assert [n["kind"] for n in notes] == ["order_cancelled"]


async def test_shortage_refunds_payment_and_keeps_stock(saga_api: Api) -> None:
    api = saga_api
    await api.failure_rates()
    before = await api.stock()
    order = await api.place([line(LAPTOP, 1000)])
    done = await api.wait_terminal(order["id"])
    assert done["status"] == "cancelled"
    assert "insufficient_stock" in done["failure_reason"]

    payment = await api.data("payment_service", f"/orders/{order['id']}/payment")
    assert payment["status"] == "refunded"
    reservation = await api.data("inventory_service", f"/orders/{order['id']}/reservation")
    assert reservation["status"] == "failed"
    assert reservation["failure_reason"] == "insufficient_stock"
    assert await api.stock() == before


async def test_shipping_failure_releases_inventory_then_refunds(saga_api: Api) -> None:
    api = saga_api
    await api.failure_rates(shipping=1.0)
    before = await api.stock()
    order = await api.place([line(await api.in_stock(3), 3)])
    done = await api.wait_terminal(order["id"])
    assert done["status"] == "cancelled"
    assert "shipping" in done["failure_reason"]

    reservation = await api.data("inventory_service", f"/orders/{order['id']}/reservation")
    payment = await api.data("payment_service", f"/orders/{order['id']}/payment")
    assert reservation["status"] == "released"
    assert payment["status"] == "refunded"
    assert reservation["updated_at"] < payment["updated_at"], "release comes before refund"
    assert await api.stock() == before

    saga = await api.data("saga_orchestrator", f"/sagas/{order['saga_id']}")
    history = history_of(saga)
    released = history.index(("inventory", "compensated"))
    refunded = history.index(("payment", "compensated"))
    assert history.index(("shipping", "failed")) < released < refunded
    assert saga["status"] == "cancelled"


async def test_notification_failure_still_completes(saga_api: Api) -> None:
    api = saga_api
    await api.failure_rates(notification=1.0)
    order = await api.place([line(await api.in_stock(1), 1)])
    done = await api.wait_terminal(order["id"])
    assert done["status"] == "completed"

    notes = await api.data("notification_service", f"/orders/{order['id']}/notifications")
    assert len(notes) == 1 and notes[0]["status"] == "failed"
    assert notes[0]["attempts"] == 3, "delivery is retried before giving up"
    saga = await api.data("saga_orchestrator", f"/sagas/{order['saga_id']}")
    assert saga["status"] == "completed"
    assert saga["steps"]["notification"]["status"] == "failed"
    assert saga["steps"]["notification"]["error"]


async def test_failed_compensation_ends_failed_for_manual_intervention(saga_api: Api) -> None:
    api = saga_api
    await api.failure_rates()
    await api.stack.restart("payment_service", {"PAYMENT_REFUND_FAILURE_RATE": "1.0"})
    try:
        order = await api.place([line(LAPTOP, 1000)])
        done = await api.wait_terminal(order["id"])
    finally:
        await api.stack.restart("payment_service", {"PAYMENT_REFUND_FAILURE_RATE": "0.0"})
    assert done["status"] == "failed"
    assert "compensation of payment failed" in done["failure_reason"]
    saga = await api.data("saga_orchestrator", f"/sagas/{order['saga_id']}")
    assert saga["status"] == "failed"
    assert saga["steps"]["payment"]["status"] == "compensation_failed"
    if api.mode == "orchestration":  # the orchestrator tried the refund three times
        assert saga["steps"]["payment"]["compensation_attempts"] == 3
    else:  # the payment service did, retrying its message; the observer saw the last try
        refunds = [line for line in api.stack.output("payment_service") if "refund" in line]
        assert sum(f"order {order['id']}" in line and "retry" in line for line in refunds) == 2
    failed = (await api.get("saga_orchestrator", "/sagas", status="failed")).json()["data"]
    assert order["saga_id"] in [s["id"] for s in failed["items"]]


async def test_a_saga_with_no_outcome_in_time_is_unwound_by_the_order_service(
    choreographed: Api,
) -> None:
    api = choreographed
    await api.failure_rates()
    before = await api.stock()
    # Frozen, not stopped: it must answer within one deadline of the unwind, and a
    # restart can take longer than that on a busy machine; a thawed process goes on at once.
    api.stack.freeze("shipping_service")
    try:
        order = await api.place([line(await api.in_stock(1), 1)])

        async def unwinding() -> bool:
            saga = await api.data("saga_orchestrator", f"/sagas/{order['saga_id']}")
            return bool(saga) and saga["status"] == "compensating"

        await wait_for(unwinding, "the order service's unwind", timeout=30)
        assert (await api.order(order["id"]))["status"] == "processing"
    finally:
        api.stack.thaw("shipping_service")
    done = await api.wait_terminal(order["id"])
    assert done["status"] == "cancelled"
    assert "no outcome within 5s of the order: unwound" in done["failure_reason"]
    payment = await api.data("payment_service", f"/orders/{order['id']}/payment")
    reservation = await api.data("inventory_service", f"/orders/{order['id']}/reservation")
    shipment = await api.data("shipping_service", f"/orders/{order['id']}/shipment")
    assert (payment["status"], reservation["status"]) == ("refunded", "released")
    assert shipment["status"] == "cancelled", "booked late and cancelled, or refused"
    assert await api.stock() == before

    async def cancelled() -> dict[str, Any] | None:
        saga = await api.data("saga_orchestrator", f"/sagas/{order['saga_id']}")
        return saga if saga["status"] == "cancelled" else None

    saga = await wait_for(cancelled, "the observer's cancellation")
    assert ("saga", "compensation forced") in history_of(saga)
    assert saga["steps"]["shipping"]["status"] == "compensated"
    assert saga["steps"]["payment"]["status"] == "compensated"


async def test_a_saga_whose_unwind_has_no_outcome_either_fails_and_the_observer_says_so(
    choreographed: Api,
) -> None:
    """Shipping stays away past both deadlines: the order service unwinds the saga, then,
    with no outcome of the unwind either, fails the order and says so (`order.failed`);
    the observer's saga fails with it. Once shipping is back the undos still run."""
    api = choreographed
    await api.failure_rates()
    before = await api.stock()
    await api.stack.stop(["shipping_service"])
    try:
        order = await api.place([line(await api.in_stock(1), 1)])
        done = await api.wait_terminal(order["id"], timeout=30)
        assert done["status"] == "failed"
        assert "of unwinding its saga" in done["failure_reason"]

        async def failed() -> dict[str, Any] | None:
            saga = await api.data("saga_orchestrator", f"/sagas/{order['saga_id']}")
            return saga if saga["status"] == "failed" else None

        saga = await wait_for(failed, "the observer's failure")
        assert saga["steps"]["shipping"]["status"] == "compensation_failed"
        assert saga["steps"]["inventory"]["status"] == "completed", "its release never began"
        assert saga["failure_reason"].endswith(done["failure_reason"])
    finally:
        await api.stack.start(["shipping_service"])

    async def undone() -> bool:
        payment = await api.data("payment_service", f"/orders/{order['id']}/payment")
        return payment["status"] == "refunded" and await api.stock() == before

    await wait_for(undone, "the undos, once shipping is back")
    assert (await api.order(order["id"]))["status"] == "failed", "a failed order stays failed"
    saga = await api.data("saga_orchestrator", f"/sagas/{order['saga_id']}")
    assert saga["status"] == "failed", "the late undos do not move the observer's saga"
