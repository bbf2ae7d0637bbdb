"""Kernel layer: the pure core, with no I/O: domain types, ports, statistics, the rollout state machine.

`contracts/` holds every name, schema and code two packages must agree on (metric families, step
names, rollout phases, failure causes, the routing file, the prediction log); `analysis/` judges a
canary, `drift_statistics.py` a champion's traffic, `rollout.py` moves a rollout between phases.
Imports nothing of ours outside the kernel (tests/architecture/test_layers.py).
"""
