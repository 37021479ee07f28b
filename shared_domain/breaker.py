"""A circuit breaker around an outside provider (the card processor, the carrier), on
`purgatory`'s state machine. After `threshold` outages in a row it opens: calls fail at
once with CircuitOpen, which the consumer takes as an outage, so the command waits in
its retry queue (not spending its retries) instead of reaching the provider. After
`reset_seconds` one call goes through as the probe; its success closes the breaker, its
failure opens it again. Declines and refusals are answers, not outages: only the
exceptions named `outages` count."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import Context, OpenedState

from shared_domain.metrics import BREAKER_OPENED, BREAKER_REFUSED, BREAKER_STATE

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
_STATES = {"closed": CLOSED, "opened": OPEN, "half-opened": HALF_OPEN}
STATE_VALUE = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}


class CircuitOpen(ConnectionError):
    """The breaker is open: the provider is not called, the work waits (an outage)."""


class Breaker:
    def __init__(
        self,
        name: str,
        *,
        threshold: int,
        reset_seconds: float,
        outages: tuple[type[BaseException], ...],
    ) -> None:
        self.name = name
        self._reset = reset_seconds
        self._outages = outages
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=threshold, default_ttl=reset_seconds
        )
        self._factory.add_listener(self._changed)
        self._probing = False  # a call is the probe of a breaker that is not closed
        self._context: Context | None = None
        self.state = CLOSED
        self.opened_at: float | None = None
        # The last changes of state (monotonic time, state), oldest first.
        self.changes: deque[tuple[float, str]] = deque(maxlen=50)
        BREAKER_STATE.labels(name).set(STATE_VALUE[CLOSED])
        BREAKER_OPENED.labels(name)
        BREAKER_REFUSED.labels(name)

    @asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
        """Around one call to the provider (its retries included): raises CircuitOpen
        instead of running the block while the breaker is open, or while another call
        is its probe."""
        probe = self._live() != CLOSED
        if probe and self._probing:
            self._refuse()
        breaker = await self._factory.get_breaker(
            self.name, exclude=[(BaseException, self._not_an_outage)]
        )
        self._context = breaker.context
        self._probing = self._probing or probe
        try:
            async with breaker:
                yield
        except OpenedState:
            self._refuse()
        finally:
            if probe:
                self._probing = False

    def check(self) -> None:
        """Before each attempt of a call under way: once the breaker has opened, its
        retries stop reaching the provider too."""
        if self._live() == OPEN:
            self._refuse()

    def _live(self) -> str:
        # purgatory's own state: it changes during a call, its events come at the end
        return _STATES[self._context.state] if self._context is not None else CLOSED

    def detail(self) -> dict[str, Any]:
        """What the health detail shows of it."""
        detail: dict[str, Any] = {"status": "up" if self.state == CLOSED else self.state}
        if self.opened_at is not None:
            detail["opened_seconds"] = round(time.monotonic() - self.opened_at, 1)
            detail["error"] = f"{self.name} circuit breaker {self.state}: calls wait"
        return detail

    def _not_an_outage(self, exc: BaseException) -> bool:
        return not isinstance(exc, self._outages)

    def _refuse(self) -> None:
        BREAKER_REFUSED.labels(self.name).inc()
        raise CircuitOpen(f"{self.name} circuit breaker is {self._live()}; retried later")

    def _changed(self, name: str, event_type: str, event: Any) -> None:
        if event_type != "state_changed":
            return
        state = _STATES.get(getattr(event, "state", ""), CLOSED)
        if state == self.state:
            return
        if state == OPEN:
            BREAKER_OPENED.labels(name).inc()
            if self.opened_at is None:
                self.opened_at = time.monotonic()
            log.warning(
                "%s circuit breaker opened: calls wait in the retry queue; a probe in %.0fs",
                name,
                self._reset,
            )
        elif state == CLOSED:
            log.warning("%s circuit breaker closed: the probe succeeded", name)
            self.opened_at = None
        else:
            log.info("%s circuit breaker half open: the next call is the probe", name)
        self.state = state
        self.changes.append((time.monotonic(), state))
        BREAKER_STATE.labels(name).set(STATE_VALUE[state])
