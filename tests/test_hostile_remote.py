"""Boards that stop answering, crash or cannot measure: every wait is bounded, one crash does not wedge
the board, tuning on the board measures, and a tune that measured nothing fails.

The fast tests run TVM's RPC server (and edgecc's board server code) on this x86 machine; the ones
on the emulated aarch64 board are marked slow.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecc.cli import main
from edgecc.errors import RemoteError
from edgecc.remote.board.server import free_port, stop_process_group
from edgecc.remote.session import load_remote_module, open_session

from fixtures_hostile import LoopbackServer, assert_refused, edgecc_process
from fixtures_tuning import start_rpc_server, wait_listening

BOOM_C = "__attribute__((constructor)) static void boom(void) { *(volatile int *)0 = 0; }\nint boom_marker = 1;\n"


@pytest.fixture
def boom_library(tmp_path) -> Path:
    """An x86 shared library that segfaults as soon as it is loaded (a board-side crash)."""
    source = tmp_path / "boom.c"
    source.write_text(BOOM_C)
    library = tmp_path / "boom.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library


def test_a_server_that_accepts_but_never_answers_times_out_with_one_line():
    """TVM's handshake has no timeout: against a socket that accepts and stays silent it waited forever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    import tvm.rpc  # noqa: F401 - imported first, so its start-up is not timed

    started = time.monotonic()
    with pytest.raises(
        RemoteError, match=f"board {address} accepted the connection but did not complete the RPC handshake within 2 s"
    ):
        open_session(rpc=address, timeout=2)
    assert time.monotonic() - started < 8
    listener.close()


def _run_session(address: str, library: Path) -> None:
    session = open_session(rpc=address, timeout=30)
    load_remote_module(session, library)


def test_tvm_server_wedged_by_a_crash_is_a_bounded_wait_not_a_hang(boom_library, tmp_path):
    """TVM's own server stops serving after a session's worker crashes, but keeps its socket open: the
    next client's wait is now bounded by the RPC timeout instead of forever."""
    port = free_port()
    server = start_rpc_server(port)
    try:
        wait_listening(port, server, seconds=120)
        with pytest.raises(RemoteError, match="failed to load boom.so: the board closed the session"):
            _run_session(f"127.0.0.1:{port}", boom_library)
        started = time.monotonic()
        with pytest.raises(RemoteError, match="did not complete the RPC handshake within 5 s"):
            open_session(rpc=f"127.0.0.1:{port}", timeout=5)
        assert time.monotonic() - started < 15
    finally:
        stop_process_group(server)


class SilentLink(LoopbackServer):
    """A TCP proxy in front of a real RPC server that stops forwarding, in both directions, once the
    client has sent `freeze_after` bytes (past the handshake: the upload of a library). It keeps the
    sockets open and passes on no close either: a link that went silent, not one that broke."""

    def __init__(self, port: int, freeze_after: int = 4096):
        self.port, self.freeze_after, self.sent = port, freeze_after, 0
        self.frozen = threading.Event()
        super().__init__()

    def handle(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.port))
        threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool):
        while True:
            try:
                data = source.recv(1 << 16)
            except OSError:
                data = b""
            if from_client:
                self.sent += len(data)
                if self.sent > self.freeze_after:
                    self.frozen.set()
            if self.frozen.is_set():
                if not data:
                    return
                continue
            if not data:
                for sock in (source, sink):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            sink.sendall(data)


@pytest.fixture
def silent_link():
    port = free_port()
    server = start_rpc_server(port)
    try:
        wait_listening(port, server, seconds=120)
        link = SilentLink(port)
        yield link
        link.close()
    finally:
        stop_process_group(server)


def test_a_board_that_goes_silent_after_the_handshake_ends_at_the_session_deadline(silent_link, tmp_path):
    """--rpc-timeout bounded only the handshake: a call after it waited forever on a silent link."""
    library = tmp_path / "blob.so"
    library.write_bytes(os.urandom(256 << 10))
    import tvm.rpc  # noqa: F401 - imported first, so its start-up is not timed

    started = time.monotonic()
    session = open_session(rpc=silent_link.address, timeout=6)
    with pytest.raises(RemoteError, match=r"failed to load blob.so: the session timeout ran out \(6 s for the whole"):
        load_remote_module(session, library)
    assert silent_link.frozen.is_set()
    assert time.monotonic() - started < 6 + 3


class EchoServer(LoopbackServer):
    def handle(self, conn: socket.socket) -> None:
        while data := conn.recv(4096):
            conn.sendall(data)


@pytest.mark.parametrize("extended", [False, True])
def test_the_session_relay_ends_at_its_deadline_unless_extended(extended):
    """The relay is a process of its own: a later deadline (a slow board found) must reach it."""
    from edgecc.remote.session import _Relay

    echo = EchoServer()
    started = time.monotonic()
    relay = _Relay(socket.create_connection(echo.listener.getsockname()), started + 2, 2, "board test")
    if extended:
        relay.extend(30, started + 30)
    client = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
    client.sendall(b"ping")
    assert client.recv(4) == b"ping"
    time.sleep(3)
    try:
        client.sendall(b"pong")
        answer = client.recv(4)
    except OSError:
        answer = b""
    assert answer == (b"pong" if extended else b"")
    client.close()
    relay.close()
    echo.close()


def test_edgecc_run_on_a_silent_board_ends_with_one_line_within_the_timeout(silent_link, tiny_artifact, tmp_path):
    started = time.monotonic()
    proc = edgecc_process("run", tiny_artifact, "--rpc", silent_link.address, "--rpc-timeout", "8", cwd=tmp_path)
    try:
        _, stderr = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert silent_link.frozen.is_set()
    assert_refused(proc.returncode, stderr, f"board {silent_link.address}", "session timeout ran out (8 s", code=2)
    assert time.monotonic() - started < 60  # the program's start-up (TVM's import) and 8 s, not forever


def test_sigterm_while_waiting_on_a_silent_board_stops_edgecc_run(silent_link, tiny_artifact, tmp_path):
    proc = edgecc_process("run", tiny_artifact, "--rpc", silent_link.address, "--rpc-timeout", "600", cwd=tmp_path)
    try:
        assert silent_link.frozen.wait(90), "the run never reached the board"
        time.sleep(0.5)  # inside the wait for the board's answer
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr


def _start_board_server_code_here(tmp_path: Path, port: int) -> subprocess.Popen:
    """edgecc's board server (its sitecustomize and main, edgecc/remote/board/boot.py) with this machine's
    Python instead of the emulated one: the same code, without QEMU's minute-long start."""
    from edgecc.remote.board.boot import BOOT, EMULATED_ENV, SITECUSTOMIZE

    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": f"{boot}:{os.environ.get('PYTHONPATH', '')}", EMULATED_ENV: "test-x86"}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            BOOT,
            sys.executable,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--port-end",
            str(port + 1),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_the_board_server_survives_a_crashed_session_and_says_so(boom_library, tmp_path):
    from edgecc.remote.board.boot import SESSION_DIED

    port = free_port()
    server = _start_board_server_code_here(tmp_path, port)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True).start()
    try:
        wait_listening(port, server, seconds=120)
        address = f"127.0.0.1:{port}"
        for _ in range(2):  # crash it twice: it keeps serving
            with pytest.raises(RemoteError, match="the board closed the session"):
                _run_session(address, boom_library)
        session = open_session(rpc=address, timeout=30)
        assert session.get_function("edgecc.board.emulated")() == "test-x86"
        deadline = time.time() + 10
        while sum(SESSION_DIED in line for line in lines) < 2 and time.time() < deadline:
            time.sleep(0.2)
        died = [line for line in lines if SESSION_DIED in line]
        assert len(died) == 2 and "error code -11" in died[0] and "still serving" in died[0]
    finally:
        stop_process_group(server)


@pytest.mark.parametrize("command", [["board", "emulate", "--host", "0.0.0.0"], ["tracker", "--host", "0.0.0.0"]])
def test_serving_rpc_on_a_network_address_needs_consent(command):
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 2
    assert (
        "edgecc: error: --host 0.0.0.0 would let any machine that reaches it run arbitrary code here" in result.output
    )
    assert "--allow-remote" in result.output


@pytest.mark.slow  # ~1 min: four trials, each retrying the dead board (tests/test_tuning_remote.py has the fast one)
def test_a_tune_that_measures_nothing_exits_non_zero_with_one_line(dense_onnx, tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        main,
        [
            "tune",
            str(dense_onnx),
            "--trials",
            "4",
            "--rpc",
            dead,
            "--rpc-timeout",
            "2",
            "--tuning-logs",
            str(tmp_path / "logs"),
            "-o",
            str(tmp_path / "o"),
            "-q",
        ],
    )
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("edgecc: error:")]
    assert len(errors) == 1 and "measured nothing: all 4 trials failed" in errors[0]
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


# --- on the emulated aarch64 board (QEMU): slow -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.toolchain("qemu-aarch64-static", "aarch64-linux-gnu-gcc")
def test_emulated_board_survives_a_crashing_library_and_serves_the_next_client(emulated_board, tmp_path):
    source = tmp_path / "boom.c"
    source.write_text(BOOM_C)
    library = tmp_path / "boom.so"
    subprocess.run(["aarch64-linux-gnu-gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    with pytest.raises(RemoteError, match="the board closed the session"):
        _run_session(emulated_board.address, library)
    started = time.monotonic()
    session = open_session(rpc=emulated_board.address, timeout=60)
    assert session.get_function("edgecc.board.emulated")() == "qemu-aarch64"
    assert time.monotonic() - started < 60
    deadline = time.time() + 10
    while not emulated_board.events and time.time() < deadline:
        time.sleep(0.2)
    assert emulated_board.events and "its worker died" in emulated_board.events[-1]


@pytest.mark.slow
@pytest.mark.toolchain("qemu-aarch64-static", "aarch64-linux-gnu-gcc")
def test_tuning_on_the_emulated_board_really_measures(lowered_matmul, emulated_board, tmp_path):
    """MetaSchedule fills measurement arguments with tvm.contrib.random.random_fill_for_measure, which
    the board's runtime-only TVM lacks; the board's sitecustomize provides it."""
    from edgecc.targets import load_target
    from edgecc.tuning import tune
    from edgecc.tuning.records import read_logs

    session = {"rpc": emulated_board.address, "timeout": 120}
    result = tune(lowered_matmul, load_target("raspberry-pi-5"), tmp_path, trials=4, session=session, progress=False)
    assert result.run_failures == 0 and result.build_failures == 0, result.first_errors
    assert len(read_logs([tmp_path]).records) == 4
