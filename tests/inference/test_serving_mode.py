"""How many GPU streams and batches in flight a setting resolves to (no GPU needed: the device is
named, not probed)."""

from __future__ import annotations

from inference.server_settings import InferenceSettings


def test_the_engine_runs_two_streams_and_a_replica_one() -> None:
    engine = InferenceSettings(device="cuda", workers=8, engine=True)
    assert engine.resolved_gpu_streams() == 2
    assert engine.resolved_concurrent_batches() == 4, "two batches in flight per stream"
    replica = InferenceSettings(device="cuda", workers=8)
    assert replica.resolved_gpu_streams() == 1 and replica.resolved_concurrent_batches() == 2


def test_a_cpu_server_runs_one_batch_at_a_time_and_explicit_values_win() -> None:
    assert InferenceSettings(device="cpu", workers=4, engine=True).resolved_concurrent_batches() == 1
    streams = InferenceSettings(device="cuda", workers=8, gpu_streams=3, concurrent_batches=5)
    assert streams.resolved_gpu_streams() == 3 and streams.resolved_concurrent_batches() == 5
