"""Message handlers for inventory.reserve and inventory.release, idempotent by order:
open a unit of work, lock, let the domain decide, record, emit, commit."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from inventory_service import domain, repository
from inventory_service.domain import ReservationStatus
from inventory_service.messages import command_reply, compensation_reply
from inventory_service.settings import Settings
from shared_domain.contracts import (
    Envelope,
    MessageType,
    ReleaseInventory,
    ReserveInventory,
    utcnow,
)
from shared_domain.db import UnitOfWork
from shared_domain.messaging.consumer import Handler
from shared_domain.runtime import Runtime
from shared_domain.worker import refuse_other_saga

log = logging.getLogger(__name__)


async def preload(uow: UnitOfWork, messages: list[tuple[Envelope, object]]) -> None:
    """A batch locks every row its commands change before the first one is handled:
    handled one after another, its commands would lock the products in the batch's
    order, and two replicas' batches could deadlock."""
    reserved = {
        line.product_id
        for _, command in messages
        if isinstance(command, ReserveInventory)
        for line in command.items
    }
    released = {e.order_id for e, command in messages if isinstance(command, ReleaseInventory)}
    await repository.lock_for_batch(uow.conn, sorted(reserved), sorted(released))


def build_handlers(rt: Runtime[Settings]) -> Mapping[MessageType, Handler]:
    async def reserve(envelope: Envelope, command: ReserveInventory) -> None:
        async with rt.uow(envelope) as uow:
            reservation = await repository.reservation_for_update(uow.conn, envelope.order_id)
            refuse_other_saga(envelope, reservation, "reservation")
            if reservation is not None:
                uow.log_on_commit(
                    log,
                    "inventory.reserve for order %s already handled (%s); re-sending outcome",
                    envelope.order_id,
                    reservation.status,
                )
            else:
                wanted = domain.wanted_quantities(
                    [(line.product_id, line.quantity) for line in command.items]
                )
                products = await repository.products_for_update(uow.conn, list(wanted))
                reservation = domain.reserve(envelope.order_id, wanted, products, utcnow())
                reservation.customer_id = command.customer_id
                reservation.saga_id = envelope.saga_id
                changed = (
                    [products[p] for p in wanted]
                    if reservation.status is ReservationStatus.RESERVED
                    else []
                )
                await repository.add_reservation(uow.conn, reservation, changed)
                uow.log_on_commit(
                    log,
                    "order %s: reservation %s %s %s",
                    envelope.order_id,
                    reservation.id,
                    reservation.status,
                    reservation.failure_reason or {str(k): v for k, v in wanted.items()},
                )
            uow.emit(command_reply(envelope, reservation))
            await uow.commit()

    async def release(envelope: Envelope, command: ReleaseInventory) -> None:
        async with rt.uow(envelope) as uow:
            reservation = await repository.reservation_for_update(uow.conn, envelope.order_id)
            refuse_other_saga(envelope, reservation, "reservation")
            now = utcnow()
            if reservation is None:
                reservation = domain.cancelled_before_reserve(envelope.order_id, now)
                reservation.saga_id = envelope.saga_id
                await repository.add_reservation(uow.conn, reservation)
                uow.log_on_commit(
                    log,
                    "order %s: release before any reservation, recorded as cancelled",
                    envelope.order_id,
                )
            elif reservation.status is ReservationStatus.RESERVED:
                products = await repository.products_for_update(uow.conn, list(reservation.items))
                domain.release(reservation, products, now)
                await repository.save_reservation(uow.conn, reservation, list(products.values()))
                uow.log_on_commit(
                    log,
                    "order %s: reservation %s released (%s)",
                    envelope.order_id,
                    reservation.id,
                    command.reason,
                )
            uow.emit(compensation_reply(envelope, reservation))
            await uow.commit()

    return {MessageType.INVENTORY_RESERVE: reserve, MessageType.INVENTORY_RELEASE: release}
