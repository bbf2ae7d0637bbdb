"""Which channels the settings name, behind the `Notifier` port; one registry line per backend."""

from __future__ import annotations

from collections.abc import Callable

from canaryflow.adapters.notify.base import Channel, Outbox
from canaryflow.adapters.notify.delivery import BackgroundNotifier, Settled
from canaryflow.adapters.notify.notify_settings import NotificationSettings


def _apprise(settings: NotificationSettings) -> list[Channel]:
    from canaryflow.adapters.notify.apprise_channel import AppriseChannel

    return [AppriseChannel(url, settings.timeout_s) for url in settings.apprise_urls()]


def _cloudevents(settings: NotificationSettings) -> list[Channel]:
    if settings.cloudevents_url is None:
        return []
    from canaryflow.adapters.notify.cloudevents_channel import CloudEventsChannel

    url = settings.cloudevents_url.get_secret_value()
    return [CloudEventsChannel(url, settings.cloudevents_mode, settings.source, settings.timeout_s)]


CHANNELS: dict[str, Callable[[NotificationSettings], list[Channel]]] = {
    "apprise": _apprise,
    "cloudevents": _cloudevents,
}


def notifier_from_settings(
    settings: NotificationSettings,
    outbox: Callable[[], Outbox] | None = None,
    on_settled: Settled | None = None,
) -> BackgroundNotifier | None:
    """The notifier over every configured channel; None when the settings name none. With `outbox` (it
    opens the file beside the controller's store) queued notices survive a restart; without, they live
    in memory only."""
    channels = [channel for build in CHANNELS.values() for channel in build(settings)]
    if not channels:
        return None
    return BackgroundNotifier(
        channels,
        events=settings.events,
        queue_size=settings.queue_size,
        max_attempts=settings.max_attempts,
        backoff_s=settings.backoff_s,
        max_backoff_s=settings.max_backoff_s,
        outbox=outbox,
        on_settled=on_settled,
    )
