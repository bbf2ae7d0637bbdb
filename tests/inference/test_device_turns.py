"""Request passes go before background CUDA-graph captures (`DeviceTurns`); plain threads, no GPU."""

from __future__ import annotations

import threading
import time

from inference.models.cuda_graphs import DeviceTurns


def _never() -> bool:
    return False


def _hold(turns: DeviceTurns, seconds: float, entered: threading.Event) -> threading.Thread:
    def pass_() -> None:
        with turns:
            entered.set()
            time.sleep(seconds)

    thread = threading.Thread(target=pass_)
    thread.start()
    entered.wait(5)
    return thread


def test_a_capture_waits_for_the_request_pass_holding_the_device() -> None:
    turns = DeviceTurns()
    held = _hold(turns, 0.3, threading.Event())
    assert turns.waiting == 1
    assert turns.wait_for_gap(0.0, _never, starved_s=None)
    assert not held.is_alive(), "the capture's turn came while a request pass still held the device"
    assert turns.waiting == 0


def test_a_capture_no_request_asked_for_waits_for_an_idle_spell() -> None:
    turns = DeviceTurns()
    _hold(turns, 0.0, threading.Event()).join()
    ended = turns.last_pass
    assert turns.wait_for_gap(0.2, _never, starved_s=None)
    assert time.monotonic() - ended >= 0.2


def test_a_starved_capture_takes_its_turn_anyway() -> None:
    turns = DeviceTurns()
    held = _hold(turns, 2.0, threading.Event())
    started = time.monotonic()
    assert turns.wait_for_gap(0.0, _never, starved_s=0.1)
    assert 0.1 <= time.monotonic() - started < 1.5
    assert held.is_alive()
    held.join()


def test_a_stale_capturer_gives_up() -> None:
    turns = DeviceTurns()
    held = _hold(turns, 0.5, threading.Event())
    assert not turns.wait_for_gap(0.0, lambda: True, starved_s=None)
    held.join()


def test_a_pass_goes_to_the_next_lane_in_turn_that_has_its_graph() -> None:
    from inference.models.cuda_graphs import pick_lane

    assert [pick_lane([True, True], turn) for turn in range(4)] == [0, 1, 0, 1]
    assert [pick_lane([False, True, True], turn) for turn in range(3)] == [1, 1, 2]
    # No lane has the graph yet: the pass runs eagerly, still spread over the lanes.
    assert [pick_lane([False, False], turn) for turn in range(3)] == [0, 1, 0]
