"""Peer servers the inference benchmark measures beside `canaryflow serve` (--peer NAME)."""
