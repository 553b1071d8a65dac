"""remote.open_session failures: one clear RemoteError naming the address, quickly."""

import json
import socket
import struct
import time

import pytest

from edgecc.errors import RemoteError
from edgecc.remote.address import parse_address
from edgecc.remote.board.server import free_port
from edgecc.remote.session import open_session

from fixtures_hostile import LoopbackServer


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


class HostileTracker(LoopbackServer):
    """A loopback server that speaks the TVM tracker protocol (magic, then length-prefixed JSON) and
    answers every request with one fixed reply: what a broken or malicious tracker would send."""

    MAGIC = 0x2F271  # tvm.rpc.base.RPC_TRACKER_MAGIC

    def __init__(self, reply: bytes, announced_size: int | None = None):
        self.reply, self.announced_size = reply, announced_size
        self.requests: list = []
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                if struct.unpack("<i", conn.recv(4))[0] != self.MAGIC:
                    return
                conn.sendall(struct.pack("<i", self.MAGIC))
                size = struct.unpack("<i", conn.recv(4))[0]
                self.requests.append(json.loads(conn.recv(size)))
                size = len(self.reply) if self.announced_size is None else self.announced_size
                conn.sendall(struct.pack("<i", size) + self.reply)
                conn.recv(1)  # until the client closes
            except (OSError, struct.error, ValueError):
                return


@pytest.fixture
def hostile_tracker():
    made = []

    def make(reply: bytes, announced_size: int | None = None) -> HostileTracker:
        made.append(HostileTracker(reply, announced_size))
        return made[-1]

    yield make
    for tracker in made:
        tracker.close()


HOSTILE_REPLIES = [
    b"null",
    b"{}",
    b"[]",
    b"0",
    b'"yes"',
    b"[0]",
    b"[0, null]",
    b"[0, {}]",
    b'[0, {"queue_info": []}]',
    b"[0, [null, 9090, 0]]",
    b'[0, ["10.0.0.1", "9090", "k"]]',
    b'[0, ["10.0.0.1", 70000, "k"]]',
    b'[true, ["10.0.0.1", 9090, "k"]]',
    b"[1, 2, 3]",
    b"[" * 100000 + b"]" * 100000,
    b"[0, " + b"[" * 900 + b"]" * 900 + b"]",
    b"\xff\xfe",
    b"{not json",
]


@pytest.mark.parametrize("reply", HOSTILE_REPLIES, ids=lambda r: r[:24].decode("latin-1"))
def test_a_tracker_that_answers_nonsense_is_one_clear_error(hostile_tracker, reply):
    from edgecc.remote.session import tracker_free_count, tracker_summary

    tracker = hostile_tracker(reply)
    with pytest.raises(RemoteError, match=f"tracker {tracker.address}"):
        open_session(tracker=tracker.address, key="k", timeout=5)
    assert tracker.requests[-1][0] == 4  # TrackerCode.REQUEST: it really was asked for a board
    if reply not in (b"[0, [null, 9090, 0]]", b'[0, ["10.0.0.1", "9090", "k"]]', b'[0, ["10.0.0.1", 70000, "k"]]'):
        with pytest.raises(RemoteError, match=f"tracker {tracker.address}"):
            tracker_free_count(tracker.address, "k")
        with pytest.raises(RemoteError, match=f"tracker {tracker.address}"):
            tracker_summary(tracker.address, timeout=5)


@pytest.mark.parametrize("announced", [-1, 0, 1 << 30])
def test_a_tracker_that_announces_an_absurd_reply_size_is_refused(hostile_tracker, announced):
    tracker = hostile_tracker(b"[0, {}]", announced_size=announced)
    with pytest.raises(RemoteError, match=f"tracker {tracker.address} announced a reply of {announced} bytes"):
        open_session(tracker=tracker.address, key="k", timeout=5)


def test_edgecc_run_through_a_tracker_that_answers_null_is_one_line(hostile_tracker, tiny_artifact, tmp_path):
    from fixtures_hostile import assert_refused, invoke

    tracker = hostile_tracker(b"null")
    result = invoke("run", tiny_artifact, "--tracker", tracker.address, "--key", "k", "--rpc-timeout", "5")
    assert_refused(result.exit_code, result.stderr, f"tracker {tracker.address} gave an unexpected answer")
