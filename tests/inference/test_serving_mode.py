"""How many GPU streams and batches in flight a setting resolves to (no GPU needed: the device is
named, not probed)."""

from __future__ import annotations

from inference.server_settings import InferenceSettings


def test_the_engine_runs_two_streams_and_a_replica_one() -> None:
    engine = InferenceSettings(device="cuda", workers=8, engine=True)
    assert engine.resolved_gpu_streams() == 2
    assert engine.resolved_concurrent_batches() == 4, "two batches in flight per stream"
    replica = InferenceSettings(device="cuda", workers=8, engine=False)
    assert replica.resolved_gpu_streams() == 1 and replica.resolved_concurrent_batches() == 2


def test_a_cpu_server_runs_one_batch_at_a_time_and_explicit_values_win() -> None:
    assert InferenceSettings(device="cpu", workers=4, engine=True).resolved_concurrent_batches() == 1
    streams = InferenceSettings(device="cuda", workers=8, gpu_streams=3, concurrent_batches=5)
    assert streams.resolved_gpu_streams() == 3 and streams.resolved_concurrent_batches() == 5


def test_the_engine_is_the_default_on_a_gpu_and_replicas_on_a_cpu() -> None:
    """One copy of the weights serves what 8 replicas serve on a GPU (bench/inference.md), so a
    GPU server with several workers runs the engine unless told otherwise; a CPU one replicas."""
    assert InferenceSettings(device="cuda", workers=8).resolved_engine() is True
    assert InferenceSettings(device="cuda:1", workers=2).resolved_engine() is True
    assert InferenceSettings(device="cpu", workers=8).resolved_engine() is False
    assert InferenceSettings(device="cuda", workers=1).resolved_engine() is False, "one process serves"
    assert InferenceSettings(device="cuda", workers=8, engine=False).resolved_engine() is False
    assert InferenceSettings(device="cpu", workers=8, engine=True).resolved_engine() is True
    gpu_default = InferenceSettings(device="cuda", workers=8)
    assert gpu_default.resolved_gpu_streams() == 2, "the default engine runs two streams"


def test_a_gpu_engine_batches_1024_texts_and_everything_else_256() -> None:
    """The engine's per-batch cost in its one interpreter caps it at many-text requests, so on a GPU
    it takes 1,024 texts a batch (bench/inference.md); a replica batches its own front's requests
    and a CPU computes each batch on every core: 256. Its fronts cut their groups at the same size."""
    assert InferenceSettings(device="cuda", workers=8).resolved_max_batch_size() == 1024
    assert InferenceSettings(device="cuda", workers=8, engine=False).resolved_max_batch_size() == 256
    assert InferenceSettings(device="cuda", workers=1).resolved_max_batch_size() == 256
    assert InferenceSettings(device="cpu", workers=8, engine=True).resolved_max_batch_size() == 256
    assert InferenceSettings(device="cuda", workers=8, max_batch_size=64).resolved_max_batch_size() == 64


def test_device_auto_decides_without_importing_torch() -> None:
    """The parent decides before any worker starts; importing torch there would add seconds."""
    import subprocess
    import sys

    code = (
        "import sys; from inference.server_settings import InferenceSettings; "
        "s = InferenceSettings(device='auto', workers=4); s.resolved_engine(); "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
