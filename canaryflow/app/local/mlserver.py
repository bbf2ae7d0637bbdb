"""Seldon MLServer's environment on this machine: what the `seldonio/mlserver` image holds.

MLServer is a server none of canaryflow's code is in: it installs from PyPI into its own virtual
environment (MLServer 1.7.1 needs fastapi < 0.116, which canaryflow's own environment does not
satisfy), as its container image holds it, and runs the container canaryflow renders for the
`mlserver` profile (`gitops.profiles.mlserver`) through the local kubelet, unchanged but for the
image's paths and the one setting below.
"""

from __future__ import annotations

from pathlib import Path

from canaryflow.app.local.kubelet import ImageEnvironment
from gitops.profiles.mlserver import IMAGE

# What its image would hold; `make mlserver-env` installs exactly this file into `.venv-mlserver/`.
REQUIREMENTS_FILE = Path(__file__).with_name("mlserver-requirements.txt")
DEFAULT_ENV = Path(".venv-mlserver")
INSTALL_HINT = f"make mlserver-env (pip install -r {REQUIREMENTS_FILE.name} into {DEFAULT_ENV}/)"

# MLServer 1.7.1's parallel inference pool cannot start its workers under this machine's CPython 3.11
# ("There is no current event loop in thread 'MainThread'" in every worker, which is restarted for
# ever and the model never loads); with the pool off, inference runs in the server process, as the
# image's own environment variable allows.
LOCAL_SETTINGS = {"MLSERVER_PARALLEL_WORKERS": "0"}


class MLServerNotInstalled(RuntimeError):
    pass


def mlserver_environment(env: Path) -> tuple[str, ImageEnvironment]:
    """(image repository, its environment here) for the local kubelet."""
    if not (env / "bin" / "mlserver").exists():
        raise MLServerNotInstalled(f"MLServer is not installed in {env}; {INSTALL_HINT}")
    repository = IMAGE.split(":", 1)[0]
    return repository, ImageEnvironment(bin_dir=env / "bin", env=dict(LOCAL_SETTINGS))
