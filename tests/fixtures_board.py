"""The emulated aarch64 board (QEMU + TVM RPC on loopback) and a tracker, one of each per test run."""

from __future__ import annotations

import shutil

import pytest

BOARD_KEY = "raspberry-pi-5"


def _start_or_skip(start):
    from edgecc.errors import EdgeccError

    if shutil.which("qemu-aarch64-static") is None and shutil.which("apt-get") is None:
        pytest.skip("the emulated board needs qemu-user-static, and apt-get is not available to install it")
    try:
        return start()
    except EdgeccError as exc:
        # Setup is scripted (`edgecc board setup`, run by scripts/setup.sh); a failure here is real.
        pytest.fail(f"emulated board could not start: {exc}")


@pytest.fixture(scope="session")
def emulated_board():
    """An emulated aarch64 board serving TVM RPC on a free loopback port; `.address` is HOST:PORT."""
    from edgecc.remote.board import start_board

    board = _start_or_skip(lambda: start_board(progress=None))
    yield board
    board.stop()


@pytest.fixture(scope="session")
def board_tracker():
    """A TVM RPC tracker with one emulated board registered under BOARD_KEY; yields (tracker address, key)."""
    from edgecc.remote.board import start_board
    from edgecc.remote.tracker import start_tracker

    tracker = start_tracker()
    try:
        board = _start_or_skip(lambda: start_board(tracker=tracker.address, key=BOARD_KEY, progress=None))
    except BaseException:
        tracker.stop()
        raise
    yield tracker.address, BOARD_KEY
    board.stop()
    tracker.stop()


@pytest.fixture()
def empty_tracker():
    """A tracker with no boards at all."""
    from edgecc.remote.tracker import start_tracker

    tracker = start_tracker()
    yield tracker.address
    tracker.stop()
