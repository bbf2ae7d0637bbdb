"""Which registry change starts a rollout (the configured trigger rules), and the rollout's id."""

from __future__ import annotations

import hashlib

from controller.controller_settings import TriggerRule
from controller.webhooks.events import RegistryEvent


def rollout_id_for(event: RegistryEvent) -> str:
    """Deterministic from the delivery, so reprocessing one event can never make a second rollout."""
    digest = hashlib.sha256(f"{event.source}:{event.delivery_id}".encode()).hexdigest()[:8]
    return f"{event.model[:40].rstrip('-')}-v{event.version}-{digest}"


def matching_rule(event: RegistryEvent, rules: list[TriggerRule]) -> TriggerRule | None:
    for rule in rules:
        if rule.kind == "alias" and event.change == "alias_set" and event.alias == rule.alias:
            return rule
        if (
            rule.kind == "stage"
            and event.change == "stage_transitioned"
            and (event.to_stage or "").lower() == rule.stage.lower()
        ):
            return rule
        if (
            rule.kind == "tag"
            and event.change == "tag_set"
            and event.tag_key == rule.tag_key
            and event.tag_value == rule.tag_value
        ):
            return rule
    return None
