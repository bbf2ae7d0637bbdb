"""Registers versions of the tabular scorer (`canaryflow.app.local.models.scorer`) in MLflow: the model
the third-party-server demo and tests roll out."""

from __future__ import annotations

from pathlib import Path

SCORER_CODE = Path(__file__).with_name("models") / "scorer.py"
FEATURES = ("tenure", "spend", "visits")


def register_scorer(tracking_uri: str, name: str, delay_ms: float = 0.0) -> str:
    """Log the scorer with this delay and register it as a new version of `name`; returns the version."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking_uri)
    example = pd.DataFrame([[1.0, 2.0, 3.0]], columns=list(FEATURES))
    signature = infer_signature(example, [0.0])
    with mlflow.start_run(run_name=f"{name}-delay-{delay_ms:g}ms"):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(SCORER_CODE),
            model_config={"delay_ms": delay_ms},
            signature=signature,
            registered_model_name=name,
        )
    version = info.registered_model_version
    if version is None:
        raise RuntimeError(f"MLflow registered no version of {name}")
    return str(version)
