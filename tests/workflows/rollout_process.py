"""A local-runner process for the restart test: reconciles one rollout until it is killed."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from canaryflow.kernel.types import RolloutSpec
from policies.model import Policy
from tests.workflows.rollout_support import local_runner, step_context


def main(raw: str) -> None:
    args = json.loads(raw)
    policy = Policy.model_validate(args["policy"])
    context = step_context(
        Path(args["remote"]), Path(args["workdir"]), args["tracking_uri"], args["metrics_url"], policy
    )
    runner = local_runner(Path(args["db"]), context, policy)
    name = runner.submit(RolloutSpec.model_validate(args["spec"]))
    while True:
        runner.reconcile(name)
        time.sleep(0.05)


if __name__ == "__main__":
    main(sys.argv[1])
