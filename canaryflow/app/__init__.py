"""Application layer: the `canaryflow` CLI and the one composition root that wires every part.

`cli.py` and `commands/` (one module per command group), `wiring.py` (settings read from the
environment, parts built and joined), `install/` (the cluster install renderer), `report/`, `demo/`
and `local/` (the embedded services a one-machine rollout runs on).
"""
