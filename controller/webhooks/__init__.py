"""Inbound webhooks: signature checks and payload parsing per sender, one file per sender."""

from controller.webhooks.events import ApprovalEvent, RegistryEvent, WebhookRejected

__all__ = ["ApprovalEvent", "RegistryEvent", "WebhookRejected"]
