"""Bounded inputs: thread counts, and the size and kind of every file the user names."""

from __future__ import annotations

import pytest

from edgecc.errors import EdgeccError
from edgecc.threads import THREADS_PER_CORE, check_thread_count, logical_cpus
from fixtures_hostile import assert_refused, invoke, snapshot


@pytest.mark.fast
def test_thread_counts_past_four_per_core_are_refused():
    assert check_thread_count(8, 2, "the board") == 8
    assert check_thread_count(1, 1, "the board") == 1
    for threads in (9, 64, 1000, 1_000_000):
        with pytest.raises(EdgeccError, match=f"{threads} threads is more than 8 .4 per core of the 2 cores"):
            check_thread_count(threads, 2, "the board")
    for threads in (0, -1, 2.5, "8", True, None):
        with pytest.raises(EdgeccError, match="whole number of at least 1"):
            check_thread_count(threads, 2, "the board")


@pytest.mark.parametrize("threads", [1_000_000, THREADS_PER_CORE * logical_cpus() + 1])
def test_deploy_refuses_more_threads_than_the_board_can_run(tiny_artifact, tmp_path, threads):
    before = snapshot(tmp_path)
    result = invoke("deploy", tiny_artifact, "-o", tmp_path / "bundle", "--threads", threads)
    assert_refused(result.exit_code, result.stderr, f"{threads} threads is more than", "per core")
    assert snapshot(tmp_path) == before


def test_the_deploy_api_refuses_them_too(tiny_artifact, tmp_path):
    import edgecc

    with pytest.raises(EdgeccError, match="threads is more than"):
        edgecc.deploy(tiny_artifact, tmp_path / "bundle", threads=10_000)
    with pytest.raises(EdgeccError, match="whole number"):
        edgecc.deploy(tiny_artifact, tmp_path / "bundle", threads=0)
    assert not (tmp_path / "bundle").exists()
