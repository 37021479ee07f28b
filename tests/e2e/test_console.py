"""The console in a real browser (Debian's Chromium, driven by Playwright) against the
end-to-end stack: what a presenter does with it, each test ending with a screenshot and
failing on any error the browser's console shows."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from playwright.async_api import Browser, Page, expect

from shared_domain.contracts import COMMANDS_EXCHANGE
from tests.e2e.browser import TIMEOUT, Console
from tests.e2e.conftest import Api, publish, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
async def console(
    browser: Browser, api: Api, request: pytest.FixtureRequest
) -> AsyncIterator[Console]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT)
    tab = Console(page, f"{api.stack.url('saga_orchestrator')}/console/", api.admin_key)
    try:
        yield tab
    finally:
        await tab.shot(request.node.name, full_page=True)
        await context.close()
    assert not tab.errors, f"the browser's console showed errors: {tab.errors}"


async def place_from_demo(console: Console, api: Api, product: str, quantity: int = 1) -> str:
    """Place one order from the demo panel; returns its saga's id."""
    page = console.page
    await console.go("#/demo")
    await page.select_option("[data-testid=order-product]", product)
    await page.fill("[data-testid=order-quantity]", str(quantity))
    await page.fill("[data-testid=order-count]", "1")
    before = await page.locator("[data-testid=placed] li").count()
    await page.click("[data-testid=place]")
    await expect(page.locator("[data-testid=placed] li")).to_have_count(before + 1)
    newest = page.locator("[data-testid=placed] li").first
    href = await newest.locator("a").get_attribute("href")
    order_id = await newest.get_attribute("data-order")
    assert href is not None and order_id is not None
    # the other tests' invariants count every order placed, these too
    api.placed.append(await api.order(order_id))
    return href.rsplit("/", 1)[1]


async def set_rate_from_demo(console: Console, name: str, rate: float) -> None:
    page = console.page
    await console.go("#/demo")
    await page.fill(f"[data-testid=rate-{name}]", str(rate))
    await page.click(f"[data-testid=set-{name}]")
    row = page.locator(f"[data-testid=failure-rates] tr[data-rate={name}]")
    await expect(row).to_have_attribute("data-source", "operator")
    await expect(row).to_contain_text(f"{rate:g} (operator)")


async def reset_rates(api: Api) -> None:
    for service, name in [
        ("payment_service", "payment"),
        ("payment_service", "payment_refund"),
        ("shipping_service", "shipping"),
    ]:
        await api.set_rate(service, name, None)
    api.rates.clear()


def undo_order(page_steps: list[dict[str, str]]) -> list[str]:
    return [s["step"] for s in page_steps if s["kind"] == "undo"]


async def timeline_of(page: Page) -> list[dict[str, str]]:
    entries: list[dict[str, str]] = await page.eval_on_selector_all(
        "[data-testid=timeline] > li",
        "els => els.map(e => ({kind: e.dataset.kind, step: e.dataset.step || 'saga',"
        " status: e.dataset.status}))",
    )
    return entries


async def test_an_order_placed_from_the_demo_panel_shows_up_live_and_completes(
    console: Console, api: Api
) -> None:
    await reset_rates(api)
    product = await api.in_stock(1)
    await console.open("#/sagas")
    page = console.page
    await expect(page.locator("[data-testid=live]")).to_have_attribute("data-state", "live")
    saga_id = await place_from_demo(console, api, product)
    await console.go("#/sagas")
    row = page.locator(f"[data-testid=saga-table] tr[data-saga='{saga_id}']")
    # the list follows the stream: no reload from here on
    await expect(row).to_have_attribute("data-status", "completed")
    await console.shot("console-sagas")
    await row.locator("a").click()
    await expect(page.locator("h2 .badge")).to_have_text("completed")
    timeline = page.locator("[data-testid=timeline] > li[data-kind=do]")
    await expect(timeline).to_have_count(4)
    for step in ("payment", "inventory", "shipping", "notification"):
        await expect(
            page.locator(f"[data-testid=timeline] > li[data-kind=do][data-step={step}]")
        ).to_have_attribute("data-status", "completed")
    await expect(
        page.locator("[data-testid=messages] tr[data-type='notification.sent']")
    ).to_have_count(1)
    await expect(page.locator("[data-holding=shipment]")).to_contain_text("created")
    await console.shot("console-saga")
    # a completed saga cannot be retried: the page shows the API's reason
    console.expect_refusal(409)
    await page.click("[data-testid=retry]")
    result = page.locator("[data-testid=action-result]")
    await expect(result).to_have_text(
        f"409 saga_state_conflict: cannot retry saga {saga_id}: saga is completed; "
        "there is nothing to retry"
    )
    await expect(result).to_have_class("error")


async def test_a_declined_payment_then_a_failed_shipment_from_the_demo_panel(
    console: Console, api: Api
) -> None:
    await reset_rates(api)
    product = await api.in_stock(2)
    await console.open("#/demo")
    page = console.page
    try:
        await set_rate_from_demo(console, "payment", 1)
        declined = await place_from_demo(console, api, product)
        await console.go(f"#/sagas/{declined}")
        await expect(page.locator("h2 .badge")).to_have_text("cancelled")
        await expect(page.locator("[data-testid=failure-reason]")).to_contain_text("payment failed")
        assert undo_order(await timeline_of(page)) == [], "a declined charge has nothing to undo"
        await console.shot("console-payment-declined")

        await set_rate_from_demo(console, "payment", 0)
        await set_rate_from_demo(console, "shipping", 1)
        failed = await place_from_demo(console, api, product)
        await console.go(f"#/sagas/{failed}")
        await expect(page.locator("h2 .badge")).to_have_text("cancelled")
        undo = page.locator("[data-testid=timeline] > li[data-kind=undo]")
        await expect(undo).to_have_count(2)
        entries = await timeline_of(page)
        assert undo_order(entries) == ["inventory", "payment"], entries
        assert [e["status"] for e in entries if e["kind"] == "undo"] == ["compensated"] * 2
        await console.shot("console-compensation")
    finally:
        await reset_rates(api)


async def test_a_poison_message_is_inspected_replayed_and_discarded_from_the_dead_letter_page(
    console: Console, api: Api, amqp: aio_pika.abc.AbstractChannel
) -> None:
    key = str(uuid.uuid4())
    await publish(amqp, COMMANDS_EXCHANGE, "inventory.reserve", b'{"not": "an envelope"}', key)
    queue = "inventory_service.commands.dlq"

    async def dead() -> bool:
        peek = await api.data("saga_orchestrator", f"/dlq/{queue}/messages?limit=500")
        return any(m["key"] == key for m in peek["items"])

    await wait_for(dead, "the poison message reaching its dead-letter queue")
    await console.open(f"#/dlq?queue={queue}")
    page = console.page
    row = page.locator(f"[data-testid=dlq-messages] tr[data-key='{key}']")
    await row.locator("[data-testid=inspect]").click()
    letter = page.locator("[data-testid=letter]")
    await expect(letter).to_contain_text("invalid_message")
    await expect(letter).to_contain_text('"not": "an envelope"')
    await console.shot("console-dead-letter")
    await row.locator("[data-testid=replay]").click()
    await expect(page.locator("[data-testid=notice]")).to_contain_text(
        "replayed into inventory_service.commands"
    )
    # still poison: consumed again and dead-lettered again, then thrown away for good
    await wait_for(dead, "the replayed poison message dead-lettered again")
    await console.go("#/audit")
    await console.go(f"#/dlq?queue={queue}")
    row = page.locator(f"[data-testid=dlq-messages] tr[data-key='{key}']")
    await row.first.locator("[data-testid=discard]").click()
    await expect(page.locator("[data-testid=notice]")).to_contain_text("discarded")
    # The queue holds a message at least once: a copy that came back while the first
    # one was taken (a replay racing a peek) is discarded the same way.
    for _ in range(3):
        await console.go("#/audit")
        await console.go(f"#/dlq?queue={queue}")
        await expect(page.locator("[data-testid=dlq-queues]")).to_be_visible()
        if await row.count() == 0:
            break
        await row.first.locator("[data-testid=discard]").click()
        await expect(page.locator("[data-testid=notice]")).to_contain_text("discarded")
    await expect(row).to_have_count(0)
    assert not await dead(), "the poison message is still in its dead-letter queue"
    await console.go("#/audit")
    audit = page.locator("[data-testid=audit]")
    await expect(audit.locator("tr[data-action='dlq.replay']").first).to_contain_text(key)
    await expect(audit.locator("tr[data-action='dlq.discard']").first).to_contain_text(key)


async def test_a_failed_saga_is_retried_from_its_page(console: Console, api: Api) -> None:
    await reset_rates(api)
    product = await api.in_stock(1)
    await console.open("#/demo")
    page = console.page
    try:
        await set_rate_from_demo(console, "payment_refund", 1)
        await set_rate_from_demo(console, "shipping", 1)
        saga_id = await place_from_demo(console, api, product)
        await console.go(f"#/sagas/{saga_id}")
        await expect(page.locator("h2 .badge")).to_have_text("failed")
        await expect(
            page.locator("[data-testid=timeline] > li[data-kind=undo][data-step=payment]")
        ).to_have_attribute("data-status", "compensation_failed")
        await console.shot("console-failed")
    finally:
        await reset_rates(api)
    await page.click("[data-testid=retry]")
    await expect(page.locator("[data-testid=action-result]")).to_contain_text(
        f"saga {saga_id} resumed"
    )
    await expect(page.locator("h2 .badge")).to_have_text("cancelled")
    await expect(
        page.locator("[data-testid=timeline] > li[data-kind=undo][data-step=payment]").last
    ).to_have_attribute("data-status", "compensated")
    await expect(page.locator("[data-holding=payment]")).to_contain_text("refunded")
    await console.shot("console-retried")


async def test_the_overview_shows_the_figures_and_every_service(console: Console, api: Api) -> None:
    await console.open("#/")
    page = console.page
    completed = await page.locator("[data-testid=count-completed] strong").inner_text()
    assert int(completed) >= 1
    services = page.locator("[data-testid=services] tr[data-service]")
    await expect(services).to_have_count(6)
    for name in api.stack.instances():
        await expect(
            page.locator(f"[data-testid=services] tr[data-service={name}]")
        ).to_contain_text("healthy")
    latency = page.locator("[data-testid=latency] tr[data-step=payment] td").nth(1)
    await expect(latency).to_have_text(re.compile(r"\d+(\.\d)? ms"))
    await console.shot("console-overview")


async def test_without_the_key_actions_are_off_and_say_why(console: Console, api: Api) -> None:
    await console.open("#/demo", key=False)
    page = console.page  # a browser context of its own: no key kept from another test
    await expect(page.locator("[data-testid=admin-state]")).to_contain_text("no admin key")
    button = page.locator("[data-testid=add-stock]")
    await expect(button).to_be_disabled()
    await expect(button).to_have_attribute("title", "enter the admin key first")
