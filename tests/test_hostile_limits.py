"""Bounded inputs: thread counts, and the size and kind of every file the user names."""

from __future__ import annotations

import os

import numpy as np
import pytest

from edgecc.errors import EdgeccError
from edgecc.targets import load_target
from edgecc.threads import THREADS_PER_CORE, check_thread_count, logical_cpus

from fixtures_hostile import assert_refused, edgecc_process, invoke, snapshot


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


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.npz"
    os.mkfifo(path)
    return path


def _refused_quickly(args, cwd, *fragments):
    """`edgecc ARGS` as a real process: one line, well before a reader of /dev/zero or a FIFO would end."""
    process = edgecc_process(*args, cwd=cwd)
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    return assert_refused(process.returncode, stderr, *fragments)


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo"])
def test_a_target_that_is_a_device_or_a_fifo_is_refused(tmp_path, kind):
    path = "/dev/zero" if kind == "/dev/zero" else tmp_path / "board.toml"
    if kind == "fifo":
        os.mkfifo(path)
    _refused_quickly(
        ["compile", "bert-tiny-test", "--target", path, "-o", "out", "-q"],
        tmp_path,
        f"target file {path}",
        "not a regular file",
    )
    assert not (tmp_path / "out").exists()


def test_a_huge_target_file_is_refused_unread(tmp_path):
    board = tmp_path / "board.toml"
    with open(board, "wb") as handle:
        handle.truncate(64 << 20)  # sparse: 64 MiB that take no disk
    with pytest.raises(EdgeccError, match=r"target file .*board.toml is 64 MiB, larger than 1 MiB"):
        load_target(str(board))


def test_inputs_that_are_a_device_a_fifo_or_a_zip_bomb_are_refused(tiny_artifact, tmp_path, fifo):
    _refused_quickly(
        ["run", tiny_artifact, "--inputs", "/dev/zero"], tmp_path, "inputs file /dev/zero", "not a regular"
    )
    _refused_quickly(["run", tiny_artifact, "--inputs", fifo], tmp_path, f"inputs file {fifo}", "not a regular file")
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, input_ids=np.zeros((1 << 28,), np.int64))  # 2 GiB of zeros in ~2 MB
    assert bomb.stat().st_size < 8 << 20
    _refused_quickly(["run", tiny_artifact, "--inputs", bomb], tmp_path, "unpacks to 2,048 MiB", "refusing to read it")


def test_compile_inputs_calibration_and_model_paths_are_checked(tiny_model, tmp_path, fifo):
    import edgecc

    with pytest.raises(EdgeccError, match="inputs file .* not a regular file"):
        edgecc.compile(tiny_model, "host", tmp_path / "a", sample_inputs=fifo, log=lambda *_: None)
    with pytest.raises(EdgeccError, match="calibration file /dev/zero is not a regular file"):
        edgecc.compile(
            tiny_model, "host", tmp_path / "b", precision="int8", calibration="/dev/zero", log=lambda *_: None
        )
    with pytest.raises(EdgeccError, match="model file /dev/zero is not a regular file"):
        edgecc.compile("/dev/zero", "host", tmp_path / "c", log=lambda *_: None)
    model_fifo = tmp_path / "m.onnx"
    os.mkfifo(model_fifo)
    with pytest.raises(EdgeccError, match="model file .*m.onnx is not a regular file"):
        edgecc.compile(model_fifo, "host", tmp_path / "d", log=lambda *_: None)
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_a_fifo_among_the_tuning_logs_is_not_read(tmp_path):
    from edgecc.tuning.records import log_files, read_logs

    os.mkfifo(tmp_path / "records.jsonl")
    assert log_files(tmp_path) == [] and read_logs([tmp_path]).files == []
