"""The saga console: its pages (static files, no build step), and the figures of its
overview."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.staticfiles import StaticFiles

from saga_orchestrator import views
from saga_orchestrator.domain import SagaStatus, Step
from shared_domain.auth import OPERATOR
from shared_domain.http import JsonResponse, envelope
from shared_domain.runtime import RuntimeDep

PAGES = Path(__file__).parent / "console"

router = APIRouter(prefix="/console", tags=["console"], dependencies=[OPERATOR])


@router.get("/overview")
async def overview(request: Request, rt: RuntimeDep) -> JsonResponse:
    figures = await views.overview(
        rt.engine, [s.value for s in SagaStatus], [s.value for s in Step]
    )
    return envelope(request, data=figures, message="the console's overview")


def pages() -> StaticFiles:
    return StaticFiles(directory=PAGES, html=True)
