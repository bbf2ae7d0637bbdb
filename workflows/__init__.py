"""Application layer: the rollout workflow, one DAG that Argo Workflows or the local runner runs."""
