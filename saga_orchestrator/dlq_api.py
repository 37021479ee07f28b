"""Dead-letter queues over HTTP: list, inspect, replay, discard (reading needs the operator
role, and the last two the admin's, and are audited)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Query, Request

from shared_domain.admin import audit
from shared_domain.auth import OPERATOR, Actor, AdminDep
from shared_domain.http import ApiError, JsonResponse, NotFound, envelope
from shared_domain.messaging.dead_letters import DeadLetter, DeadLetters, UnknownQueue
from shared_domain.runtime import RuntimeDep

log = logging.getLogger(__name__)
router = APIRouter(prefix="/dlq", tags=["dead letters"], dependencies=[OPERATOR])


@asynccontextmanager
async def _broker_errors() -> AsyncIterator[None]:
    try:
        yield
    except UnknownQueue as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except ApiError:
        raise
    except Exception as exc:
        log.warning("dead-letter operation failed: %s", exc)
        raise ApiError(
            503, "broker_unavailable", f"RabbitMQ is not available: {type(exc).__name__}: {exc}"
        ) from None


def _summary(letter: DeadLetter) -> str:
    order = f" for order {letter.order_id}" if letter.order_id else ""
    return f"{letter.type or 'message'}{order} ({letter.reason})"


@router.get("")
async def list_queues(request: Request, rt: RuntimeDep) -> JsonResponse:
    async with _broker_errors():
        queues = await DeadLetters(rt.broker).counts()
    total = sum(q["messages"] or 0 for q in queues)
    return envelope(request, data=queues, message=f"{total} dead-lettered message(s)")


@router.get("/{queue}/messages")
async def peek(
    queue: str, request: Request, rt: RuntimeDep, limit: int = Query(20, ge=1, le=500)
) -> JsonResponse:
    async with _broker_errors():
        letters, total = await DeadLetters(rt.broker).peek(queue, limit)
    return envelope(
        request,
        data={"queue": queue, "total": total, "items": [m.to_dict() for m in letters]},
        message=f"{len(letters)} of {total} message(s) in {queue}",
    )


@router.get("/{queue}/messages/{key}")
async def inspect(queue: str, key: str, request: Request, rt: RuntimeDep) -> JsonResponse:
    async with _broker_errors():
        letter = await DeadLetters(rt.broker).find(queue, key)
    if letter is None:
        raise NotFound(f"message in {queue}", key)
    return envelope(request, data=letter.to_dict(), message=_summary(letter))


async def _act(
    rt: RuntimeDep, request: Request, actor: Actor, queue: str, key: str, action: str
) -> JsonResponse:
    letters = DeadLetters(rt.broker)
    async with _broker_errors():
        op = letters.replay if action == "replay" else letters.discard
        letter = await op(queue, key)
    target = f"{queue}/{key}"
    if letter is None:
        await audit(rt, f"dlq.{action}", target, actor, "not_found", None)
        raise NotFound(f"message in {queue}", key)
    await audit(rt, f"dlq.{action}", target, actor, "done", _summary(letter))
    verb = f"replayed into {letter.source_queue}" if action == "replay" else "discarded"
    return envelope(request, data=letter.to_dict(), message=f"{_summary(letter)} {verb}")


@router.post("/{queue}/messages/{key}/replay")
async def replay(
    queue: str, key: str, request: Request, rt: RuntimeDep, actor: AdminDep
) -> JsonResponse:
    return await _act(rt, request, actor, queue, key, "replay")


@router.post("/{queue}/messages/{key}/discard")
async def discard(
    queue: str, key: str, request: Request, rt: RuntimeDep, actor: AdminDep
) -> JsonResponse:
    return await _act(rt, request, actor, queue, key, "discard")


@router.post("/{queue}/replay")
async def replay_all(
    queue: str,
    request: Request,
    rt: RuntimeDep,
    actor: AdminDep,
    limit: int = Query(100, ge=1, le=10_000),
) -> JsonResponse:
    async with _broker_errors():
        letters = await DeadLetters(rt.broker).replay_all(queue, limit)
    await audit(rt, "dlq.replay_all", queue, actor, "done", f"{len(letters)} message(s) replayed")
    return envelope(
        request,
        data={"queue": queue, "replayed": [m.to_dict() for m in letters]},
        message=f"{len(letters)} message(s) replayed from {queue}",
    )
