"""The benchmark's figures as a table (rich) and as JSON."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

DURABILITY = (
    "Durability on: persistent messages, publisher confirms, manual acks after commit; "
    "PostgreSQL fsync={fsync}, synchronous_commit={synchronous_commit}."
)


def _ms(p: dict[str, float] | None, key: str) -> str:
    return f"{p[key]:.1f}" if p else "-"


def style(cfg: dict[str, Any]) -> str:
    mode = cfg.get("saga_mode") or "orchestration"
    if mode == "choreography":
        return "choreography, " + ("observed" if cfg.get("observer") else "no observer")
    return mode


def render_comparison(results: list[dict[str, Any]], console: Console) -> None:
    """The saga styles of one sitting side by side."""
    table = Table(title="Saga styles, one sitting")
    table.add_column("")
    for result in results:
        table.add_column(style(result["config"]), justify="right")

    def row(name: str, value: Any) -> None:
        table.add_row(name, *(value(r) for r in results))

    def per(key: str) -> Any:
        return lambda r: "-" if r["per_saga"].get(key) is None else f"{r['per_saga'][key]:.1f}"

    row("sagas/s", lambda r: f"{r['throughput_sagas_per_s']:.1f}")
    for q in ("p50", "p95", "p99"):
        row(f"latency {q} (ms)", lambda r, q=q: _ms(r["latency_ms"], q))
    row(
        "CPU per saga, all processes (ms)",
        lambda r: f"{sum(r['cpu_s_per_saga'].values()) * 1000:.1f}",
    )
    row("messages published per saga", per("messages_published"))
    row("deliveries per saga", per("deliveries"))
    row("PostgreSQL transactions per saga", per("transactions"))
    row(
        "lost / invariant problems",
        lambda r: (
            f"{r['orders']['without_outcome'] + r['orders']['rejected']} / "
            f"{r['invariants']['problem_count']}"
        ),
    )
    console.print(table)


def render(result: dict[str, Any], console: Console) -> None:
    cfg = result["config"]
    load = (
        f"closed loop, {cfg['concurrency']} clients"
        if cfg["mode"] == "closed"
        else f"open loop, {cfg['offered_rate']:g} orders/s offered"
    )
    rates = cfg["failure_rates"]
    console.print(
        f"[bold]{load}[/bold], {cfg['seconds']:g} s, failure rates payment {rates['payment']:g} "
        f"/ shipping {rates['shipping']:g} / notification {rates['notification']:g}, "
        f"{cfg['replicas']} replica(s) of each service, {cfg['cpus']} CPUs, "
        f"{style(cfg)}"
        + (", tracing every saga" if cfg.get("tracing") else "")
        + (
            f", {cfg['stream_subscribers']} live-stream subscribers"
            if cfg.get("stream_subscribers")
            else ""
        )
    )
    console.print(DURABILITY.format(**result["durability"]))

    o = result["orders"]
    summary = Table(title="Sagas", show_header=False)
    summary.add_row("throughput", f"[bold]{result['throughput_sagas_per_s']:.1f}[/bold] sagas/s")
    summary.add_row(
        "orders",
        f"{o['offered']} offered, {o['accepted']} accepted, {o['finished']} finished, "
        f"{o['rejected']} not accepted, {o['without_outcome']} without outcome",
    )
    summary.add_row("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(o["outcomes"].items())))
    summary.add_row("client retries", str(o["client_retries"]))
    if "tracing" in result:
        t = result["tracing"]
        summary.add_row(
            "tracing",
            f"every span exported: {t['spans_received']} received in "
            f"{t['export_requests']} OTLP/HTTP request(s) (warm-up included)",
        )
    if "stream" in result:
        s = result["stream"]
        got = s["events_per_subscriber"]
        summary.add_row(
            "live stream",
            f"{s['subscribers']} subscribers got {min(got)}-{max(got)} events each "
            f"(warm-up included), {s['reconnects']} reconnect(s)",
        )
    inv = result["invariants"]
    summary.add_row(
        "invariants",
        "[green]hold[/green]"
        if inv["problem_count"] == 0 and result["sagas_doing_a_step_twice"] == 0
        else f"[red]{inv['problem_count']} problem(s), "
        f"{result['sagas_doing_a_step_twice']} saga(s) did a step twice[/red]",
    )
    attempts = result["repeated_attempts"]
    summary.add_row(
        "repeated attempts",
        f"{attempts['resent']} command(s) re-sent, {attempts['overdue']} deadline(s) passed "
        f"with the command still queued (no copy sent), {attempts['compensation retry']} "
        "compensation retries",
    )
    per = result["per_saga"]
    msgs = per["messages_published"]
    summary.add_row(
        "per saga",
        f"{per['transactions']:.1f} PostgreSQL transactions"
        + (
            f", {msgs:.1f} messages published, {per['deliveries']:.1f} deliveries"
            if msgs is not None
            else ""
        ),
    )
    console.print(summary)

    latency = Table(title="Latency (ms)")
    for col in ("", "p50", "p95", "p99", "max"):
        latency.add_column(col, justify="right" if col else "left")
    latency.add_row(
        "end to end (POST -> outcome)",
        *(_ms(result["latency_ms"], k) for k in ("p50", "p95", "p99", "max")),
    )
    latency.add_row(
        "POST accepted",
        *(_ms(result["accept_latency_ms"], k) for k in ("p50", "p95", "p99", "max")),
    )
    for step, p in result["step_ms"].items():
        latency.add_row(
            f"step {step} (command -> reply)", *(_ms(p, k) for k in ("p50", "p95", "p99", "max"))
        )
    console.print(latency)

    cpu = Table(title="CPU and memory")
    for col in ("process", "CPU ms/saga", "CPU use", "peak RSS MB"):
        cpu.add_column(col, justify="left" if col == "process" else "right")
    for name, per_saga in result["cpu_s_per_saga"].items():
        rss = result["peak_rss_mb"].get(name)
        cpu.add_row(
            name,
            f"{per_saga * 1000:.2f}",
            f"{result['cpu_utilisation'][name] * 100:.0f}%",
            f"{rss:.0f}" if rss is not None else "",
        )
    total = sum(result["cpu_s_per_saga"].values())
    cpu.add_row("[bold]all[/bold]", f"[bold]{total * 1000:.2f}[/bold]", "", "")
    console.print(cpu)
    machine = result.get("machine_cpu")
    if machine:
        # Steal (the hypervisor serving other guests) is why the same run can differ.
        console.print(
            f"Machine, over the measured window: CPUs busy {machine['busy'] * 100:.0f}%, "
            f"waiting on I/O {machine['iowait'] * 100:.1f}%, "
            f"stolen by the hypervisor {machine['steal'] * 100:.1f}%."
        )

    cal = result.get("calibration")
    if cal:
        table = Table(title="Calibration (same machine, same run)", show_header=False)
        table.add_row(
            "RabbitMQ, persistent + confirm + ack", f"{cal['rabbitmq_messages_per_s']:.0f} msgs/s"
        )
        table.add_row("PostgreSQL, 2-insert transactions", f"{cal['postgresql_tx_per_s']:.0f} tx/s")
        if cal["implied_ceiling_sagas_per_s"]:
            table.add_row(
                "ceiling implied by messages + transactions per saga",
                f"{cal['implied_ceiling_sagas_per_s']:.0f} sagas/s",
            )
            table.add_row(
                "this run, fraction of that ceiling", f"{cal['fraction_of_ceiling'] * 100:.0f}%"
            )
        else:
            table.add_row(
                "ceiling implied by messages + transactions per saga",
                "unknown: counting messages needs the management plugin "
                "(rabbitmq-plugins enable rabbitmq_management)",
            )
        console.print(table)
    if inv["problems"]:
        console.print("[red]invariant problems:[/red]")
        for line in inv["problems"][:20]:
            console.print(f"  {line}")
