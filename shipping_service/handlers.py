"""Message handlers for shipping.create and shipping.cancel, idempotent by order. The
carrier is called outside any transaction (see the worker rhythm in
docs/architecture.md)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from shared_domain.contracts import CancelShipment, CreateShipment, Envelope, MessageType, utcnow
from shared_domain.messaging.consumer import Handler
from shared_domain.runtime import Runtime
from shared_domain.worker import handle_command, refuse_other_saga
from shipping_service import repository
from shipping_service.carrier import CarrierDown, CarrierUnavailable, build_carrier
from shipping_service.domain import Shipment, ShipmentStatus
from shipping_service.messages import command_reply, compensation_reply
from shipping_service.settings import Settings

log = logging.getLogger(__name__)


def build_handlers(rt: Runtime[Settings]) -> Mapping[MessageType, Handler]:
    breaker = (  # around a real carrier: the simulated one has no outages of its own
        rt.breaker("carrier", (CarrierDown,)) if rt.settings.shipping_carrier == "http" else None
    )
    carrier = build_carrier(rt.settings, rt.failure_rates, breaker)
    rt.on_stop(carrier.close)

    async def book(envelope: Envelope, command: CreateShipment) -> Shipment:
        address = command.shipping_address.model_dump()
        try:
            booking = await carrier.book(envelope.order_id, address)
        except CarrierUnavailable as exc:
            reason = f"carrier_unavailable: {exc}"
            shipment = Shipment.refused(envelope.order_id, reason, address, utcnow())
        else:
            shipment = Shipment.booked(
                envelope.order_id, booking.carrier, booking.tracking_number, address, utcnow()
            )
        shipment.customer_id = command.customer_id
        return shipment

    async def create(envelope: Envelope, command: CreateShipment) -> None:
        await handle_command(
            rt,
            envelope,
            log,
            find=lambda conn: repository.find(conn, envelope.order_id),
            work=lambda: book(envelope, command),
            record=repository.record,
            reply=command_reply,
            done=lambda s: f"shipment {s.id} {s.status} {s.failure_reason or s.tracking_number}",
        )

    async def cancel(envelope: Envelope, command: CancelShipment) -> None:
        async with rt.uow(envelope) as uow:
            shipment = await repository.get_for_update(uow.conn, envelope.order_id)
            refuse_other_saga(envelope, shipment, "shipment")
            if shipment is None:
                # Cancel before any booking: a tombstone, so that a late booking is refused.
                tombstone = Shipment.cancelled_before_creation(envelope.order_id, utcnow())
                tombstone.saga_id = envelope.saga_id
                shipment = await repository.record(uow.conn, tombstone)
                if shipment is tombstone:
                    uow.log_on_commit(
                        log,
                        "order %s: cancel before any shipment, recorded as cancelled",
                        envelope.order_id,
                    )
            if shipment.status is ShipmentStatus.CREATED:  # booked, maybe just now
                shipment.cancel(utcnow())
                await repository.save(uow.conn, shipment)
                uow.log_on_commit(
                    log,
                    "order %s: shipment %s cancelled (%s)",
                    envelope.order_id,
                    shipment.id,
                    command.reason,
                )
            uow.emit(compensation_reply(envelope, shipment))
            await uow.commit()

    return {MessageType.SHIPPING_CREATE: create, MessageType.SHIPPING_CANCEL: cancel}
