"""Settings of the notifications (section `notify`, env prefix `CANARYFLOW_NOTIFY_`).

Channel URLs carry tokens (a Slack webhook path, an SMTP password), so they are secrets: set them
through the environment or `*_FILE` (a mounted Kubernetes Secret), never in the config file, and
`repr` never shows them.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from canaryflow.kernel.component_settings import ComponentSettings
from canaryflow.kernel.contracts.notifications import NoticeEvent


class NotificationSettings(ComponentSettings):
    """`urls`: apprise URLs (slack://, msteams://, mailtos://, json://, ...), separated by spaces or
    commas. `cloudevents_url`: an HTTP endpoint that receives every notice as a CloudEvent."""

    section: ClassVar[str] = "notify"

    urls: SecretStr | None = None
    cloudevents_url: SecretStr | None = None
    cloudevents_mode: Literal["binary", "structured"] = "binary"
    source: str = Field(default="/canaryflow/controller", min_length=1, description="CloudEvents source")
    events: list[NoticeEvent] = Field(default_factory=lambda: list(NoticeEvent))
    links: dict[str, str] = Field(
        default_factory=dict,
        description="link name -> URL template with {rollout}, {model}, {version} (e.g. report, rollout)",
    )
    queue_size: int = Field(
        default=100, ge=1, le=100_000, description="notices waiting per channel, in memory and in the outbox"
    )
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_s: float = Field(default=1.0, gt=0, le=60)
    max_backoff_s: float = Field(default=60.0, gt=0, le=3600)
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("links")
    @classmethod
    def _templates_format(cls, links: dict[str, str]) -> dict[str, str]:
        for name, template in links.items():
            try:
                template.format(rollout="r", model="m", version="1")
            except (KeyError, IndexError, ValueError) as exc:
                allowed = "{rollout}, {model}, {version}"
                raise ValueError(f"{name}: {template!r} may use only {allowed} ({exc})") from None
        return links

    def apprise_urls(self) -> list[str]:
        if self.urls is None:
            return []
        return [u for u in re.split(r"[\s,]+", self.urls.get_secret_value()) if u]
