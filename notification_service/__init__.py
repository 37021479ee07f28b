"""Notification service: tells customers about their orders. Non-critical to the saga."""
