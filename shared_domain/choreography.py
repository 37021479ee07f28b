"""The saga with no conductor (SAGA_MODE=choreography): which event each service reacts
to, and the command of its own that the event stands for.

Forward, each service does its step on the event of the step before it: payment on
`order.created`, inventory on `payment.processed`, shipping on `inventory.reserved`,
notification on `shipping.created`. Backward, each undo runs on the failure (or the
undo) of the step after it, in the same reverse order as orchestration: `shipping.*`
failing or undone releases the stock, `inventory.*` failing or undone refunds the
payment. The order service ends the order (order_service.reactions) and the
orchestrator, if it observes, builds the saga's state from the same events.

A worker keeps its command handlers: the event is turned into the command it stands
for (same message id, so the inbox takes it once) and handled as that command, so a
repeated event re-emits the recorded outcome exactly as a repeated command does. What
the next service needs travels forward in the events (`order`: the order.created
payload), and the reason of a failure travels backward in the undos (`reason`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared_domain.contracts import (
    COMMAND_PAYLOADS,
    COMMANDS_EXCHANGE,
    EVENTS_EXCHANGE,
    Envelope,
    MessageType,
    NotificationKind,
)
from shared_domain.messaging.consumer import Handler, PermanentError
from shared_domain.messaging.topology import (
    ALL_QUEUES,
    ORCHESTRATOR_EVENTS,
    ORDER_EVENTS,
    Binding,
    orchestration_bindings,
)

UNDOS = frozenset(
    {MessageType.PAYMENT_REFUND, MessageType.INVENTORY_RELEASE, MessageType.SHIPPING_CANCEL}
)

ORCHESTRATION = "orchestration"
CHOREOGRAPHY = "choreography"


def _order(event: Envelope) -> dict[str, Any]:
    order = event.payload.get("order")
    if not isinstance(order, dict):
        raise PermanentError(
            f"{event.type} for order {event.order_id} carries no order: its sender does not "
            "run SAGA_MODE=choreography"
        )
    return order


_UNDO_FAILED = "compensation of {step} failed: {reason}"


def undo_failed(step: str, reason: object) -> str:
    """The reason an undo that could not be done gives, carried back along the undos
    still to run: the order service ends such a saga `failed`."""
    return _UNDO_FAILED.format(step=step, reason=reason)


def names_a_failed_undo(reason: object) -> bool:
    return str(reason).startswith(_UNDO_FAILED.split("{", 1)[0])


def _because(event: Envelope) -> str:
    """Why an undo runs: the reason carried back, or the failure that started it."""
    reason = event.payload.get("reason")
    step = event.type.split(".", 1)[0]
    if event.type.endswith("_failed"):  # an undo after it could not be done
        return undo_failed(step, reason)
    if event.type.endswith(".failed"):
        return f"{step} failed: {reason}"
    return str(reason or f"{event.type} (saga compensation)")


@dataclass(frozen=True)
class Reaction:
    command: MessageType
    payload: Callable[[Envelope], dict[str, Any]]


def _charge(e: Envelope) -> dict[str, Any]:
    return {"customer_id": e.payload["customer_id"], "amount": e.payload["total_amount"]}


def _reserve(e: Envelope) -> dict[str, Any]:
    order = _order(e)
    return {"items": order["items"], "customer_id": order["customer_id"]}


def _ship(e: Envelope) -> dict[str, Any]:
    order = _order(e)
    return {
        "items": order["items"],
        "shipping_address": order["shipping_address"],
        "customer_id": order["customer_id"],
    }


def _confirm(e: Envelope) -> dict[str, Any]:
    kind = NotificationKind.ORDER_CONFIRMATION.value
    return {"kind": kind, "customer_id": _order(e)["customer_id"], "reason": None}


def _cancel_notice(e: Envelope) -> dict[str, Any]:
    customer = e.payload.get("customer_id")
    if customer is None:
        raise PermanentError(f"order.cancelled for order {e.order_id} names no customer")
    kind = NotificationKind.ORDER_CANCELLED.value
    return {"kind": kind, "customer_id": customer, "reason": e.payload.get("reason")}


def _undo(e: Envelope) -> dict[str, Any]:
    return {"reason": _because(e)}


REACTIONS: Mapping[MessageType, Reaction] = {
    MessageType.ORDER_CREATED: Reaction(MessageType.PAYMENT_PROCESS, _charge),
    MessageType.PAYMENT_PROCESSED: Reaction(MessageType.INVENTORY_RESERVE, _reserve),
    MessageType.INVENTORY_RESERVED: Reaction(MessageType.SHIPPING_CREATE, _ship),
    MessageType.SHIPPING_CREATED: Reaction(MessageType.NOTIFICATION_SEND, _confirm),
    MessageType.ORDER_CANCELLED: Reaction(MessageType.NOTIFICATION_SEND, _cancel_notice),
    MessageType.SHIPPING_FAILED: Reaction(MessageType.INVENTORY_RELEASE, _undo),
    MessageType.SHIPPING_CANCELLED: Reaction(MessageType.INVENTORY_RELEASE, _undo),
    MessageType.SHIPPING_CANCEL_FAILED: Reaction(MessageType.INVENTORY_RELEASE, _undo),
    MessageType.INVENTORY_FAILED: Reaction(MessageType.PAYMENT_REFUND, _undo),
    MessageType.INVENTORY_RELEASED: Reaction(MessageType.PAYMENT_REFUND, _undo),
    MessageType.INVENTORY_RELEASE_FAILED: Reaction(MessageType.PAYMENT_REFUND, _undo),
}

# What the order service hears in choreography: the step that shows the saga under
# way, the outcomes that end the order, and the undos that could not be done.
ORDER_SUBSCRIPTIONS: tuple[MessageType, ...] = (
    MessageType.PAYMENT_PROCESSED,
    MessageType.PAYMENT_FAILED,
    MessageType.PAYMENT_REFUNDED,
    MessageType.PAYMENT_REFUND_FAILED,
    MessageType.INVENTORY_RELEASE_FAILED,
    MessageType.SHIPPING_CANCEL_FAILED,
    MessageType.NOTIFICATION_SENT,
    MessageType.NOTIFICATION_FAILED,
)


def _carry(event: MessageType, envelope: Envelope, command: Any) -> dict[str, Any]:
    """What this service's own event passes on: the order forward, the reason back."""
    if event is MessageType.ORDER_CREATED:
        return {"order": envelope.payload}
    if "order" in envelope.payload:
        return {"order": envelope.payload["order"]}
    reason = getattr(command, "reason", None)
    return {"reason": reason} if reason is not None and reaction_is_undo(event) else {}


def reaction_is_undo(event: MessageType) -> bool:
    return REACTIONS[event].command in UNDOS


def reactions_of(commands: Mapping[MessageType, Handler]) -> tuple[MessageType, ...]:
    """The events a worker handling `commands` reacts to."""
    return tuple(event for event, r in REACTIONS.items() if r.command in commands)


def reacting(commands: Mapping[MessageType, Handler]) -> dict[MessageType, Handler]:
    """A worker's handlers in choreography: its command handlers (an undo may still come
    as a command: the order service's unwind) and, for each event it reacts to, that
    event handled as its command."""

    def on(event: MessageType) -> Handler:
        reaction = REACTIONS[event]
        handle = commands[reaction.command]
        payload_type = COMMAND_PAYLOADS[reaction.command]

        async def react(envelope: Envelope, _event: object) -> None:
            payload = payload_type.model_validate(reaction.payload(envelope))
            command = envelope.model_copy(
                update={
                    "type": reaction.command.value,
                    "payload": payload.model_dump(mode="json"),
                }
            )
            command = command.carrying(**_carry(event, envelope, payload))
            await handle(command, payload)

        return react

    def undo(command: MessageType) -> Handler:
        handle = commands[command]

        async def carrying_reason(envelope: Envelope, payload: Any) -> None:
            await handle(envelope.carrying(reason=payload.reason), payload)

        return carrying_reason

    own = {c: undo(c) if c in UNDOS else h for c, h in commands.items()}
    return {**own, **{event: on(event) for event in reactions_of(commands)}}


def choreography_bindings(observed: bool) -> dict[str, frozenset[Binding]]:
    """Each worker's queue: the events it reacts to and its undo commands (a saga given
    up on is unwound by command); the order service's: ORDER_SUBSCRIPTIONS; the
    orchestrator's: every event while it observes (with the order service's unwind and
    `order.failed`), none when it does not."""
    result: dict[str, frozenset[Binding]] = {}
    for queue in ALL_QUEUES:
        if queue is ORDER_EVENTS:
            wanted = {(EVENTS_EXCHANGE, t.value) for t in ORDER_SUBSCRIPTIONS}
        elif queue is ORCHESTRATOR_EVENTS:  # and the order service's unwind and failure
            wanted = (
                {(queue.exchange, k) for k in queue.routing_keys}
                | {(COMMANDS_EXCHANGE, MessageType.SHIPPING_CANCEL.value)}
                | {(EVENTS_EXCHANGE, MessageType.ORDER_FAILED.value)}
                if observed
                else set()
            )
        else:
            commands = {MessageType(k) for k in queue.routing_keys}
            wanted = {
                (EVENTS_EXCHANGE, event.value)
                for event, r in REACTIONS.items()
                if r.command in commands
            } | {(COMMANDS_EXCHANGE, c.value) for c in commands & UNDOS}
        result[queue.name] = frozenset(wanted)
    return result


def bindings(style: str) -> tuple[dict[str, frozenset[Binding]], dict[str, frozenset[Binding]]]:
    """The bindings of a saga style (ServiceSettings.saga_style), and every binding any
    style has, for the other styles' to be removed."""
    styles = {
        ORCHESTRATION: orchestration_bindings(),
        CHOREOGRAPHY: choreography_bindings(observed=True),
        f"{CHOREOGRAPHY}-unobserved": choreography_bindings(observed=False),
    }
    every = {q.name: frozenset().union(*(s[q.name] for s in styles.values())) for q in ALL_QUEUES}
    return styles[style], every
