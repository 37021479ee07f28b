"""The delivery adapter: a simulated e-mail gateway that fails a share of attempts
(NOTIFICATION_FAILURE_RATE), each attempt drawn afresh."""

from __future__ import annotations

import random

from notification_service.domain import Notification
from shared_domain.failure_rates import FailureRate


class DeliveryFailed(Exception):
    pass


class SimulatedSender:
    def __init__(self, failure_rate: float | FailureRate) -> None:
        self._rate = FailureRate.of("notification", failure_rate)

    @property
    def failure_rate(self) -> float:
        return self._rate.value

    async def send(self, notification: Notification) -> None:
        if self.failure_rate and random.random() < self.failure_rate:
            raise DeliveryFailed("mail gateway unavailable")
