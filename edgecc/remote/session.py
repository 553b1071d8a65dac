"""The one place that opens sessions to boards: direct TVM RPC (`--rpc`) or through a tracker (`--tracker --key`)."""

from __future__ import annotations

import json
import socket
import struct
from contextlib import contextmanager
from pathlib import Path

from edgecc.errors import EdgeccError, RemoteError, error_line
from edgecc.remote.address import parse_address

DEFAULT_TIMEOUT = 120.0
EMULATED_FUNC = "edgecc.board.emulated"
_TRACKER_MAGIC = 0x2F271  # tvm.rpc.base.RPC_TRACKER_MAGIC
_TRACKER_REQUEST, _TRACKER_SUMMARY, _TRACKER_SUCCESS = 4, 6, 0  # tvm.rpc.base.TrackerCode


def _open_socket(address: str, timeout: float, what: str) -> socket.socket:
    host, port = parse_address(address)
    try:
        sock = socket.create_connection((host, port), timeout=min(timeout, 10.0))
    except ConnectionRefusedError:
        raise RemoteError(f"{what} {address} refused the connection: nothing is listening there") from None
    except TimeoutError:
        raise RemoteError(f"{what} {address} did not answer within {min(timeout, 10.0):.0f} s") from None
    except OSError as exc:
        raise RemoteError(f"cannot reach {what} {address}: {error_line(exc)}") from None
    sock.settimeout(timeout)
    return sock


def _send_json(sock: socket.socket, data) -> None:
    body = json.dumps(data).encode()
    sock.sendall(struct.pack("<i", len(body)) + body)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ConnectionError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv_json(sock: socket.socket):
    size = struct.unpack("<i", _recv_exact(sock, 4))[0]
    return json.loads(_recv_exact(sock, size).decode())


def _tracker_socket(tracker: str, timeout: float) -> socket.socket:
    sock = _open_socket(tracker, timeout, "tracker")
    try:
        sock.sendall(struct.pack("<i", _TRACKER_MAGIC))
        if struct.unpack("<i", _recv_exact(sock, 4))[0] != _TRACKER_MAGIC:
            raise ConnectionError("wrong magic")
    except (OSError, ConnectionError, struct.error):
        sock.close()
        raise RemoteError(f"{tracker} is not a TVM RPC tracker (handshake failed)") from None
    return sock


def tracker_summary(tracker: str, timeout: float = 10.0) -> dict:
    """The tracker's own summary: {'server_info': [...], 'queue_info': {key: {'free', 'pending'}}}."""
    with _tracker_socket(tracker, timeout) as sock:
        try:
            _send_json(sock, [_TRACKER_SUMMARY])
            reply = _recv_json(sock)
        except (OSError, ConnectionError, ValueError) as exc:
            raise RemoteError(f"tracker {tracker} vanished while answering: {error_line(exc)}") from None
    if reply[0] != _TRACKER_SUCCESS:
        raise RemoteError(f"tracker {tracker} gave an unexpected answer: {reply}")
    return reply[1]


def tracker_free_count(tracker: str, key: str) -> int:
    return int(tracker_summary(tracker)["queue_info"].get(key, {}).get("free", 0))


def _request_from_tracker(tracker: str, key: str, timeout: float) -> tuple[str, int, str]:
    """Ask the tracker for a free board under `key`, waiting at most `timeout` seconds."""
    with _tracker_socket(tracker, timeout) as sock:
        try:
            _send_json(sock, [_TRACKER_REQUEST, key, "", 1])
            reply = _recv_json(sock)
        except TimeoutError:
            raise RemoteError(
                f"tracker {tracker} had no free board under key '{key}' within {timeout:g} s "
                f"(is a board registered with --tracker {tracker} --key {key}?)"
            ) from None
        except (OSError, ConnectionError, ValueError) as exc:
            raise RemoteError(f"tracker {tracker} vanished while asked for key '{key}': {error_line(exc)}") from None
    if reply[0] != _TRACKER_SUCCESS:
        raise RemoteError(f"tracker {tracker} refused the request for key '{key}': {reply}")
    host, port, match_key = reply[1]
    return host, int(port), match_key


def open_session(
    rpc: str | None = None, tracker: str | None = None, key: str | None = None, timeout: float = DEFAULT_TIMEOUT
):
    """A tvm.rpc.RPCSession on the board at `rpc`, or on a free board the tracker has under `key`.

    `timeout` bounds the wait for a connection or a free board, and is also the session timeout the
    server enforces (it ends a session that lasts longer), so a hung board cannot hang the caller forever.
    """
    if rpc and tracker:
        raise RemoteError("pass either --rpc HOST:PORT or --tracker HOST:PORT --key KEY, not both")
    if not rpc and not tracker:
        raise RemoteError("no board given: pass --rpc HOST:PORT or --tracker HOST:PORT --key KEY")
    if tracker and not key:
        raise RemoteError(f"--tracker {tracker} needs --key KEY naming the kind of board to request")
    if timeout is None or timeout <= 0:
        raise RemoteError(f"the RPC timeout must be a positive number of seconds, not {timeout}")
    if tracker:
        host, port, match_key = _request_from_tracker(tracker, key, timeout)
        where = f"board {host}:{port} (from tracker {tracker}, key '{key}')"
    else:
        host, port = parse_address(rpc)
        _open_socket(rpc, timeout, "board").close()  # fail fast, with the address, if nothing listens
        match_key, where = "", f"board {rpc}"
    return _connect_within(host, port, match_key, timeout, where)


def _connect_within(host: str, port: int, match_key: str, timeout: float, where: str):
    """tvm.rpc.connect, given at most `timeout` seconds.

    TVM's handshake has no timeout of its own: a board whose server accepted the TCP connection but
    stopped serving (its listening loop died with a crashed session, or it is wedged) kept the caller
    waiting forever. The connect runs in a helper thread; when it is not done in time the caller gets
    a RemoteError and the thread is left blocked on that socket (a daemon: it dies with the process)."""
    import threading

    from tvm import rpc as tvm_rpc

    outcome: dict = {}

    def connect():
        try:
            outcome["session"] = tvm_rpc.connect(host, port, key=match_key, session_timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=connect, name=f"edgecc-rpc-connect-{host}:{port}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise RemoteError(
            f"{where} accepted the connection but did not complete the RPC handshake within "
            f"{timeout:g} s: its server is busy with another session, wedged or dead "
            "(restart it; raise the wait with --rpc-timeout SECONDS)"
        )
    if "error" in outcome:
        raise RemoteError(f"{where} refused the RPC session: {error_line(outcome['error'])}")
    return outcome["session"]


def is_emulated(session) -> bool:
    """True when the board is edgecc's QEMU-emulated one: its timings say nothing about real hardware."""
    return emulation_of(session) is not None


def emulation_of(session) -> str | None:
    """The emulator's name (e.g. 'qemu-aarch64') for an emulated board, None for a real one."""
    try:
        func = session.get_function(EMULATED_FUNC)
    except Exception:  # noqa: BLE001 - a probe: any failure means no
        return None
    try:
        return str(func())
    except Exception:  # noqa: BLE001 - a probe: any failure means no
        return None


def load_remote_module(session, library: Path):
    """Upload a compiled library to the board and load it there; returns the remote module."""
    library = Path(library)
    try:
        session.upload(str(library))
        return session.load_module(library.name)
    except Exception as exc:  # noqa: BLE001 - the library raises many types; each becomes one clear line
        raise RemoteError(f"the board failed to load {library.name}: {remote_reason(exc)}") from None


@contextmanager
def board_failures(where: str, doing: str):
    """Turn a failure inside a remote call into one RemoteError line naming the board.

    Wrap calls that run on a board (VM calls, time_evaluator) with it: a board that stops, crashes or
    hits its session timeout mid-call otherwise surfaces as a raw TVM InternalError.
    """
    try:
        yield
    except EdgeccError:
        raise
    except Exception as exc:  # noqa: BLE001 - the library raises many types; each becomes one clear line
        raise RemoteError(f"board {where} failed while {doing}: {remote_reason(exc)}") from None


def remote_reason(exc: BaseException) -> str:
    """What a failed remote call means, in words (TVM's own text is an RPC protocol check)."""
    text = error_line(exc)
    if "session has expired" in text or "SessionTimeout" in text:
        return "the session timeout ran out (raise it with --rpc-timeout SECONDS)"
    if "kShutdown" in text or "connection" in text.lower() or "socket" in text.lower():
        return (
            "the board closed the session: its worker stopped or crashed (a library that crashes on the "
            "board ends the session; the board itself goes on serving), or the session timeout ran out"
        )
    return text
