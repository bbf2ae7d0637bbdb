"""Why a check failed: the `cause` field of every check in a verdict (JSON, a number).

The judge (`canaryflow.kernel.analysis.judge`) sets it per look; the wording of a check
(`canaryflow.kernel.analysis.wording`) and anyone reading a stored verdict key on it.
"""

from __future__ import annotations

from enum import IntEnum


class FailureCause(IntEnum):
    NONE = 0  # the check has not failed
    CUMULATIVE = 1  # everything since the warm-up puts the canary beyond the tolerance
    LATEST_WINDOW = 2  # the latest completed change window alone does
    TREND = 3  # the canary's excess has grown since the earlier windows
