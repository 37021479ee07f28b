"""sagactl's stream, timeline, stock and failure-rate commands, run as a user runs them,
against the end-to-end stack (through the orchestrator alone)."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.e2e.conftest import Api, line, wait_for
from tests.e2e.test_operations import sagactl, start_sagactl

pytestmark = pytest.mark.e2e


async def test_watch_prints_every_transition_of_a_saga_as_it_happens(api: Api) -> None:
    await api.failure_rates()
    process = await start_sagactl(api, "--json", "watch")
    assert process.stdout is not None and process.stderr is not None
    try:
        # the stream starts with what commits once it is followed, which sagactl says
        said = await asyncio.wait_for(process.stderr.readline(), 30)
        assert said.decode().startswith("following /sagas/stream"), said
        order = await api.place([line(await api.in_stock(1))])
        seen: list[dict[str, str]] = []

        async def ended() -> bool:
            text = await asyncio.wait_for(process.stdout.readline(), 30)  # type: ignore[union-attr]
            seen.append(json.loads(text))
            mine = [t for t in seen if t["saga_id"] == order["saga_id"]]
            return any(t["step"] == "saga" and t["status"] == "completed" for t in mine)

        await wait_for(ended, "the saga's end in sagactl watch", timeout=30)
    finally:
        process.terminate()
        await process.wait()
    mine = [(t["step"], t["status"]) for t in seen if t["saga_id"] == order["saga_id"]]
    assert mine[0] == ("saga", "started")
    assert ("shipping", "completed") in mine


async def test_saga_show_draws_the_timeline_with_the_undoing_apart(api: Api) -> None:
    await api.failure_rates(shipping=1.0)
    try:
        order = await api.place([line(await api.in_stock(1))])
        assert (await api.wait_terminal(order["id"]))["status"] == "cancelled"
    finally:
        await api.failure_rates()
    code, out, err = await sagactl(api, "saga", "show", order["saga_id"])
    assert code == 0, err
    assert "undo inventory" in out and "undo payment" in out
    assert out.index("undo inventory") < out.index("undo payment")
    code, out, err = await sagactl(api, "saga", "watch", order["saga_id"])
    assert code == 0, err
    assert out.rstrip().endswith(f"saga {order['saga_id']} is done")


async def test_stock_add_and_rates_set_and_reset_go_through_the_orchestrator(api: Api) -> None:
    product = await api.in_stock(0)
    before = (await api.stock())[product]
    code, out, err = await sagactl(api, "stock", "add", product, "7")
    assert code == 0, err
    assert f"{before[0] + 7}" in out
    assert (await api.stock())[product] == (before[0] + 7, before[1])
    code, _, err = await sagactl(api, "stock", "add", product, "--", "-7")  # a negative: after --
    assert code == 0, err
    code, _, err = await sagactl(api, "stock", "add", product, "0")
    assert code == 1 and "must not be 0" in err

    code, out, err = await sagactl(api, "rates", "set", "notification", "0.5")
    assert code == 0, err
    assert "notification is 0.5 (operator)" in out
    code, out, err = await sagactl(api, "--json", "rates", "list")
    assert code == 0, err
    code, out, err = await sagactl(api, "rates", "reset", "notification")
    assert code == 0, err
    assert "notification is 0.0 (environment)" in out
    api.rates.pop("notification", None)
    code, _, err = await sagactl(api, "rates", "set", "mail", "0.5")
    assert code == 2 and "no failure rate 'mail'" in err
