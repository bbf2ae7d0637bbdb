"""What every route group of the controller's API is given: built parts, never settings to build from."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from controller.controller_settings import ControllerSettings
from controller.drift_monitor import DriftMonitor
from controller.notice_log import NoticeLog
from controller.observability import ControllerMetrics
from controller.rollout.store import RolloutStore


@dataclass
class ControllerContext:
    settings: ControllerSettings
    store: RolloutStore
    metrics: ControllerMetrics
    wake: Callable[[], None] = lambda: None
    workflow_link: Callable[[str], str] | None = None
    clock: Callable[[], float] = time.time
    drift: DriftMonitor | None = None
    notice_log: NoticeLog | None = None  # the notifications sent (None: no notifier)
