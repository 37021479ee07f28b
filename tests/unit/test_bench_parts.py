"""The benchmark's own arithmetic: percentiles, CPU from /proc, and the stock check it
shares with the chaos tests."""

from __future__ import annotations

import os
import subprocess
import sys

from scripts.bench import procstat
from scripts.bench.calibrate import Ceiling
from scripts.bench.run import _calibration, percentiles
from scripts.invariants import audit_orders, stock_problems

P = "550e8400-e29b-41d4-a716-446655440002"


def test_percentiles_of_one_to_a_hundred() -> None:
    p = percentiles([float(v) for v in range(100, 0, -1)])
    assert p is not None
    assert (p["p50"], p["p95"], p["p99"], p["max"]) == (50.0, 95.0, 99.0, 100.0)
    assert percentiles([]) is None


def test_implied_ceiling_adds_both_servers_costs_per_saga() -> None:
    # 10 messages at 1000/s + 10 transactions at 2000/s = 15 ms per saga
    result = {
        "throughput_sagas_per_s": 33.3,
        "per_saga": {"messages_published": 10.0, "transactions": 10.0},
    }
    cal = _calibration(result, Ceiling(rabbit_messages_per_s=1000, postgres_tx_per_s=2000))
    assert round(cal["implied_ceiling_sagas_per_s"], 1) == 66.7
    assert round(cal["fraction_of_ceiling"], 2) == 0.5


def test_no_ceiling_without_the_message_count() -> None:
    result = {
        "throughput_sagas_per_s": 33.3,
        "per_saga": {"messages_published": None, "transactions": 10.0},
    }
    cal = _calibration(result, Ceiling(rabbit_messages_per_s=1000, postgres_tx_per_s=2000))
    assert cal["implied_ceiling_sagas_per_s"] is None
    assert cal["fraction_of_ceiling"] is None


def test_cpu_of_a_reaped_child_counts_for_its_parent() -> None:
    before = procstat.tree_cpu(os.getpid())
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass",
        ],
        check=True,
    )
    after = procstat.tree_cpu(os.getpid())
    assert after - before >= 0.25


def test_machine_shares_between_two_readings_of_proc_stat() -> None:
    t = procstat.TICKS
    # user nice system idle iowait irq softirq steal guest guest_nice
    before = procstat.machine_times(f"cpu  {t} 0 {t} {6 * t} 0 0 0 0 0 0\ncpu0 ...")
    after = procstat.machine_times(f"cpu  {4 * t} 0 {2 * t} {10 * t} {t} 0 0 {t} 0 0\n")

    shares = procstat.machine_shares(before, after)

    # 10 s of CPU time went by: 4 busy, 4 idle, 1 waiting on I/O, 1 stolen
    assert shares == {"busy": 0.4, "iowait": 0.1, "steal": 0.1}


def test_peak_rss_of_this_process() -> None:
    peak = procstat.peak_rss_mb(os.getpid())
    now = procstat.rss_mb(os.getpid())
    assert peak is not None and now is not None and peak >= now > 1


def order(status: str, quantity: int) -> dict[str, object]:
    return {"id": "o", "status": status, "items": [{"product_id": P, "quantity": quantity}]}


def test_stock_conserved() -> None:
    products = [{"id": P, "stock": 97, "reserved": 13}]
    orders = [order("completed", 2), order("completed", 1), order("cancelled", 5)]
    assert stock_problems(products, orders, {P: 100}, {P: 10}) == []


def test_stock_leak_and_stray_reservation_are_reported() -> None:
    products = [{"id": P, "stock": 96, "reserved": 12}]
    problems = stock_problems(products, [order("completed", 3)], {P: 100}, {P: 10})
    assert any("not conserved" in p for p in problems)
    assert any("2 reserved, completed orders hold 3" in p for p in problems)


def test_unfinished_order_and_negative_stock_are_reported() -> None:
    products = [{"id": P, "stock": -1, "reserved": 0}]
    problems = stock_problems(products, [order("processing", 1)], {P: -1})
    assert any("not terminal" in p for p in problems)
    assert any("negative stock" in p for p in problems)


async def test_the_audit_counts_a_step_done_twice_but_not_its_repeated_attempts() -> None:
    def saga(history: list[tuple[str, str]]) -> dict:
        return {
            "id": "s",
            "status": "cancelled",
            "history": [{"step": step, "status": status} for step, status in history],
        }

    attempts = [("payment", "started"), ("payment", "overdue"), ("payment", "overdue")]
    attempts += [("payment", "resent"), ("payment", "resent"), ("payment", "failed")]
    stories = {"attempts": saga(attempts), "twice": saga([*attempts, ("payment", "failed")])}

    for name, story in stories.items():

        async def read(service: str, path: str, story: dict = story) -> object:
            return story if service == "saga_orchestrator" else None

        order = {"id": name, "status": "cancelled", "saga_id": "s"}
        audit = await audit_orders(read, [order])
        assert audit.problems == []
        assert len(audit.doubled) == (name == "twice"), audit.doubled
        assert audit.attempts == {"overdue": 2, "resent": 2}


def test_the_benchmark_reaches_the_broker_the_services_use() -> None:
    from scripts.bench.run import amqp_url
    from scripts.isolation import RABBIT_PASSWORD, RABBIT_USER

    user = f"{RABBIT_USER}:{RABBIT_PASSWORD}"
    assert amqp_url("bench_1", {}) == f"amqp://{user}@127.0.0.1:5672/bench_1"
    moved = {"RABBITMQ_HOST": "broker.local", "RABBITMQ_PORT": "5673"}
    assert amqp_url("a/b", moved) == f"amqp://{user}@broker.local:5673/a%2Fb"
