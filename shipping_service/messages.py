"""The replies the shipping service sends, built from what it recorded: a repeated
command gets the same answer as the first."""

from __future__ import annotations

from shared_domain.contracts import (
    Envelope,
    MessageType,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentFailed,
)
from shipping_service.domain import Shipment, ShipmentStatus

SOURCE = "shipping_service"


def command_reply(cause: Envelope, shipment: Shipment) -> Envelope:
    """The outcome of `shipping.create` (a shipment cancelled before it was booked
    refuses the late booking)."""
    if shipment.status is ShipmentStatus.FAILED or shipment.carrier is None:
        return cause.follow(
            MessageType.SHIPPING_FAILED,
            ShipmentFailed(reason=shipment.failure_reason or "failed"),
            SOURCE,
        )
    return cause.follow(
        MessageType.SHIPPING_CREATED,
        ShipmentCreated(
            shipment_id=shipment.id,
            carrier=shipment.carrier,
            tracking_number=shipment.tracking_number or "",
        ),
        SOURCE,
    )


def compensation_reply(cause: Envelope, shipment: Shipment) -> Envelope:
    """The outcome of `shipping.cancel`."""
    return cause.follow(
        MessageType.SHIPPING_CANCELLED, ShipmentCancelled(shipment_id=shipment.id), SOURCE
    )
