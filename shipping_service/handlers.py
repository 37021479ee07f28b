"""shipping.create and shipping.cancel, idempotent by order."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from shared_domain.contracts import (
    CancelShipment,
    CreateShipment,
    Envelope,
    MessageType,
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentFailed,
    utcnow,
)
from shared_domain.messaging.consumer import Handler
from shared_domain.runtime import Runtime
from shipping_service import repository
from shipping_service.carrier import CarrierUnavailable, SimulatedCarrier
from shipping_service.domain import Shipment, ShipmentStatus
from shipping_service.settings import Settings

log = logging.getLogger(__name__)
SOURCE = "shipping_service"


def create_reply(cause: Envelope, shipment: Shipment) -> Envelope:
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


def build_handlers(rt: Runtime[Settings]) -> Mapping[MessageType, Handler]:
    carrier = SimulatedCarrier(rt.settings.shipping_failure_rate)

    async def create(envelope: Envelope, command: CreateShipment) -> None:
        async with rt.uow(envelope) as uow:
            shipment = await repository.get_for_update(uow.conn, envelope.order_id)
            if shipment is not None:
                log.info(
                    "shipping.create for order %s already handled (%s); re-sending outcome",
                    envelope.order_id,
                    shipment.status,
                )
            else:
                address = command.shipping_address.model_dump()
                try:
                    booking = await carrier.book(envelope.order_id)
                except CarrierUnavailable as exc:
                    shipment = Shipment.refused(
                        envelope.order_id, f"carrier_unavailable: {exc}", address, utcnow()
                    )
                else:
                    shipment = Shipment.booked(
                        envelope.order_id,
                        booking.carrier,
                        booking.tracking_number,
                        address,
                        utcnow(),
                    )
                await repository.add(uow.conn, shipment)
                log.info(
                    "order %s: shipment %s %s %s",
                    envelope.order_id,
                    shipment.id,
                    shipment.status,
                    shipment.failure_reason or shipment.tracking_number,
                )
            uow.emit(create_reply(envelope, shipment))
            await uow.commit()

    async def cancel(envelope: Envelope, command: CancelShipment) -> None:
        async with rt.uow(envelope) as uow:
            shipment = await repository.get_for_update(uow.conn, envelope.order_id)
            if shipment is None:
                shipment = Shipment.cancelled_before_creation(envelope.order_id, utcnow())
                await repository.add(uow.conn, shipment)
            elif shipment.status is ShipmentStatus.CREATED:
                shipment.cancel(utcnow())
                await repository.save(uow.conn, shipment)
                log.info(
                    "order %s: shipment %s cancelled (%s)",
                    envelope.order_id,
                    shipment.id,
                    command.reason,
                )
            uow.emit(
                envelope.follow(
                    MessageType.SHIPPING_CANCELLED,
                    ShipmentCancelled(shipment_id=shipment.id),
                    SOURCE,
                )
            )
            await uow.commit()

    return {MessageType.SHIPPING_CREATE: create, MessageType.SHIPPING_CANCEL: cancel}
