"""Rollout notifications: chat and mail through apprise, CloudEvents for machines, delivered off the
reconcile loop with retries (`delivery.BackgroundNotifier`, the `Notifier` port)."""

from canaryflow.adapters.notify.base import Channel, DeliveryFailed, Outbox
from canaryflow.adapters.notify.delivery import BackgroundNotifier, ChannelStats
from canaryflow.adapters.notify.factory import notifier_from_settings
from canaryflow.adapters.notify.notify_settings import NotificationSettings

__all__ = [
    "BackgroundNotifier",
    "Channel",
    "ChannelStats",
    "DeliveryFailed",
    "NotificationSettings",
    "Outbox",
    "notifier_from_settings",
]
