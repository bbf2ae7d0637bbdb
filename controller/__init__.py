"""Application layer: the controller, which turns registry events into rollouts and keeps their record.

Webhook server (MLflow, Databricks, GitHub reviews), the SQLite rollout store, the reconcile loop that
mirrors each rollout's workflow through the state machine, notices, and the drift monitor of champions.
Built by `canaryflow/app/wiring.py`; knows nothing of `workflows` (an engine port) or the CLI.
"""
