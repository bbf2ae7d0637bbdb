"""Application layer: the rollout workflow, one DAG run by Argo Workflows or the local runner.

`dag.py` defines the steps once; `steps/` are the step functions (`canaryflow workflow step NAME`);
`argo/` renders the DAG as a WorkflowTemplate and talks to Argo; `local/` runs it on one machine.
"""
