"""Operating failures end to end: step timeouts and re-sends, the admin API (retry,
compensate, key, audit) and the dead-letter tooling, through HTTP and `sagactl`."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

import aio_pika
import httpx
import pytest

from shared_domain.contracts import COMMANDS_EXCHANGE, Envelope
from shared_domain.messaging.topology import DEAD_LETTER_EXCHANGE, PAYMENT_COMMANDS
from tests.e2e.conftest import ADMIN_KEY, Api, line, publish, wait_for
from tests.support import POISON_KEYS

pytestmark = pytest.mark.e2e


async def admin(
    api: Api, method: str, path: str, key: str | None = ADMIN_KEY, **kwargs: Any
) -> httpx.Response:
    headers = {"X-Admin-Actor": "e2e-operator"}
    if key is not None:
        headers["X-Admin-Key"] = key
    return await api.client.request(
        method, api.url("saga_orchestrator", path), headers=headers, **kwargs
    )


async def saga_of(api: Api, saga_id: str) -> dict[str, Any]:
    return await api.data("saga_orchestrator", f"/sagas/{saga_id}")


async def wait_saga(api: Api, saga_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        saga = await saga_of(api, saga_id)  # None until order.created reaches it
        if saga is not None and saga["status"] == status:
            return saga
        if time.monotonic() > deadline:
            raise AssertionError(f"saga {saga_id} is not {status}: {saga}")
        await asyncio.sleep(0.1)


async def completed_order(api: Api) -> dict[str, Any]:
    await api.failure_rates()
    order = await api.place([line(await api.in_stock(1))])
    done = await api.wait_terminal(order["id"])
    assert done["status"] == "completed"
    return done


async def start_sagactl(api: Api, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "saga_orchestrator.cli",
        "--url",
        api.stack.url("saga_orchestrator"),
        "--key",
        ADMIN_KEY,
        "--actor",
        "cli-operator",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


async def sagactl(api: Api, *args: str) -> tuple[int, str, str]:
    process = await start_sagactl(api, *args)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# ---------------------------------------------------------------- the admin key


async def test_admin_mutations_need_the_key_and_refuse_what_the_state_forbids(api: Api) -> None:
    order = await completed_order(api)
    saga_path = f"/sagas/{order['saga_id']}"

    missing = await admin(api, "POST", f"{saga_path}/retry", key=None)
    assert missing.status_code == 403
    assert missing.json()["error"]["code"] == "admin_key_required"
    wrong = await admin(api, "POST", f"{saga_path}/compensate", key="not-the-key-at-all")
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "admin_key_invalid"

    retry = await admin(api, "POST", f"{saga_path}/retry")
    assert retry.status_code == 409, retry.text
    assert retry.json()["error"]["code"] == "saga_state_conflict"
    assert "saga is completed" in retry.json()["error"]["message"]
    compensate = await admin(api, "POST", f"{saga_path}/compensate", json={"reason": "test"})
    assert compensate.status_code == 409
    unknown = await admin(api, "POST", f"/sagas/{uuid.uuid4()}/retry")
    assert unknown.status_code == 404
    bad_body = await admin(api, "POST", f"{saga_path}/compensate", json={"reason": ""})
    assert bad_body.status_code == 422

    assert (await saga_of(api, order["saga_id"]))["status"] == "completed"
    audit = await api.data("saga_orchestrator", "/admin/audit?limit=10")
    mine = [a for a in audit if a["target"] == f"saga {order['saga_id']}"]
    assert [(a["action"], a["outcome"]) for a in mine] == [
        ("saga.compensate", "conflict"),
        ("saga.retry", "conflict"),
    ]
    assert mine[0]["actor"].startswith("e2e-operator from 127.0.0.1")


async def test_admin_is_disabled_without_a_configured_key(api: Api) -> None:
    await api.stack.restart("saga_orchestrator", {"ADMIN_API_KEY": ""})
    try:
        response = await admin(api, "POST", f"/sagas/{uuid.uuid4()}/retry")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "admin_disabled"
        assert "ADMIN_API_KEY" in response.json()["error"]["message"]
        listing = await api.get("saga_orchestrator", "/dlq")
        assert listing.status_code == 200, "reading stays open"
    finally:
        await api.stack.restart("saga_orchestrator", {"ADMIN_API_KEY": ADMIN_KEY})


# ---------------------------------------------------------------- timeouts and retry


async def test_unanswered_payment_is_resent_given_up_and_finished_by_an_operator(
    api: Api,
) -> None:
    """Payment is down: its command waits in its queue, so each attempt passes without
    sending a copy; then the saga gives up and tries to refund, which also goes
    unanswered, so the saga fails. Payment comes back
    and works through its queue; an operator retries the saga, and it ends cancelled
    with nothing charged."""
    await api.failure_rates()
    quick = {
        "PAYMENT_STEP_TIMEOUT": "0.5",
        "PAYMENT_STEP_MAX_ATTEMPTS": "2",
        "TIMEOUT_CHECK_INTERVAL": "0.1",
    }
    await api.stack.restart("saga_orchestrator", quick)
    await api.stack.stop(["payment_service"])
    try:
        order = await api.place([line(await api.in_stock(1))])
        saga = await wait_saga(api, order["saga_id"], "failed")
        assert (await api.wait_terminal(order["id"]))["status"] == "failed"
        history = [(h["step"], h["status"]) for h in saga["history"]]
        assert ("payment", "overdue") in history  # the command was still queued
        assert ("payment", "abandoned") in history
        assert ("payment", "compensation_failed") in history
        assert "payment timed out" in saga["failure_reason"]

        await api.stack.start(["payment_service"])

        async def settled() -> bool:
            # The queued charge and refund race: refunded after the charge, or the refund
            # came first and the late charge was refused. Either way nothing is kept.
            payment = await api.data("payment_service", f"/orders/{order['id']}/payment")
            return payment is not None and payment["status"] in ("refunded", "failed")

        await wait_for(settled, "the queued charge and refund being handled")
        response = await admin(api, "POST", f"/sagas/{order['saga_id']}/retry")
        assert response.status_code == 202, response.text
        await wait_saga(api, order["saga_id"], "cancelled")

        async def cancelled() -> dict[str, Any] | None:
            # the order is terminal already (failed): wait for order.cancelled to reach it
            now = await api.order(order["id"])
            return now if now["status"] == "cancelled" else None

        final = await wait_for(cancelled, "the order service taking the cancellation")
        assert final["status"] == "cancelled"
        assert [h["status"] for h in final["status_history"]][-2:] == ["failed", "cancelled"]
        payment = await api.data("payment_service", f"/orders/{order['id']}/payment")
        assert payment["status"] in ("refunded", "failed")
    finally:
        await api.stack.start(["payment_service"])
        await api.stack.restart(
            "saga_orchestrator",
            {
                "PAYMENT_STEP_TIMEOUT": "10",
                "PAYMENT_STEP_MAX_ATTEMPTS": "3",
                "TIMEOUT_CHECK_INTERVAL": "1",
            },
        )


async def test_operator_forces_compensation_of_a_stuck_saga(api: Api) -> None:
    await api.failure_rates()
    await api.stack.stop(["shipping_service"])
    try:
        order = await api.place([line(await api.in_stock(1))])

        async def at_shipping() -> bool:
            saga = await saga_of(api, order["saga_id"])
            return saga is not None and saga["current_step"] == "shipping"

        await wait_for(at_shipping, "the saga reaching shipping")
        response = await admin(
            api, "POST", f"/sagas/{order['saga_id']}/compensate", json={"reason": "carrier down"}
        )
        assert response.status_code == 202, response.text
        assert response.json()["data"]["status"] == "compensating"
        again = await admin(api, "POST", f"/sagas/{order['saga_id']}/compensate")
        assert again.status_code == 409
        assert "use retry" in again.json()["error"]["message"]
    finally:
        await api.stack.start(["shipping_service"])
    done = await api.wait_terminal(order["id"])
    assert done["status"] == "cancelled"
    assert done["failure_reason"] == "compensation forced: carrier down"
    shipment = await api.data("shipping_service", f"/orders/{order['id']}/shipment")
    assert shipment["status"] == "cancelled"
    reservation = await api.data("inventory_service", f"/orders/{order['id']}/reservation")
    assert reservation["status"] == "released"
    payment = await api.data("payment_service", f"/orders/{order['id']}/payment")
    assert payment["status"] == "refunded"


# ---------------------------------------------------------------- dead letters


async def dlq_counts(api: Api) -> dict[str, int]:
    return {q["queue"]: q["messages"] for q in await api.data("saga_orchestrator", "/dlq")}


async def test_poison_messages_sit_in_their_dlq_and_can_be_inspected_and_discarded(
    api: Api, amqp: aio_pika.abc.AbstractChannel
) -> None:
    before = await dlq_counts(api)
    sent: dict[str, str] = {}
    for key in POISON_KEYS:
        message_id = str(uuid.uuid4())
        await publish(amqp, COMMANDS_EXCHANGE, key, b'{"type": "' + key.encode(), message_id)
        sent[message_id] = key

    async def all_dead() -> bool:
        now = await dlq_counts(api)
        return sum(now.values()) - sum(before.values()) >= len(POISON_KEYS)

    await wait_for(all_dead, "every poison message reaching a DLQ")
    after = await dlq_counts(api)
    assert after["payment_service.commands.dlq"] - before["payment_service.commands.dlq"] == 2
    assert (
        after["notification_service.commands.dlq"] - before["notification_service.commands.dlq"]
        == 1
    )

    found = []
    for queue in after:
        peek = await api.data("saga_orchestrator", f"/dlq/{queue}/messages?limit=500")
        found += [m for m in peek["items"] if m["key"] in sent]
    assert {m["key"] for m in found} == set(sent)
    for letter in found:
        assert letter["reason"] == "invalid_message"
        assert letter["error"].startswith("validation failed")
        assert letter["original_routing_key"] == sent[letter["key"]]
        assert letter["dead_lettered_by"] == letter["source_queue"].split(".")[0]
    one = found[0]
    inspected = await api.data("saga_orchestrator", f"/dlq/{one['queue']}/messages/{one['key']}")
    assert inspected["body"] == one["body"]

    for letter in found:
        response = await admin(
            api, "POST", f"/dlq/{letter['queue']}/messages/{letter['key']}/discard"
        )
        assert response.status_code == 200, response.text
    assert await dlq_counts(api) == before
    gone = await api.get("saga_orchestrator", f"/dlq/{one['queue']}/messages/{one['key']}")
    assert gone.status_code == 404
    unknown = await api.get("saga_orchestrator", "/dlq/no_such_queue.dlq/messages")
    assert unknown.status_code == 404

    # the services kept working
    assert (await completed_order(api))["status"] == "completed"


async def test_a_replayed_dead_letter_is_processed(
    api: Api, amqp: aio_pika.abc.AbstractChannel
) -> None:
    """A valid command dead-lettered (its retries ran out during an outage) is replayed
    with `sagactl` and then handled as if it had never failed."""
    order_id, saga_id = uuid.uuid4(), uuid.uuid4()
    command = Envelope(
        type="payment.process",
        saga_id=saga_id,
        order_id=order_id,
        correlation_id="replay-test",
        source="saga_orchestrator",
        payload={"customer_id": str(uuid.uuid4()), "amount": "12.34"},
    )
    await publish(
        amqp,
        DEAD_LETTER_EXCHANGE,
        PAYMENT_COMMANDS.name,
        command.model_dump_json().encode(),
        str(command.message_id),
        {"x-dead-letter-reason": "retries_exhausted", "x-retry-count": 8},
    )
    dlq = PAYMENT_COMMANDS.dlq

    code, out, err = await sagactl(api, "dlq", "show", dlq)
    assert code == 0, err
    assert str(command.message_id) in out and "retries_exhausted" in out
    code, out, err = await sagactl(api, "dlq", "replay", dlq, str(command.message_id))
    assert code == 0, err
    assert f"into {PAYMENT_COMMANDS.name}" in out

    async def charged() -> Any:
        return await api.data("payment_service", f"/orders/{order_id}/payment")

    payment = await wait_for(charged, "the replayed command being handled")
    assert payment["amount"] == "12.34"
    code, out, err = await sagactl(api, "--json", "dlq", "inspect", dlq, str(command.message_id))
    assert code == 1 and "not found" in err
    code, out, _ = await sagactl(api, "--json", "audit", "--limit", "5")
    entries = json.loads(out)
    assert any(
        e["action"] == "dlq.replay"
        and e["target"] == f"{dlq}/{command.message_id}"
        and e["actor"].startswith("cli-operator")
        for e in entries
    )
    # The payment's reply names a saga the orchestrator never had: rejected to its DLQ.
    rejected = await wait_for(
        lambda: _find_letter(api, "saga_orchestrator.events.dlq", str(order_id)),
        "the orphan reply reaching the orchestrator's DLQ",
    )
    assert rejected["reason"] == "rejected"
    assert "unknown saga" in rejected["error"]
    response = await admin(
        api, "POST", f"/dlq/saga_orchestrator.events.dlq/messages/{rejected['key']}/discard"
    )
    assert response.status_code == 200


async def _find_letter(api: Api, queue: str, order_id: str) -> dict[str, Any] | None:
    peek = await api.data("saga_orchestrator", f"/dlq/{queue}/messages?limit=500")
    return next((m for m in peek["items"] if m["order_id"] == order_id), None)
