"""A provider's REST API as the workers call it (the card processor, the carrier): POST
JSON with an `Idempotency-Key`, so that a retried request does the work once. A 5xx,
a timeout or a connection error is tried again with backoff, then raised as the
caller's outage exception; every call goes through the provider's circuit breaker
when there is one."""

from __future__ import annotations

import httpx

from shared_domain.breaker import Breaker
from shared_domain.retry import call_retrying


class OutboundApi:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float,
        *,
        down: type[Exception],
        attempts: int = 3,
        backoff: float = 0.2,
        breaker: Breaker | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
        )
        self._down = down
        self._attempts = attempts
        self._backoff = backoff
        self._breaker = breaker

    async def post(self, path: str, key: str, body: dict[str, object]) -> httpx.Response:
        """The provider's answer below 500; `down` once the tries are used up, or
        CircuitOpen while the breaker is open."""
        if self._breaker is None:
            return await self._retrying(path, key, body)
        async with self._breaker.call():
            return await self._retrying(path, key, body)

    async def close(self) -> None:
        await self._client.aclose()

    async def _retrying(self, path: str, key: str, body: dict[str, object]) -> httpx.Response:
        async for attempt in call_retrying(self._attempts, self._backoff, self._down):
            with attempt:
                return await self._once(path, key, body)
        raise AssertionError("unreachable")

    async def _once(self, path: str, key: str, body: dict[str, object]) -> httpx.Response:
        if self._breaker is not None:
            self._breaker.check()  # opened meanwhile: the retries stop too
        try:
            response = await self._client.post(path, json=body, headers={"Idempotency-Key": key})
        except httpx.HTTPError as exc:
            raise self._down(f"{path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise self._down(f"{path}: HTTP {response.status_code}")
        return response


def json_object(response: httpx.Response) -> dict[str, object]:
    """The answer's JSON object, or {} when it has none."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
