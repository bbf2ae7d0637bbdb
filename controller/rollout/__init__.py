"""Rollouts: the pure state machine and the SQLite store that persists it."""
