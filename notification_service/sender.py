"""The delivery adapter: a simulated e-mail gateway that fails a share of attempts
(NOTIFICATION_FAILURE_RATE), each attempt drawn afresh."""

from __future__ import annotations

import random

from notification_service.domain import Notification


class DeliveryFailed(Exception):
    pass


class SimulatedSender:
    def __init__(self, failure_rate: float) -> None:
        self.failure_rate = failure_rate

    async def send(self, notification: Notification) -> None:
        if self.failure_rate and random.random() < self.failure_rate:
            raise DeliveryFailed("mail gateway unavailable")
