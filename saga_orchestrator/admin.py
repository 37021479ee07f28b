"""The admin key check every mutating admin route depends on."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import Depends, Request

from saga_orchestrator.services import Actor
from shared_domain.http import ApiError, request_id
from shared_domain.runtime import RuntimeDep

log = logging.getLogger(__name__)

ADMIN_KEY_HEADER = "X-Admin-Key"
ACTOR_HEADER = "X-Admin-Actor"  # optional: who is acting, for the audit log


async def require_admin(request: Request, rt: RuntimeDep) -> Actor:
    address = request.client.host if request.client else "unknown"
    configured = rt.settings.admin_api_key
    if configured is None:
        raise ApiError(
            403,
            "admin_disabled",
            "admin operations are disabled: set ADMIN_API_KEY on the orchestrator to enable them",
        )
    given = request.headers.get(ADMIN_KEY_HEADER)
    if not given:
        raise ApiError(
            403, "admin_key_required", f"this admin operation needs the {ADMIN_KEY_HEADER} header"
        )
    if not hmac.compare_digest(given.encode(), configured.get_secret_value().encode()):
        log.warning(
            "admin request %s %s from %s refused: wrong key",
            request.method,
            request.url.path,
            address,
        )
        raise ApiError(403, "admin_key_invalid", f"the {ADMIN_KEY_HEADER} given is not valid")
    name = (request.headers.get(ACTOR_HEADER) or "admin").strip()[:100] or "admin"
    return Actor(name=name, address=address, request_id=request_id(request))


AdminDep = Annotated[Actor, Depends(require_admin)]
