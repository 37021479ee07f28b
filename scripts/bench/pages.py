"""How fast the console's pages answer with many sagas stored: `make bench-pages`.

Starts an isolated stack, stores SAGAS finished sagas in the orchestrator's database
(with their history, spread over three days and every status), runs a few real ones
through it, then times every request the list, detail and overview pages make, and
says which of the sagas table's indexes answered them.

    python -m scripts.bench.pages [--sagas 100000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from scripts.bench.run import Config, isolated_stack
from scripts.isolation import PG
from scripts.sample import ADDRESS

BUDGET_MS = 300.0

# Sagas of every status, with the steps and history lines a real one of that status has.
_SEED = """
WITH n AS (
  SELECT i, gen_random_uuid() AS id, gen_random_uuid() AS order_id,
         (ARRAY['00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002',
                gen_random_uuid()::text])[1 + (i % 3)] AS customer,
         now() - make_interval(secs => i * 259200.0 / $1) AS at,
         CASE WHEN i % 100 < 90 THEN 'completed' WHEN i % 100 < 95 THEN 'cancelled'
              WHEN i % 100 < 97 THEN 'failed' WHEN i % 100 < 99 THEN 'running'
              ELSE 'compensating' END AS status
  FROM generate_series(1, $1) AS i
), saga AS (
  INSERT INTO sagas (id, order_id, status, current_step, failure_reason, order_data, steps,
                     version, created_at, updated_at, correlation_id, deadline_at)
  SELECT id, order_id, status,
         CASE status WHEN 'running' THEN 'payment' WHEN 'compensating' THEN 'inventory' END,
         CASE WHEN status IN ('cancelled', 'failed') THEN 'shipping failed: seeded' END,
         jsonb_build_object('customer_id', customer, 'total_amount', '49.99', 'items', '[]'::jsonb),
         jsonb_build_object(
           'payment', jsonb_build_object('status', 'completed', 'attempts', 1, 'sends', 1,
             'started_at', at, 'finished_at', at + interval '15 ms'),
           'inventory', jsonb_build_object('status', 'completed', 'attempts', 1, 'sends', 1,
             'started_at', at + interval '15 ms', 'finished_at', at + interval '30 ms'),
           'shipping', jsonb_build_object('status', 'completed', 'attempts', 1, 'sends', 1,
             'started_at', at + interval '30 ms', 'finished_at', at + interval '45 ms'),
           'notification', jsonb_build_object('status', 'completed', 'attempts', 1, 'sends', 1,
             'started_at', at + interval '45 ms', 'finished_at', at + interval '60 ms')),
         6, at, at + interval '60 ms', '',
         CASE WHEN status = 'running' THEN now() + interval '1 hour' END
  FROM n RETURNING id, created_at, status
)
INSERT INTO saga_history (saga_id, step, status, message_type, detail, at, saga_status,
                          message_id)
SELECT saga.id, l.step, l.status, l.kind, NULL, saga.created_at + l.offs, saga.status,
       gen_random_uuid()
FROM saga, (VALUES
  ('saga', 'started', 'order.created', interval '0'),
  ('payment', 'in_progress', 'payment.process', interval '0'),
  ('payment', 'completed', 'payment.processed', interval '15 ms'),
  ('inventory', 'in_progress', 'inventory.reserve', interval '15 ms'),
  ('inventory', 'completed', 'inventory.reserved', interval '30 ms'),
  ('shipping', 'in_progress', 'shipping.create', interval '30 ms'),
  ('shipping', 'completed', 'shipping.created', interval '45 ms'),
  ('notification', 'in_progress', 'notification.send', interval '45 ms'),
  ('notification', 'completed', 'notification.sent', interval '60 ms'),
  ('saga', 'completed', 'notification.sent', interval '60 ms')) AS l(step, status, kind, offs)
"""
_INDEX_SCANS = "SELECT indexrelname, idx_scan FROM pg_stat_user_indexes WHERE relname = 'sagas'"
_SEQ_SCANS = "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'sagas'"


async def seed(database: str, count: int) -> float:
    started = time.monotonic()
    conn = await asyncpg.connect(database=database, **PG)
    try:
        await conn.execute(_SEED, count)
        await conn.execute("ANALYZE sagas; ANALYZE saga_history")
    finally:
        await conn.close()
    return time.monotonic() - started


async def scans(database: str) -> tuple[dict[str, int], int]:
    conn = await asyncpg.connect(database=database, **PG)
    try:
        await asyncio.sleep(0.7)  # the statistics collector's flush
        indexes = {r["indexrelname"]: r["idx_scan"] for r in await conn.fetch(_INDEX_SCANS)}
        return indexes, await conn.fetchval(_SEQ_SCANS)
    finally:
        await conn.close()


async def timed(client: httpx.AsyncClient, url: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = await client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:300]}")
    return times


async def measure(sagas: int, repeat: int) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as logs:
        async with isolated_stack(Config(mode="open", seconds=0), Path(logs)) as (stack, _):
            database = stack.database("saga_orchestrator")
            print(f"storing {sagas} sagas with their history ...", flush=True)
            took = await seed(database, sagas)
            print(f"stored in {took:.1f} s", flush=True)
            base = f"{stack.url('saga_orchestrator')}/api/v1"
            async with httpx.AsyncClient(timeout=30) as client:
                order = await place_one(client, stack.url("order_service"))
                saga_id = await saga_of(client, base, order["id"])
                customer, order_id = order["customer_id"], order["id"]
                deep = sagas // 20 // 2
                pages: list[tuple[str, str]] = [
                    ("list: newest", "/sagas?page=1&page_size=20"),
                    ("list: running", "/sagas?status=running"),
                    ("list: completed", "/sagas?status=completed"),
                    ("list: at step payment", "/sagas?step=payment"),
                    ("list: running at payment", "/sagas?status=running&step=payment"),
                    ("list: a customer's (1/3 of all)", f"/sagas?q={SEEDED_CUSTOMER}"),
                    ("list: search a customer", f"/sagas?q={customer}"),
                    ("list: search an order", f"/sagas?q={order_id}"),
                    ("list: search a saga", f"/sagas?q={saga_id}"),
                    (f"list: page {deep}", f"/sagas?page={deep}&page_size=20"),
                    ("detail: the saga", f"/sagas/{saga_id}"),
                    ("detail: what the services hold", f"/sagas/{saga_id}/holdings"),
                    ("overview", "/console/overview"),
                ]
                before, seq_before = await scans(database)
                rows = []
                for name, path in pages:
                    times = await timed(client, base + path, repeat)
                    rows.append((name, path, times))
                after, seq_after = await scans(database)
    print(f"\n{sagas} sagas stored; each request {repeat} times, one after another (ms):\n")
    print(f"{'request':34} {'p50':>7} {'p95':>7} {'max':>7}")
    slow = 0
    for name, _, times in rows:
        p95 = statistics.quantiles(times, n=20)[18] if len(times) >= 2 else times[0]
        mark = "" if p95 < BUDGET_MS else f"  over {BUDGET_MS:g} ms"
        slow += bool(mark)
        print(f"{name:34} {statistics.median(times):7.1f} {p95:7.1f} {max(times):7.1f}{mark}")
    used = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    print("\nindex scans on the sagas table while measuring:")
    for index, count in sorted(used.items(), key=lambda kv: -kv[1]):
        print(f"  {index:30} {count}")
    print(f"  (sequential scans: {seq_after - seq_before})")
    print("\nevery p95 under budget" if not slow else f"\n{slow} request(s) over budget")
    return 1 if slow else 0


SEEDED_CUSTOMER = "00000000-0000-4000-8000-000000000001"


async def place_one(client: httpx.AsyncClient, order_url: str) -> dict[str, Any]:
    body = {
        "customer_id": str(uuid.uuid4()),
        "items": [
            {"product_id": "550e8400-e29b-41d4-a716-446655440002", "quantity": 1, "price": "49.99"}
        ],
        "shipping_address": ADDRESS,
    }
    response = await client.post(f"{order_url}/api/v1/orders", json=body)
    response.raise_for_status()
    order: dict[str, Any] = response.json()["data"]
    return order


async def saga_of(client: httpx.AsyncClient, base: str, order_id: str) -> str:
    for _ in range(100):
        response = await client.get(f"{base}/sagas", params={"q": order_id})
        items = response.json()["data"]["items"]
        if items and items[0]["status"] == "completed":
            return str(items[0]["id"])
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the saga of order {order_id} did not complete")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench-pages", description=__doc__.splitlines()[0])
    parser.add_argument("--sagas", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(measure(args.sagas, args.repeat)))


if __name__ == "__main__":
    main()
