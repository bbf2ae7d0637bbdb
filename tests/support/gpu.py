"""What the GPU-only test modules share. They run on the GPU machine with `--noconftest` (only torch,
sentence-transformers and this package installed there), so this module imports nothing from a
conftest.

    CANARYFLOW_TEST_MODEL_DIR=.assets/minilm-fp16 python3 -m pytest --noconftest -m gpu tests/inference
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# A module's `pytestmark`: selected by `-m gpu`, skipped where there is no CUDA device (CI).
GPU_ONLY = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def model_dir() -> Path:
    """The MiniLM folder the GPU tests load: the fp16 copy carried to the GPU machine, else the
    packaged one."""
    if os.environ.get("CANARYFLOW_TEST_MODEL_DIR"):
        return Path(os.environ["CANARYFLOW_TEST_MODEL_DIR"])
    from canaryflow.adapters.model_assets import minilm_path

    return minilm_path()
