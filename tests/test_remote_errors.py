"""remote.open_session failures: one clear RemoteError naming the address, quickly."""

import time

import pytest

from edgecc.errors import RemoteError
from edgecc.remote.address import parse_address
from edgecc.remote.board.server import free_port
from edgecc.remote.session import open_session


def test_closed_port_is_refused_quickly_with_the_address():
    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(RemoteError, match=f"board {address} refused the connection"):
        open_session(rpc=address, timeout=30)
    assert time.monotonic() - start < 3


@pytest.mark.parametrize("text", ["localhost", "127.0.0.1:", ":9090", "127.0.0.1:99999", "host:port"])
def test_bad_addresses(text):
    with pytest.raises(RemoteError, match="expected HOST:PORT"):
        parse_address(text)
    with pytest.raises(RemoteError, match="expected HOST:PORT"):
        open_session(rpc=text)


def test_argument_combinations():
    with pytest.raises(RemoteError, match="needs --key"):
        open_session(tracker="127.0.0.1:9190")
    with pytest.raises(RemoteError, match="not both"):
        open_session(rpc="127.0.0.1:1", tracker="127.0.0.1:2", key="k")
    with pytest.raises(RemoteError, match="no board given"):
        open_session()
    with pytest.raises(RemoteError, match="positive"):
        open_session(rpc="127.0.0.1:1", timeout=0)


def test_closed_tracker_port_names_the_tracker():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(RemoteError, match=f"tracker {address} refused"):
        open_session(tracker=address, key="raspberry-pi-5", timeout=5)


def test_tracker_without_a_free_board_times_out_clearly(empty_tracker):
    start = time.monotonic()
    with pytest.raises(RemoteError, match=f"tracker {empty_tracker} had no free board under key 'nope' within 2 s"):
        open_session(tracker=empty_tracker, key="nope", timeout=2)
    elapsed = time.monotonic() - start
    assert 1.9 < elapsed < 6


def test_something_that_is_not_a_tracker(emulated_board):
    with pytest.raises(RemoteError, match=f"{emulated_board.address} is not a TVM RPC tracker"):
        open_session(tracker=emulated_board.address, key="k", timeout=5)


def test_emulate_with_a_dead_tracker_fails_before_starting_qemu():
    from click.testing import CliRunner

    from edgecc.cli import main as cli

    address = f"127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        cli, ["board", "emulate", "--port", str(free_port()), "--tracker", address, "--key", "raspberry-pi-5"]
    )
    assert result.exit_code == 2
    assert f"tracker {address} refused the connection" in result.output


def test_board_cache_location_and_arch(monkeypatch, tmp_path):
    from edgecc.errors import ToolchainError
    from edgecc.remote.board import board_root

    monkeypatch.setenv("EDGECC_CACHE", str(tmp_path))
    paths = board_root("aarch64")
    assert paths.base == tmp_path / "board-aarch64" and not paths.is_ready
    assert paths.python == tmp_path / "board-aarch64" / "root" / "usr" / "bin" / "python3.11"
    with pytest.raises(ToolchainError, match="only aarch64"):
        board_root("riscv64")
