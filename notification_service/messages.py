"""The replies the notification service sends, built from what it recorded: a repeated
command gets the same answer as the first."""

from __future__ import annotations

from notification_service.domain import Notification, NotificationStatus
from shared_domain.contracts import Envelope, MessageType, NotificationFailed, NotificationSent

SOURCE = "notification_service"


def command_reply(cause: Envelope, notification: Notification) -> Envelope:
    """The outcome of `notification.send`."""
    n = notification
    if n.status is NotificationStatus.FAILED:
        return cause.follow(
            MessageType.NOTIFICATION_FAILED,
            NotificationFailed(kind=n.kind, reason=n.error or "failed", attempts=n.attempts),
            SOURCE,
        )
    return cause.follow(
        MessageType.NOTIFICATION_SENT,
        NotificationSent(notification_id=n.id, kind=n.kind, attempts=n.attempts),
        SOURCE,
    )
