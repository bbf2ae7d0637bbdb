"""canaryflow: MLflow registry promotions as safe, audited GitOps canary rollouts of inference servers.

This package holds what the product needs beside its top-level folders (`controller/`, `workflows/`,
`gitops/`, `inference/`, `policies/`): the kernel (`kernel/`), the adapters (`adapters/`) and the
application's CLI and composition root (`app/`). docs/architecture.md draws the layers.
"""
