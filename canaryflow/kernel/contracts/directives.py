"""What a person asked of a running rollout that the workflow's own steps must see, carried as a tag on
the canary's registry version: the one store both the controller and a step's pod reach, whichever
engine runs the workflow (an Argo pod cannot be told anything else while it runs).

- `canaryflow.promote_now`: skip the rest of the analysis. Every commit, wait and analysis step
  (and the bake) of that rollout that starts, or looks again, after it is set ends at once as
  `skipped: <note>`, so the workflow goes on to the approval gate (if any) and the promotion.
- `canaryflow.retried`: a failed step runs again; its commit at `weight` carries the note (who and
  why) as its `Reason:` trailer, so the GitOps history says who retried it.

The value is this model as JSON and names its rollout: a tag left by an earlier rollout of the same
version is not obeyed.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from canaryflow.kernel.guarded_input import InputRefused, parse_json

TAG_PROMOTE_NOW = "canaryflow.promote_now"
TAG_RETRIED = "canaryflow.retried"


class Directive(BaseModel):
    model_config = ConfigDict(frozen=True)

    rollout_id: str
    note: str = Field(max_length=1000, description="who asked and why: `promote by alice: hotfix`")
    weight: int | None = Field(default=None, description="retried: the step's traffic weight")


def directive_for(tags: Mapping[str, str], key: str, rollout_id: str) -> Directive | None:
    """The directive under `key` if it is this rollout's (an unreadable value counts as none)."""
    raw = tags.get(key)
    if not raw:
        return None
    try:  # anyone who may tag a registry version wrote it: read it as hostile input
        found = Directive.model_validate(parse_json(raw, f"registry tag {key}", max_bytes=8192))
    except (InputRefused, ValidationError):
        return None
    return found if found.rollout_id == rollout_id else None
