"""Wire contracts: the message envelope and the payload of every message type.

Commands travel on the `saga.commands` exchange, events and replies on `saga.events`;
the routing key of a message is its type.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID, uuid4

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
)

COMMANDS_EXCHANGE = "saga.commands"
EVENTS_EXCHANGE = "saga.events"

# Two decimals, never a float: serialised as a JSON string so no precision is lost.
Money = Annotated[
    Decimal,
    Field(max_digits=14, decimal_places=2, ge=0),
    PlainSerializer(lambda v: f"{v:.2f}", return_type=str, when_used="json"),
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Envelope(BaseModel):
    """Every message on the wire, commands and events alike."""

    model_config = ConfigDict(extra="forbid")

    message_id: UUID = Field(default_factory=uuid4)
    type: str
    saga_id: UUID
    order_id: UUID
    correlation_id: str
    causation_id: UUID | None = None
    timestamp: datetime = Field(default_factory=utcnow)
    source: str
    attempt: int = Field(default=1, ge=1)
    payload: dict[str, Any] = Field(default_factory=dict)
    # Fields every message that follows this one passes on, where its contract has them
    # (in choreography: the order forward, the reason of an undo back). Not on the wire.
    _carry: dict[str, Any] = PrivateAttr(default_factory=dict)

    def carrying(self, **fields: Any) -> Envelope:
        copy = self.model_copy()
        copy._carry = fields
        return copy

    def follow(
        self, type: MessageType, payload: BaseModel | dict[str, Any], source: str
    ) -> Envelope:
        """A message caused by this one: same saga, order and correlation."""
        body = payload if isinstance(payload, dict) else payload.model_dump(mode="json")
        if self._carry:
            fields = PAYLOADS[type].model_fields
            # what the message says itself wins: a refund failure keeps its own reason
            body = body | {
                k: v for k, v in self._carry.items() if k in fields and body.get(k) is None
            }
        return Envelope(
            type=type.value,
            saga_id=self.saga_id,
            order_id=self.order_id,
            correlation_id=self.correlation_id,
            causation_id=self.message_id,
            source=source,
            payload=body,
        )


# ---------------------------------------------------------------- shared parts


class ItemLine(Contract):
    product_id: UUID
    quantity: int = Field(gt=0)
    price: Money


# Text a client sends that is kept: no NUL (PostgreSQL cannot store one), which the
# pattern says in the API's description, and no lone surrogate (not Unicode text at all:
# the JSON parser refuses one before any model sees it).
TEXT_PATTERN = "^[^\\u0000]*$"


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogate)") from None
    return value


def _json_integer(value: object) -> object:
    """What JSON Schema calls an integer: a number with no fraction (5 and 5.0), never a
    string or a boolean, so the API's description and the service agree."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


WholeNumber = Annotated[int, BeforeValidator(_json_integer)]


# A kept text field: `Storable = Field(..., json_schema_extra=STORABLE)`.
Storable = Annotated[str, AfterValidator(_storable)]
STORABLE: dict[str, Any] = {"pattern": TEXT_PATTERN}


class Address(Contract):
    street: Storable = Field(min_length=1, max_length=200, json_schema_extra=STORABLE)
    city: Storable = Field(min_length=1, max_length=100, json_schema_extra=STORABLE)
    state: Storable = Field(min_length=1, max_length=100, json_schema_extra=STORABLE)
    zip_code: Storable = Field(min_length=1, max_length=20, json_schema_extra=STORABLE)
    country: Storable = Field(min_length=1, max_length=100, json_schema_extra=STORABLE)


class NotificationKind(StrEnum):
    ORDER_CONFIRMATION = "order_confirmation"
    ORDER_CANCELLED = "order_cancelled"


# ---------------------------------------------------------------- order events


class OrderCreated(Contract):
    customer_id: UUID
    items: list[ItemLine]
    total_amount: Money
    shipping_address: Address


class OrderProcessing(Contract):
    pass


class OrderCompleted(Contract):
    notification_failed: bool = False


class OrderCancelled(Contract):
    reason: str
    # Whom to tell (choreography: the notification service acts on this event).
    customer_id: UUID | None = None


class OrderFailed(Contract):
    reason: str


# ---------------------------------------------------------------- payment


class ProcessPayment(Contract):
    customer_id: UUID
    amount: Money


class PaymentProcessed(Contract):
    payment_id: UUID
    amount: Money
    provider_reference: str
    # In choreography, the order carried forward for the next step (shared_domain.choreography).
    order: OrderCreated | None = None


class PaymentFailed(Contract):
    payment_id: UUID | None = None
    reason: str


class RefundPayment(Contract):
    reason: str


class PaymentRefunded(Contract):
    payment_id: UUID | None = None
    amount: Money
    # In choreography, why the saga was undone, carried back along the undos.
    reason: str | None = None


class PaymentRefundFailed(Contract):
    reason: str


# ---------------------------------------------------------------- inventory


class ReserveInventory(Contract):
    items: list[ItemLine] = Field(min_length=1)
    # Whose the reservation is, so that a customer reads only their own (optional: a
    # command from before it was sent has none).
    customer_id: UUID | None = None


class InventoryReserved(Contract):
    reservation_id: UUID
    order: OrderCreated | None = None  # as on PaymentProcessed


class InventoryFailed(Contract):
    reason: str
    product_id: UUID | None = None
    requested: int | None = None
    available: int | None = None


class ReleaseInventory(Contract):
    reason: str


class InventoryReleased(Contract):
    reservation_id: UUID | None = None
    reason: str | None = None  # as on PaymentRefunded


class InventoryReleaseFailed(Contract):
    reason: str


# ---------------------------------------------------------------- shipping


class CreateShipment(Contract):
    items: list[ItemLine] = Field(min_length=1)
    shipping_address: Address
    customer_id: UUID | None = None  # as on ReserveInventory


class ShipmentCreated(Contract):
    shipment_id: UUID
    carrier: str
    tracking_number: str
    order: OrderCreated | None = None  # as on PaymentProcessed


class ShipmentFailed(Contract):
    reason: str


class CancelShipment(Contract):
    reason: str


class ShipmentCancelled(Contract):
    shipment_id: UUID | None = None
    reason: str | None = None  # as on PaymentRefunded


class ShipmentCancelFailed(Contract):
    reason: str


# ---------------------------------------------------------------- notification


class SendNotification(Contract):
    kind: NotificationKind
    customer_id: UUID
    reason: str | None = None


class NotificationSent(Contract):
    notification_id: UUID
    kind: NotificationKind
    attempts: int


class NotificationFailed(Contract):
    kind: NotificationKind
    reason: str
    attempts: int


# ---------------------------------------------------------------- registry


class MessageType(StrEnum):
    # commands
    PAYMENT_PROCESS = "payment.process"
    PAYMENT_REFUND = "payment.refund"
    INVENTORY_RESERVE = "inventory.reserve"
    INVENTORY_RELEASE = "inventory.release"
    SHIPPING_CREATE = "shipping.create"
    SHIPPING_CANCEL = "shipping.cancel"
    NOTIFICATION_SEND = "notification.send"
    # events and replies
    ORDER_CREATED = "order.created"
    ORDER_PROCESSING = "order.processing"
    ORDER_COMPLETED = "order.completed"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_FAILED = "order.failed"
    PAYMENT_PROCESSED = "payment.processed"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_REFUNDED = "payment.refunded"
    PAYMENT_REFUND_FAILED = "payment.refund_failed"
    INVENTORY_RESERVED = "inventory.reserved"
    INVENTORY_FAILED = "inventory.failed"
    INVENTORY_RELEASED = "inventory.released"
    INVENTORY_RELEASE_FAILED = "inventory.release_failed"
    SHIPPING_CREATED = "shipping.created"
    SHIPPING_FAILED = "shipping.failed"
    SHIPPING_CANCELLED = "shipping.cancelled"
    SHIPPING_CANCEL_FAILED = "shipping.cancel_failed"
    NOTIFICATION_SENT = "notification.sent"
    NOTIFICATION_FAILED = "notification.failed"


COMMAND_PAYLOADS: dict[MessageType, type[Contract]] = {
    MessageType.PAYMENT_PROCESS: ProcessPayment,
    MessageType.PAYMENT_REFUND: RefundPayment,
    MessageType.INVENTORY_RESERVE: ReserveInventory,
    MessageType.INVENTORY_RELEASE: ReleaseInventory,
    MessageType.SHIPPING_CREATE: CreateShipment,
    MessageType.SHIPPING_CANCEL: CancelShipment,
    MessageType.NOTIFICATION_SEND: SendNotification,
}

EVENT_PAYLOADS: dict[MessageType, type[Contract]] = {
    MessageType.ORDER_CREATED: OrderCreated,
    MessageType.ORDER_PROCESSING: OrderProcessing,
    MessageType.ORDER_COMPLETED: OrderCompleted,
    MessageType.ORDER_CANCELLED: OrderCancelled,
    MessageType.ORDER_FAILED: OrderFailed,
    MessageType.PAYMENT_PROCESSED: PaymentProcessed,
    MessageType.PAYMENT_FAILED: PaymentFailed,
    MessageType.PAYMENT_REFUNDED: PaymentRefunded,
    MessageType.PAYMENT_REFUND_FAILED: PaymentRefundFailed,
    MessageType.INVENTORY_RESERVED: InventoryReserved,
    MessageType.INVENTORY_FAILED: InventoryFailed,
    MessageType.INVENTORY_RELEASED: InventoryReleased,
    MessageType.INVENTORY_RELEASE_FAILED: InventoryReleaseFailed,
    MessageType.SHIPPING_CREATED: ShipmentCreated,
    MessageType.SHIPPING_FAILED: ShipmentFailed,
    MessageType.SHIPPING_CANCELLED: ShipmentCancelled,
    MessageType.SHIPPING_CANCEL_FAILED: ShipmentCancelFailed,
    MessageType.NOTIFICATION_SENT: NotificationSent,
    MessageType.NOTIFICATION_FAILED: NotificationFailed,
}

PAYLOADS: dict[MessageType, type[Contract]] = {**COMMAND_PAYLOADS, **EVENT_PAYLOADS}

ORCHESTRATOR = "saga_orchestrator"
_SERVICE_OF_PREFIX = {
    "payment": "payment_service",
    "inventory": "inventory_service",
    "shipping": "shipping_service",
    "notification": "notification_service",
}
# Who sends each type (the envelope's `source`): the orchestrator every command and the
# order's status events, the order service `order.created`, each worker its replies. A
# consumer refuses a message claiming another sender, such as a payment reply that says
# it comes from the shipping service.
SENDERS: dict[MessageType, str] = {
    t: (
        ORCHESTRATOR
        if t in COMMAND_PAYLOADS or t.value.startswith("order.")
        else _SERVICE_OF_PREFIX[t.value.split(".")[0]]
    )
    for t in MessageType
} | {MessageType.ORDER_CREATED: "order_service"}
# In choreography there is no conductor: the order service sends the order's status
# events, and the undo commands of a saga it gives up waiting for.
CHOREOGRAPHY_SENDERS: dict[MessageType, str] = SENDERS | {
    t: "order_service" for t in MessageType if t in COMMAND_PAYLOADS or t.value.startswith("order.")
}


def exchange_for(message_type: MessageType) -> str:
    return COMMANDS_EXCHANGE if message_type in COMMAND_PAYLOADS else EVENTS_EXCHANGE
