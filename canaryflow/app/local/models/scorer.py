"""A small tabular scorer logged to MLflow as code (MLflow's models-from-code): the model a third-party
server (MLServer's MLflow runtime) loads from the registry in the demo and the tests.

It scores rows with a fixed linear model. `model_config` sets `delay_ms`, the extra time each request
takes: a version with a larger delay is the slower release that a rollout must catch, judged only on the
serving server's own metrics. Logged as code rather than pickled, so the server's own environment (its
own MLflow and Python packages) loads it without canaryflow installed.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class Scorer(PythonModel):
    def load_context(self, context: Any) -> None:
        config = context.model_config or {}
        self.delay_s = float(config.get("delay_ms", 0)) / 1000.0
        self.coef = np.asarray(config.get("coef", [0.5, -0.25, 1.0]), dtype="float64")

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        if self.delay_s:
            time.sleep(self.delay_s)
        rows = np.asarray(model_input, dtype="float64")
        return rows @ self.coef[: rows.shape[1]]


set_model(Scorer())
