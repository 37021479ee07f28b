"""`python -m scripts.bench`: drive an isolated stack through its HTTP API and report
throughput, latency, CPU and memory, with the invariant check after the run."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from scripts.bench.report import render, render_comparison
from scripts.bench.run import Config, run

app = typer.Typer(add_completion=False, no_args_is_help=False)
console = Console()

SEED_RATES = (0.1, 0.05, 0.02)


class Mode(StrEnum):
    closed = "closed"
    open = "open"


class SagaMode(StrEnum):
    orchestration = "orchestration"
    choreography = "choreography"
    both = "both"


@app.command()
def bench(
    mode: Annotated[
        Mode,
        typer.Option(help="closed: N clients, each waits for its saga; open: a fixed offered rate"),
    ] = Mode.closed,
    seconds: Annotated[float, typer.Option(min=1, help="how long the load runs")] = 60,
    concurrency: Annotated[int, typer.Option(min=1, help="clients in a closed loop")] = 32,
    rate: Annotated[float, typer.Option(min=0.1, help="orders per second in an open loop")] = 50,
    chaos: Annotated[
        bool,
        typer.Option(
            help="the seed's failure rates: payment 0.1, shipping 0.05, notification 0.02"
        ),
    ] = False,
    replicas: Annotated[int, typer.Option(min=1, help="replicas of each service")] = 1,
    warmup: Annotated[float, typer.Option(min=0, help="seconds of unmeasured load first")] = 5,
    calibrate: Annotated[
        bool, typer.Option(help="also measure RabbitMQ's and PostgreSQL's own ceiling")
    ] = False,
    tracing: Annotated[
        bool,
        typer.Option(
            help="trace every saga: export every span over OTLP/HTTP to a receiver of the "
            "benchmark's own"
        ),
    ] = False,
    stream_subscribers: Annotated[
        int,
        typer.Option(
            min=0, max=100, help="clients holding the live saga stream open through the run"
        ),
    ] = 0,
    saga_mode: Annotated[
        SagaMode,
        typer.Option(
            help="who runs the saga (SAGA_MODE); both: orchestration, choreography and "
            "choreography without the observer, one after the other, side by side"
        ),
    ] = SagaMode.orchestration,
    observer: Annotated[
        bool, typer.Option(help="choreography: the orchestrator observes (SAGA_OBSERVER)")
    ] = True,
    output: Annotated[Path, typer.Option(help="where the JSON result goes")] = Path(
        "bench-result.json"
    ),
    check: Annotated[
        bool, typer.Option(help="exit 1 if an invariant fails or an order is lost")
    ] = True,
) -> None:
    """Benchmark the order saga end to end on this machine."""
    payment, shipping, notification = SEED_RATES if chaos else (0.0, 0.0, 0.0)
    config = Config(
        mode=mode.value,
        seconds=seconds,
        concurrency=concurrency,
        rate=rate,
        warmup=warmup,
        payment_failure_rate=payment,
        shipping_failure_rate=shipping,
        notification_failure_rate=notification,
        replicas=replicas,
        calibrate=calibrate,
        tracing=tracing,
        stream_subscribers=stream_subscribers,
    )
    styles = (
        [(SagaMode.orchestration.value, True), ("choreography", True), ("choreography", False)]
        if saga_mode is SagaMode.both
        else [(saga_mode.value, observer)]
    )
    results = [
        _run_one(replace(config, saga_mode=mode, observer=observed)) for mode, observed in styles
    ]
    for result in results:
        render(result, console)
    if len(results) > 1:
        render_comparison(results, console)
    output.parent.mkdir(parents=True, exist_ok=True)
    body = results[0] if len(results) == 1 else {"runs": results}
    output.write_text(json.dumps(body, indent=2, default=str))
    console.print(f"JSON: {output}; service logs: " + ", ".join(r["logs"] for r in results))
    lost = sum(r["orders"]["without_outcome"] + r["orders"]["rejected"] for r in results)
    broken = sum(r["invariants"]["problem_count"] + r["sagas_doing_a_step_twice"] for r in results)
    if check and (lost or broken):
        raise typer.Exit(1)


def _run_one(config: Config) -> dict[str, Any]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("starting", total=1)

        def tick(phase: str, done: float, total: float) -> None:
            progress.update(task, description=phase, completed=done, total=total)

        # The services' event loop: the load generator takes less of the machine, and the
        # calibration's client costs what the services' does.
        if sys.platform == "win32":
            result = asyncio.run(run(config, tick))
        else:
            import uvloop

            result = uvloop.run(run(config, tick))
    return result
