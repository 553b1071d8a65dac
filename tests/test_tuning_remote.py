"""Tuning measured through a real TVM RPC tracker and server on 127.0.0.1 (x86: it proves the path, not speed)."""

from __future__ import annotations

import pytest

from edgecc.backends import backend_for
from edgecc.errors import EdgeccError
from edgecc.targets import load_target
from edgecc.tuning import tune
from edgecc.tuning.records import read_logs
from edgecc.tuning.tune import TuningError


def test_tuning_through_a_tracker_measures_on_the_board(lowered_matmul, rpc_tracker_with_board, tmp_path):
    session = {"tracker": rpc_tracker_with_board["tracker"], "key": rpc_tracker_with_board["key"], "timeout": 30}
    target = load_target("host")
    result = tune(
        lowered_matmul, target, tmp_path, trials=8, session=session, progress=False, backend=backend_for(target)
    )
    assert result.trials_run == 8
    assert result.build_failures == 0 and result.run_failures == 0
    records = read_logs([tmp_path]).records
    assert len(records) == 8 + 1  # and the default schedule, measured on the board first
    assert [r.is_default for r in records].count(True) == 1 and len(result.default_ms_per_task) == 1
    assert all(0 < r.latency < 0.01 for r in records)


def test_tuning_direct_rpc_measures_on_the_board(lowered_matmul, rpc_board, tmp_path):
    session = {"rpc": rpc_board, "timeout": 30}
    result = tune(lowered_matmul, load_target("host"), tmp_path, trials=4, session=session, progress=False)
    assert result.build_failures == 0 and result.run_failures == 0
    assert len(read_logs([tmp_path]).records) == 4


def test_an_unreachable_board_fails_its_trials_and_then_the_run_with_one_line(lowered_matmul, tmp_path):
    """Each trial fails (the search goes on through all of them); a run that measured nothing then
    fails with the first error, instead of exiting 0 with an empty log."""
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    session = {"rpc": f"127.0.0.1:{port}", "timeout": 5, "attempts": 2, "retry_pause_s": 0.1}
    with pytest.raises(
        TuningError,
        match=r"measured nothing: all 4 trials failed \(0 to build, 4 to run\); "
        r"first error: run: .*board unreachable",
    ):
        tune(lowered_matmul, load_target("host"), tmp_path, trials=4, session=session, progress=False)
    assert read_logs([tmp_path]).records == []


@pytest.mark.parametrize(
    "session, message",
    [
        ({"rpc": "nohostport"}, "bad address"),
        ({"tracker": "127.0.0.1:9190"}, "needs --key"),
        ({"rpc": "127.0.0.1:1", "tracker": "127.0.0.1:2", "key": "k"}, "either --rpc"),
    ],
)
def test_bad_board_specs_fail_with_one_line(lowered_matmul, tmp_path, session, message):
    with pytest.raises(EdgeccError, match=message):
        tune(lowered_matmul, load_target("host"), tmp_path, trials=4, session=session, progress=False)
