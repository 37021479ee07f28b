"""The replies the inventory service sends, built from what it recorded: a repeated
command gets the same answer as the first."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from inventory_service.domain import ORDER_CANCELLED, Reservation, ReservationStatus
from shared_domain.contracts import (
    Envelope,
    InventoryFailed,
    InventoryReleased,
    InventoryReserved,
    MessageType,
)

SOURCE = "inventory_service"


def command_reply(cause: Envelope, reservation: Reservation) -> Envelope:
    """The outcome of `inventory.reserve` (a release that came first refuses the late
    reservation)."""
    if reservation.status is ReservationStatus.FAILED:
        detail: dict[str, Any] = reservation.failure_detail
        return cause.follow(
            MessageType.INVENTORY_FAILED,
            InventoryFailed(
                reason=reservation.failure_reason or "failed",
                product_id=UUID(str(detail["product_id"])) if detail.get("product_id") else None,
                requested=detail.get("requested"),
                available=detail.get("available"),
            ),
            SOURCE,
        )
    if reservation.status is ReservationStatus.CANCELLED:
        return cause.follow(
            MessageType.INVENTORY_FAILED, InventoryFailed(reason=ORDER_CANCELLED), SOURCE
        )
    # reserved, or reserved and since released: the outcome of the reserve was a success
    return cause.follow(
        MessageType.INVENTORY_RESERVED, InventoryReserved(reservation_id=reservation.id), SOURCE
    )


def compensation_reply(cause: Envelope, reservation: Reservation) -> Envelope:
    """The outcome of `inventory.release`."""
    return cause.follow(
        MessageType.INVENTORY_RELEASED, InventoryReleased(reservation_id=reservation.id), SOURCE
    )
