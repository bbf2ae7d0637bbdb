"""People: Slack, Microsoft Teams, email, a generic JSON webhook, ... through apprise, one URL each.

apprise knows each service's payload and auth (slack://, msteams://, mailtos://, json://); canaryflow
sends a title (the headline) and a plain-text body (reason, each metric's verdict, links). The kind of
event sets apprise's notification type, which chat services show as a colour.
"""

from __future__ import annotations

import apprise

from canaryflow.adapters.notify.base import DeliveryFailed
from canaryflow.kernel.contracts.notifications import NoticeEvent, RolloutNotice

_TYPES = {
    NoticeEvent.PROMOTED: apprise.NotifyType.SUCCESS,
    NoticeEvent.ROLLED_BACK: apprise.NotifyType.WARNING,
    NoticeEvent.FAILED: apprise.NotifyType.FAILURE,
    NoticeEvent.DRIFT_DETECTED: apprise.NotifyType.WARNING,
}


class AppriseChannel:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self._apprise = apprise.Apprise()
        if not self._apprise.add(url):
            # The URL itself may carry a token: name only its scheme.
            raise ValueError(f"notify.urls: {url.split('://', 1)[0]}:// is not a URL apprise understands")
        plugin = self._apprise[0]
        plugin.socket_read_timeout = plugin.socket_connect_timeout = timeout_s
        self._name = str(plugin.url(privacy=True)).split("?", 1)[0]

    def describe(self) -> str:
        return self._name

    def send(self, notice: RolloutNotice) -> None:
        ok = self._apprise.notify(
            title=f"canaryflow: {notice.headline()}",
            body=notice.summary() or notice.headline(),
            notify_type=_TYPES.get(notice.event, apprise.NotifyType.INFO),
            body_format=apprise.NotifyFormat.TEXT,
        )
        if not ok:
            raise DeliveryFailed(f"{self._name}: apprise could not deliver (see its log)")
