"""Adapter layer: the backends behind the kernel's ports, one file per backend and one registry line.

`registry/` (MLflow), `metrics/` (Prometheus, scrape), `readiness/` (Kubernetes, HTTP), `notify/`
(apprise, CloudEvents, the outbox's delivery), `predictions/` (prediction-log readers), `database/`
(SQLite, PostgreSQL).
An adapter imports the kernel only, never another adapter.
"""
