"""`sagactl`: the operator's command line for sagas and dead letters. It talks to the
orchestrator's admin API, so it works against a local stack or a remote one alike.

    sagactl dlq list
    sagactl dlq show payment_service.commands.dlq
    sagactl dlq replay payment_service.commands.dlq <message-id>
    sagactl saga retry <saga-id>
    sagactl saga show <saga-id>
    sagactl watch
    sagactl stock add 550e8400-e29b-41d4-a716-446655440003 100
    sagactl rates set shipping 1
    sagactl token --role operator --subject alice
"""

from __future__ import annotations

import getpass
import json
import time
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

from saga_orchestrator.sse import EventParser

app = typer.Typer(
    help="Operate the order saga: sagas, the live stream, dead letters, stock, failure rates, "
    "audit log.",
    no_args_is_help=True,
)
saga_app = typer.Typer(help="Inspect, retry or compensate sagas.", no_args_is_help=True)
dlq_app = typer.Typer(help="List, inspect, replay or discard dead letters.", no_args_is_help=True)
stock_app = typer.Typer(help="List products, add stock.", no_args_is_help=True)
rates_app = typer.Typer(help="Read and set the workers' failure rates.", no_args_is_help=True)
app.add_typer(saga_app, name="saga")
app.add_typer(dlq_app, name="dlq")
app.add_typer(stock_app, name="stock")
app.add_typer(rates_app, name="rates")

out = Console()
err = Console(stderr=True)


class Client:
    def __init__(
        self, url: str, key: str | None, token: str | None, actor: str, as_json: bool
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.token = token
        self.actor = actor
        self.as_json = as_json

    @property
    def headers(self) -> dict[str, str]:
        headers = {"X-Admin-Actor": self.actor}
        if self.key:
            headers["X-Admin-Key"] = self.key
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def fail(self, response: httpx.Response) -> NoReturn:
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text[:500]}
        error = body.get("error") or {}
        err.print(
            f"[red]HTTP {response.status_code} {error.get('code', '')}: "
            f"{error.get('message') or body.get('message')}[/red]"
        )
        raise typer.Exit(1)

    def call(self, method: str, path: str, *, quiet: bool = False, **kwargs: Any) -> Any:
        """The `data` of the answer; its `message` goes to stderr unless `quiet` (a
        command that makes several calls says what it found itself)."""
        try:
            response = httpx.request(
                method, f"{self.url}/api/v1{path}", headers=self.headers, timeout=30, **kwargs
            )
        except httpx.HTTPError as exc:
            err.print(f"[red]cannot reach the orchestrator at {self.url}: {exc}[/red]")
            raise typer.Exit(2) from None
        try:
            body = response.json()
        except ValueError:
            err.print(f"[red]HTTP {response.status_code}: {response.text[:500]}[/red]")
            raise typer.Exit(1) from None
        if response.status_code >= 400:
            self.fail(response)
        if self.as_json:
            out.print_json(json.dumps(body["data"]))
        elif body.get("message") and not quiet:
            err.print(f"[dim]{body['message']}[/dim]")
        return body["data"]


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="SAGA_ADMIN_URL", help="the orchestrator's base URL")
    ] = "http://127.0.0.1:8000",
    key: Annotated[
        str | None,
        typer.Option(
            envvar="ADMIN_API_KEY", help="admin key (AUTH_MODE=none: needed to change anything)"
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="SAGA_TOKEN",
            help="bearer credential (AUTH_MODE=jwt: a token; apikey: OPERATOR_API_KEY or "
            "ADMIN_API_KEY)",
        ),
    ] = None,
    actor: Annotated[
        str | None, typer.Option(envvar="SAGA_ADMIN_ACTOR", help="your name, for the audit log")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON data")] = False,
) -> None:
    ctx.obj = Client(url, key, token, actor or getpass.getuser(), as_json)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    out.print(table)


# ---------------------------------------------------------------- sagas


@saga_app.command("list")
def saga_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="running, compensating, failed, ...")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
) -> None:
    """The most recent sagas."""
    params: dict[str, Any] = {"page_size": limit}
    if status:
        params["status"] = status
    data = ctx.obj.call("GET", "/sagas", params=params)
    if not ctx.obj.as_json:
        _table(
            f"{len(data['items'])} of {data['total']} saga(s)",
            ["saga", "order", "status", "step", "updated", "reason"],
            [
                [
                    s["id"],
                    s["order_id"],
                    s["status"],
                    s["current_step"],
                    s["updated_at"],
                    s["failure_reason"],
                ]
                for s in data["items"]
            ],
        )


@saga_app.command("show")
def saga_show(ctx: typer.Context, saga_id: str) -> None:
    """A saga with its timeline: each step's command to its reply, then its undoing."""
    data = ctx.obj.call("GET", f"/sagas/{saga_id}")
    if ctx.obj.as_json:
        return
    out.print(
        f"saga [bold]{data['id']}[/bold]  order {data['order_id']}  "
        f"customer {data.get('customer_id')}  status [bold]{data['status']}[/bold]"
    )
    if data.get("failure_reason"):
        out.print(f"reason: {data['failure_reason']}")
    out.print(timeline_table(data["timeline"]))


def timeline_table(entries: list[dict[str, Any]]) -> Table:
    """The console's timeline in the terminal: an undo in red, indented."""
    table = Table(title="timeline", show_lines=False)
    for column in ("at", "step", "status", "took", "sent", "messages"):
        table.add_column(column, overflow="fold")
    for e in entries:
        lines = ", ".join(f"{line['message_type']} -> {line['status']}" for line in e["lines"])
        detail = "; ".join(line["detail"] for line in e["lines"] if line.get("detail"))
        if e["kind"] == "saga":
            table.add_row(e["started_at"], "[dim]saga[/dim]", e["status"], "", "", detail)
            continue
        sent = str(e["sends"])
        if e["deadlines_passed"]:
            sent += f" ({e['deadlines_passed']} deadline(s) passed)"
        name = f"[red]  undo {e['step']}[/red]" if e["kind"] == "undo" else e["step"]
        messages = f"{lines} ({detail})" if detail else lines
        table.add_row(e["started_at"], name, e["status"], f"{e['duration_ms']} ms", sent, messages)
    return table


@saga_app.command("watch")
def saga_watch(ctx: typer.Context, saga_id: str) -> None:
    """One saga's transitions as they happen, from its start, until it is done."""
    _watch(ctx.obj, f"/sagas/{saga_id}/stream")


@app.command("watch")
def watch(ctx: typer.Context) -> None:
    """Every saga's transitions as they happen (the live stream), until Ctrl-C."""
    _watch(ctx.obj, "/sagas/stream")


_COLOURS = {
    "completed": "green",
    "cancelled": "red",
    "failed": "bold red",
    "compensating": "yellow",
}


def _watch(client: Client, path: str) -> None:
    """Follow the stream; a dropped one is resumed after the last event seen."""
    parser = EventParser()
    while True:
        headers = client.headers
        if parser.last_id:
            headers["Last-Event-ID"] = parser.last_id
        try:
            with httpx.stream(
                "GET", f"{client.url}/api/v1{path}", headers=headers, timeout=None
            ) as response:
                if response.status_code != 200:
                    response.read()
                    client.fail(response)
                lines = response.iter_lines()
                # The server's first line comes once it is following: from here on
                # nothing that commits is missed.
                next(lines, None)
                after = f" after {parser.last_id}" if parser.last_id else ""
                err.print(f"[dim]following {path}{after}[/dim]", highlight=False)
                for text in lines:
                    event = parser.feed(text)
                    if event is None:
                        continue
                    if event.event == "end":
                        out.print(f"[dim]saga {event.json()['saga_id']} is done[/dim]")
                        return
                    _print_transition(client, event.json())
        except KeyboardInterrupt:
            return
        except httpx.HTTPError as exc:
            err.print(f"[dim]stream dropped ({exc}); resuming[/dim]")
            time.sleep(1)


def _print_transition(client: Client, t: dict[str, Any]) -> None:
    if client.as_json:  # one object a line, for jq and the like
        print(json.dumps(t), flush=True)
        return
    colour = _COLOURS.get(t["saga_status"], "")
    status = f"{t['saga_status']:<12}"  # padded before the colour, which takes no room
    if colour:
        status = f"[{colour}]{status}[/{colour}]"
    detail = f"  ({t['detail']})" if t.get("detail") else ""
    out.print(
        f"{t['at'][11:23]}  saga {t['saga_id'][:8]}  order {t['order_id'][:8]}  {status}"
        f"  {t['step']:<12} {t['status']:<14} {t['message_type']}{detail}",
        highlight=False,
        soft_wrap=True,  # one line an event, whatever the terminal's width
    )


@saga_app.command("retry")
def saga_retry(ctx: typer.Context, saga_id: str) -> None:
    """Resume a failed or stuck saga from the step where it stopped."""
    data = ctx.obj.call("POST", f"/sagas/{saga_id}/retry")
    if not ctx.obj.as_json:
        out.print(f"saga {data['id']} is now [bold]{data['status']}[/bold]")


@saga_app.command("compensate")
def saga_compensate(
    ctx: typer.Context,
    saga_id: str,
    reason: Annotated[str, typer.Option(help="why, for the saga and the audit log")] = (
        "forced by an operator"
    ),
) -> None:
    """Stop a running saga and undo what it did."""
    data = ctx.obj.call("POST", f"/sagas/{saga_id}/compensate", json={"reason": reason})
    if not ctx.obj.as_json:
        out.print(f"saga {data['id']} is now [bold]{data['status']}[/bold]")


# ---------------------------------------------------------------- dead letters


def _letter_rows(letters: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            m["key"],
            m["type"],
            m["order_id"],
            m["reason"],
            m["dead_lettered_at"],
            (m["error"] or "")[:120],
        ]
        for m in letters
    ]


LETTER_COLUMNS = ["key", "type", "order", "reason", "dead-lettered at", "error"]


@dlq_app.command("list")
def dlq_list(ctx: typer.Context) -> None:
    """Every dead-letter queue and how many messages it holds."""
    data = ctx.obj.call("GET", "/dlq")
    if not ctx.obj.as_json:
        _table(
            "dead-letter queues",
            ["queue", "from", "messages"],
            [[q["queue"], q["source_queue"], q["messages"]] for q in data],
        )


@dlq_app.command("show")
def dlq_show(
    ctx: typer.Context, queue: str, limit: Annotated[int, typer.Option(min=1, max=500)] = 20
) -> None:
    """The messages at the head of a dead-letter queue (they stay there)."""
    data = ctx.obj.call("GET", f"/dlq/{queue}/messages", params={"limit": limit})
    if not ctx.obj.as_json:
        _table(
            f"{len(data['items'])} of {data['total']} in {queue}",
            LETTER_COLUMNS,
            _letter_rows(data["items"]),
        )


@dlq_app.command("inspect")
def dlq_inspect(ctx: typer.Context, queue: str, key: str) -> None:
    """One dead letter in full: headers, reason and body."""
    data = ctx.obj.call("GET", f"/dlq/{queue}/messages/{key}")
    if not ctx.obj.as_json:
        out.print_json(json.dumps(data))


@dlq_app.command("replay")
def dlq_replay(
    ctx: typer.Context,
    queue: str,
    key: Annotated[str | None, typer.Argument(help="the message key; omit with --all")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="replay every message")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="at most this many")] = 100,
) -> None:
    """Put dead letters back on the queue they came from."""
    if (key is None) == (not replay_all):
        err.print("[red]give a message KEY or --all[/red]")
        raise typer.Exit(2)
    if replay_all:
        data = ctx.obj.call("POST", f"/dlq/{queue}/replay", params={"limit": limit})
        if not ctx.obj.as_json:
            _table(
                f"{len(data['replayed'])} replayed from {queue}",
                LETTER_COLUMNS,
                _letter_rows(data["replayed"]),
            )
        return
    data = ctx.obj.call("POST", f"/dlq/{queue}/messages/{key}/replay")
    if not ctx.obj.as_json:
        out.print(f"replayed {data['type']} {data['key']} into {data['source_queue']}")


@dlq_app.command("discard")
def dlq_discard(
    ctx: typer.Context,
    queue: str,
    key: str,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Drop a dead letter for good."""
    if not yes and not ctx.obj.as_json:
        typer.confirm(f"discard {key} from {queue} for good?", abort=True)
    data = ctx.obj.call("POST", f"/dlq/{queue}/messages/{key}/discard")
    if not ctx.obj.as_json:
        out.print(f"discarded {data['type']} {data['key']} from {queue}")


# ---------------------------------------------------------------- stock and failure rates


@stock_app.command("add")
def stock_add(
    ctx: typer.Context,
    product_id: str,
    quantity: Annotated[
        int, typer.Argument(help="units to add (negative, after --: to take away)")
    ],
) -> None:
    """Add stock to a product (the inventory service, through the orchestrator)."""
    data = ctx.obj.call(
        "POST",
        f"/services/inventory_service/products/{product_id}/stock",
        json={"quantity": quantity},
    )
    if not ctx.obj.as_json:
        out.print(
            f"{data['name']}: [bold]{data['stock']}[/bold] available, {data['reserved']} reserved"
        )


@stock_app.command("list")
def stock_list(ctx: typer.Context) -> None:
    """Every product with what is available and what reservations hold."""
    data = ctx.obj.call("GET", "/services/inventory_service/products")
    if not ctx.obj.as_json:
        _table(
            "products",
            ["product", "name", "price", "available", "reserved"],
            [[p["id"], p["name"], p["price"], p["stock"], p["reserved"]] for p in data],
        )


WORKERS = ("payment_service", "shipping_service", "notification_service")
RATE_OWNERS = {
    "payment": "payment_service",
    "payment_refund": "payment_service",
    "shipping": "shipping_service",
    "notification": "notification_service",
}


@rates_app.command("list")
def rates_list(ctx: typer.Context) -> None:
    """Each worker's failure rates: what applies now, and the environment's value."""
    rows = []
    for worker in WORKERS:
        for r in ctx.obj.call("GET", f"/services/{worker}/admin/failure-rates", quiet=True):
            rows.append([worker, r["name"], r["rate"], r["source"], r["default"], r["env"]])
    if not ctx.obj.as_json:
        columns = ["worker", "name", "rate", "source", "start-up value", "from"]
        _table("failure rates", columns, rows)


@rates_app.command("set")
def rates_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help=", ".join(RATE_OWNERS))],
    rate: Annotated[float, typer.Argument(min=0.0, max=1.0, help="0.0 to 1.0")],
) -> None:
    """Set a failure rate on every replica of its worker."""
    _rate(ctx, name, rate)


@rates_app.command("reset")
def rates_reset(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help=", ".join(RATE_OWNERS))]
) -> None:
    """Back to the environment's value."""
    _rate(ctx, name, None)


def _rate(ctx: typer.Context, name: str, rate: float | None) -> None:
    worker = RATE_OWNERS.get(name)
    if worker is None:
        err.print(f"[red]no failure rate {name!r}; there are: {', '.join(RATE_OWNERS)}[/red]")
        raise typer.Exit(2)
    path = f"/services/{worker}/admin/failure-rates/{name}"
    if rate is None:
        data = ctx.obj.call("DELETE", path)
    else:
        data = ctx.obj.call("PUT", path, json={"rate": rate})
    if not ctx.obj.as_json:
        out.print(f"{name} is [bold]{data['rate']}[/bold] ({data['source']})")


# ---------------------------------------------------------------- audit


@app.command("audit")
def audit(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, max=1000)] = 20) -> None:
    """The admin audit log, newest first."""
    data = ctx.obj.call("GET", "/admin/audit", params={"limit": limit})
    if not ctx.obj.as_json:
        _table(
            "admin audit log",
            ["at", "action", "target", "actor", "outcome", "detail"],
            [
                [a["at"], a["action"], a["target"], a["actor"], a["outcome"], a["detail"]]
                for a in data
            ],
        )


# ---------------------------------------------------------------- tokens


class TokenRole(StrEnum):  # shared_domain.auth.Role, which imports the web framework
    CUSTOMER = "customer"
    OPERATOR = "operator"
    ADMIN = "admin"


@app.command("token")
def token(
    role: Annotated[TokenRole, typer.Option(help="what the token may do")],
    subject: Annotated[str, typer.Option(help="who it is: for a customer, the customer id")],
    ttl: Annotated[int, typer.Option(min=1, max=30 * 86400, help="seconds it is valid")] = 3600,
    private_key: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="RS256: the PEM private key to sign with"),
    ] = None,
    kid: Annotated[str | None, typer.Option(help="RS256 with JWKS: the key id")] = None,
) -> None:
    """Mint a development token for the configured JWT_SECRET (or, with JWT_ALGORITHM=RS256,
    the private key given), issuer and audience; it is printed alone on stdout."""
    # Imported here: the web framework they bring would slow every other command's start.
    from shared_domain.auth import Role, mint
    from shared_domain.settings import ServiceSettings

    try:
        settings = ServiceSettings()
        value = mint(
            settings,
            Role(role.value),
            subject,
            timedelta(seconds=ttl),
            private_key.read_bytes() if private_key else None,
            kid,
        )
    except ValueError as exc:
        err.print(f"[red]cannot mint a token: {exc}[/red]")
        raise typer.Exit(1) from None
    err.print(
        f"[dim]{role.value} token for {subject}, {settings.jwt_algorithm}, issuer "
        f"{settings.jwt_issuer}, audience {settings.jwt_audience}, valid {ttl} s[/dim]"
    )
    print(value)


if __name__ == "__main__":
    app()
