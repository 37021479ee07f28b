"""Test isolation: every run gets its own RabbitMQ vhost and its own database names,
so it neither disturbs nor is disturbed by a stack someone is running locally."""

from __future__ import annotations

import uuid

RUN_ID = uuid.uuid4().hex[:8]

# The seeded catalogue, as the stacks under test start with it.
LAPTOP = "550e8400-e29b-41d4-a716-446655440001"
MOUSE = "550e8400-e29b-41d4-a716-446655440002"
HUB = "550e8400-e29b-41d4-a716-446655440003"
KEYBOARD = "550e8400-e29b-41d4-a716-446655440004"
MONITOR = "550e8400-e29b-41d4-a716-446655440005"
PRICES = {LAPTOP: "1299.99", MOUSE: "49.99", HUB: "79.99", KEYBOARD: "159.99", MONITOR: "299.99"}
INITIAL_STOCK = {LAPTOP: 50, MOUSE: 100, HUB: 75, KEYBOARD: 30, MONITOR: 25}
# Every command routing key: a poison message goes to each.
POISON_KEYS = [
    "payment.process",
    "payment.refund",
    "inventory.reserve",
    "inventory.release",
    "shipping.create",
    "shipping.cancel",
    "notification.send",
]


def test_env(vhost: str) -> dict[str, str]:
    """Environment for a service under test: isolated vhost, quick retries, and small
    pools (two stacks may run at once, each of up to eight processes)."""
    return {
        "RABBITMQ_VHOST": vhost,
        "DB_POOL_SIZE": "3",
        "DB_READ_POOL_SIZE": "2",
        "RETRY_BASE_DELAY": "0.05",
        "RETRY_MAX_DELAY": "1",
        "OUTBOX_SWEEP_INTERVAL": "0.2",
        "OUTBOX_GRACE_PERIOD": "1",
        "LOG_LEVEL": "INFO",
    }
