"""`sagactl`: the operator's command line for sagas and dead letters. It talks to the
orchestrator's admin API, so it works against a local stack or a remote one alike.

    sagactl dlq list
    sagactl dlq show payment_service.commands.dlq
    sagactl dlq replay payment_service.commands.dlq <message-id>
    sagactl saga retry <saga-id>
"""

from __future__ import annotations

import getpass
import json
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Operate the order saga: sagas, dead letters, audit log.", no_args_is_help=True
)
saga_app = typer.Typer(help="Inspect, retry or compensate sagas.", no_args_is_help=True)
dlq_app = typer.Typer(help="List, inspect, replay or discard dead letters.", no_args_is_help=True)
app.add_typer(saga_app, name="saga")
app.add_typer(dlq_app, name="dlq")

out = Console()
err = Console(stderr=True)


class Client:
    def __init__(self, url: str, key: str | None, actor: str, as_json: bool) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.actor = actor
        self.as_json = as_json

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"X-Admin-Actor": self.actor}
        if self.key:
            headers["X-Admin-Key"] = self.key
        try:
            response = httpx.request(
                method, f"{self.url}/api/v1{path}", headers=headers, timeout=30, **kwargs
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
            error = body.get("error") or {}
            err.print(
                f"[red]HTTP {response.status_code} {error.get('code', '')}: "
                f"{error.get('message') or body.get('message')}[/red]"
            )
            raise typer.Exit(1)
        if self.as_json:
            out.print_json(json.dumps(body["data"]))
        elif body.get("message"):
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
        typer.Option(envvar="ADMIN_API_KEY", help="admin key (needed to change anything)"),
    ] = None,
    actor: Annotated[
        str | None, typer.Option(envvar="SAGA_ADMIN_ACTOR", help="your name, for the audit log")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON data")] = False,
) -> None:
    ctx.obj = Client(url, key, actor or getpass.getuser(), as_json)


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
    """A saga with its steps and history."""
    data = ctx.obj.call("GET", f"/sagas/{saga_id}")
    if ctx.obj.as_json:
        return
    out.print(
        f"saga [bold]{data['id']}[/bold]  order {data['order_id']}  "
        f"status [bold]{data['status']}[/bold]"
    )
    if data.get("failure_reason"):
        out.print(f"reason: {data['failure_reason']}")
    _table(
        "steps",
        ["step", "status", "sends", "deadline", "error"],
        [
            [k, v["status"], v.get("sends"), v.get("deadline"), v.get("error")]
            for k, v in data["steps"].items()
        ],
    )
    _table(
        "history",
        ["at", "step", "status", "message", "detail"],
        [
            [h["at"], h["step"], h["status"], h["message_type"], h["detail"]]
            for h in data["history"]
        ],
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


if __name__ == "__main__":
    app()
