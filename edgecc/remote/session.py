"""The one place that opens sessions to boards: direct TVM RPC (`--rpc`) or through a tracker (`--tracker --key`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import threading
import time
import weakref
from contextlib import contextmanager
from pathlib import Path

from edgecc.errors import EdgeccError, RemoteError, error_line
from edgecc.interrupts import SIGNALS
from edgecc.remote.address import parse_address
from edgecc.remote.tracker_replies import (
    board_from_reply,
    check_reply_size,
    free_boards,
    parse_reply,
    summary_from_reply,
)

DEFAULT_TIMEOUT = 120.0  # a board's whole session, unless --rpc-timeout says otherwise
# edgecc's QEMU-emulated board runs a model tens of times slower than the board it stands in for: a
# compile's verification, timing and per-kernel profile there outlast 120 s even for a tiny BERT, and
# the measurement of an artifact that had passed verification was cut short.
EMULATED_TIMEOUT = 1800.0
EMULATED_FUNC = "edgecc.board.emulated"
_TRACKER_MAGIC = 0x2F271  # tvm.rpc.base.RPC_TRACKER_MAGIC
_TRACKER_REQUEST, _TRACKER_SUMMARY = 4, 6  # tvm.rpc.base.TrackerCode


def _open_socket(address: str, timeout: float, what: str) -> socket.socket:
    host, port = parse_address(address)
    return _connect_socket(host, port, timeout, f"{what} {address}")


def _connect_socket(host: str, port: int, timeout: float, what: str) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=min(timeout, 10.0))
    except ConnectionRefusedError:
        raise RemoteError(f"{what} refused the connection: nothing is listening there") from None
    except TimeoutError:
        raise RemoteError(f"{what} did not answer within {min(timeout, 10.0):.0f} s") from None
    except OSError as exc:
        raise RemoteError(f"cannot reach {what}: {error_line(exc)}") from None
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


def _recv_json(sock: socket.socket, tracker: str):
    size = check_reply_size(struct.unpack("<i", _recv_exact(sock, 4))[0], tracker)
    return parse_reply(_recv_exact(sock, size), tracker)


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
            reply = _recv_json(sock, tracker)
        except (OSError, ConnectionError, ValueError) as exc:
            raise RemoteError(f"tracker {tracker} vanished while answering: {error_line(exc)}") from None
    return summary_from_reply(reply, tracker)


def tracker_free_count(tracker: str, key: str) -> int:
    return free_boards(tracker_summary(tracker), key, tracker)


def _request_from_tracker(tracker: str, key: str, timeout: float) -> tuple[str, int, str]:
    """Ask the tracker for a free board under `key`, waiting at most `timeout` seconds."""
    with _tracker_socket(tracker, timeout) as sock:
        try:
            _send_json(sock, [_TRACKER_REQUEST, key, "", 1])
            reply = _recv_json(sock, tracker)
        except TimeoutError:
            raise RemoteError(
                f"tracker {tracker} had no free board under key '{key}' within {timeout:g} s "
                f"(is a board registered with --tracker {tracker} --key {key}?)"
            ) from None
        except (OSError, ConnectionError, ValueError) as exc:
            raise RemoteError(f"tracker {tracker} vanished while asked for key '{key}': {error_line(exc)}") from None
    return board_from_reply(reply, tracker, key)


def open_session(
    rpc: str | None = None, tracker: str | None = None, key: str | None = None, timeout: float | None = None
):
    """A tvm.rpc.RPCSession on the board at `rpc`, or on a free board the tracker has under `key`.

    `timeout` is the whole session's deadline, from this call on: the wait for a tracker, a
    connection and the handshake, and every call on the board after it. It is also the session
    timeout the server enforces. None sizes it to the board: DEFAULT_TIMEOUT, extended to
    EMULATED_TIMEOUT once the board answers as edgecc's emulated one. A board (or a network path)
    that goes silent cannot hold the caller past it: the session runs through a local relay
    (`_Relay`) that cuts the connection at the deadline, or as soon as a stop signal was received,
    so a call blocked inside TVM's RPC code fails at once instead of waiting for bytes that never come.
    """
    if rpc and tracker:
        raise RemoteError("pass either --rpc HOST:PORT or --tracker HOST:PORT --key KEY, not both")
    if not rpc and not tracker:
        raise RemoteError("no board given: pass --rpc HOST:PORT or --tracker HOST:PORT --key KEY")
    if tracker and not key:
        raise RemoteError(f"--tracker {tracker} needs --key KEY naming the kind of board to request")
    sized = timeout is None
    timeout = DEFAULT_TIMEOUT if sized else timeout
    if timeout <= 0:
        raise RemoteError(f"the RPC timeout must be a positive number of seconds, not {timeout}")
    started = time.monotonic()
    deadline = started + timeout
    if tracker:
        host, port, match_key = _request_from_tracker(tracker, key, timeout)
        where = f"board {host}:{port} (from tracker {tracker}, key '{key}')"
    else:
        host, port = parse_address(rpc)
        match_key, where = "", f"board {rpc}"
    upstream = _connect_socket(host, port, _left(deadline, timeout, where), where)
    relay = _Relay(upstream, deadline, timeout, where)
    # A sized session may grow to EMULATED_TIMEOUT: the server must not end it before the relay does.
    session = _connect_within(relay, match_key, EMULATED_TIMEOUT if sized else timeout)
    session._edgecc_relay = relay  # lives as long as the session; see remote_reason
    if sized and is_emulated(session):
        relay.extend(EMULATED_TIMEOUT, started + EMULATED_TIMEOUT)
    return session


def _left(deadline: float, timeout: float, where: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise RemoteError(f"{where}: the session timeout of {timeout:g} s ran out before the board was reached")
    return left


_latest_relay_ref: list[weakref.ref] = []  # the relay of the session opened last


def _latest_relay():
    return _latest_relay_ref[0]() if _latest_relay_ref else None


_STOP_SIGNALS = sorted(int(s) for s in SIGNALS)  # the ones the program stops on (edgecc/interrupts.py)
_wakeup: list[socket.socket] = []  # [read end, write end] of the pair Python's signal wakeup fd writes to


def _watch_stop_signals() -> socket.socket | None:
    """The read end of a socket that receives each signal's number the moment it arrives.

    Python runs signal handlers in the main thread only, between bytecodes; TVM's destructors block
    in a receive while holding the interpreter lock (a remote object freed as a stop's traceback is
    dropped), so nothing in this process could cut the session then. The wakeup fd is written by
    the C-level handler at once, and the relay process reads it. Taken only where nothing else
    (asyncio) owns it; stale numbers from an earlier stop the caller went on from are drained."""
    if not _wakeup:
        if threading.current_thread() is not threading.main_thread():
            return None
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        try:
            previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        except ValueError:
            previous = None
        if previous != -1:  # someone else's (or not allowed here): give it back
            if previous is not None:
                signal.set_wakeup_fd(previous)
            reader.close()
            writer.close()
            return None
        _wakeup.extend([reader, writer])
    try:
        while _wakeup[0].recv(4096):
            pass
    except OSError:
        pass
    return _wakeup[0]


# The relay: a process of its own, so that it runs while TVM holds this one's interpreter lock.
# argv: upstream socket fd, signal wakeup fd (-1: none), parent pipe fd, seconds left, stop signals.
# The parent pipe carries a new deadline ("SECONDS\n" left from now); its end of file, the parent's end.
_RELAY_MAIN = r"""
import os, selectors, socket, sys, time
upstream_fd, wake_fd, parent_fd, left = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
stops = {int(n) for n in sys.argv[5].split(",")}
deadline = time.monotonic() + left
upstream = socket.socket(fileno=upstream_fd)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
print(listener.getsockname()[1], flush=True)
wake = socket.socket(fileno=wake_fd) if wake_fd >= 0 else None
BUFFER = 4 << 20

def stop_requested():
    if wake is None:
        return False
    try:
        seen = wake.recv(4096, socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return False
    if stops & set(seen):
        return True  # left in place: every relay of this process sees it
    wake.recv(len(seen))  # other signals: not ours to act on
    return False

selector = selectors.DefaultSelector()
selector.register(parent_fd, selectors.EVENT_READ, "parent")  # EOF: the caller's process is gone
if wake is not None:
    selector.register(wake, selectors.EVENT_READ, "wake")
selector.register(listener, selectors.EVENT_READ, "accept")
client, pending = None, {}
while time.monotonic() < deadline:
    if client is not None:
        for sock, other in ((client, upstream), (upstream, client)):
            events = (selectors.EVENT_READ if len(pending[other]) < BUFFER else 0) | (
                selectors.EVENT_WRITE if pending[sock] else 0)
            if sock in selector.get_map():
                selector.unregister(sock)
            if events:
                selector.register(sock, events, "pump")
    ready = selector.select(max(0.0, min(1.0, deadline - time.monotonic())))
    if any(key.data == "wake" for key, _ in ready) and stop_requested():
        break
    if any(key.data == "parent" for key, _ in ready):
        told = os.read(parent_fd, 4096).split()  # seconds left from now (a longer deadline); EOF: gone
        if not told:
            break
        deadline = time.monotonic() + float(told[-1])
    done = False
    for key, events in ready:
        if key.data == "accept":
            client, _ = listener.accept()
            selector.unregister(listener)
            listener.close()
            client.setblocking(False)
            upstream.setblocking(False)
            pending = {client: bytearray(), upstream: bytearray()}
        elif key.data == "pump":
            sock = key.fileobj
            other = upstream if sock is client else client
            try:
                if events & selectors.EVENT_READ:
                    data = sock.recv(1 << 16)
                    if not data:
                        done = True
                        break
                    pending[other] += data
                if events & selectors.EVENT_WRITE and pending[sock]:
                    del pending[sock][: sock.send(pending[sock])]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                done = True
                break
    if done:
        break
for sock in (client, upstream):
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
"""


class _Relay:
    """Bytes between TVM's RPC client (on a loopback socket) and the board, until the session's deadline.

    TVM's client blocks in its own socket calls with no timeout after the handshake: a board whose
    link stopped forwarding kept `edgecc run` waiting forever. The relay owns the board's socket, so
    it can end the session: at the deadline, on a stop signal, when this process ends, or when
    either side closes. Then both sockets close, and TVM's blocked call returns a connection error
    (remote_reason words it). It is a small process of its own, not a thread: TVM holds the
    interpreter lock while it waits in a remote object's destructor, and a thread could then not
    forward the board's answer (a deadlock even with a healthy board) nor cut a silent one."""

    RECENT_S = 10.0

    def __init__(self, upstream: socket.socket, deadline: float, timeout: float, where: str):
        import subprocess
        import sys

        self.deadline, self.timeout, self.where = deadline, timeout, where
        wake = _watch_stop_signals()
        child_end, parent_end = os.pipe()  # the relay reads child_end: deadlines, and EOF once this process is gone
        fds = [upstream.fileno(), child_end] + ([wake.fileno()] if wake is not None else [])
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-c",
                    _RELAY_MAIN,
                    str(upstream.fileno()),
                    str(wake.fileno() if wake is not None else -1),
                    str(child_end),
                    f"{max(deadline - time.monotonic(), 0.0):.3f}",
                    ",".join(map(str, _STOP_SIGNALS)),
                ],
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        finally:
            os.close(child_end)
            upstream.close()
        self._parent_end, self._parent_lock = parent_end, threading.Lock()  # the fd is closed once it ends
        line = self._process.stdout.readline()  # its port, once it listens
        if not line.strip().isdigit():
            self.close()
            raise RemoteError(f"{where}: the session relay did not start")
        self.port = int(line)
        _latest_relay_ref[:] = [weakref.ref(self)]
        threading.Thread(target=self._reap, name="edgecc-rpc-relay-reaper", daemon=True).start()

    @property
    def just_expired(self) -> bool:
        """The deadline passed moments ago: a call failing now was cut by the relay. (An older
        session's deadline, passed long before, says nothing about this failure.)"""
        return 0 <= time.monotonic() - self.deadline < self.RECENT_S

    def extend(self, timeout: float, deadline: float) -> None:
        """A later deadline for the whole session (a board found to be slower than the default assumes)."""
        self.timeout, self.deadline = timeout, deadline
        with self._parent_lock:
            if self._parent_end < 0:
                return  # the relay has ended: the session is over anyway
            try:
                os.write(self._parent_end, f"{max(deadline - time.monotonic(), 0.0):.3f}\n".encode())
            except OSError:
                pass

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()

    def _reap(self) -> None:
        self._process.wait()
        self._process.stdout.close()
        with self._parent_lock:
            os.close(self._parent_end)
            self._parent_end = -1


def _connect_within(relay: _Relay, match_key: str, server_timeout: float):
    """tvm.rpc.connect through the relay, given what is left of the session's deadline.

    TVM's handshake has no timeout of its own: a board whose server accepted the TCP connection but
    stopped serving (its listening loop died with a crashed session, or it is wedged) kept the caller
    waiting forever. The connect runs in a helper thread; when it is not done in time the relay is
    cut, which ends the helper's wait too, and the caller gets a RemoteError."""
    from tvm import rpc as tvm_rpc

    where, outcome = relay.where, {}

    def connect():
        try:
            outcome["session"] = tvm_rpc.connect("127.0.0.1", relay.port, key=match_key, session_timeout=server_timeout)
        except Exception as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=connect, name=f"edgecc-rpc-connect-{where}", daemon=True)
    worker.start()
    try:
        worker.join(max(relay.deadline - time.monotonic(), 0.0))
    finally:
        if worker.is_alive() or "error" in outcome:
            relay.close()
    if worker.is_alive():
        raise RemoteError(
            f"{where} accepted the connection but did not complete the RPC handshake within "
            f"{relay.timeout:g} s: its server is busy with another session, wedged or dead "
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
        raise RemoteError(f"the board failed to load {library.name}: {remote_reason(exc, session)}") from None


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


def remote_reason(exc: BaseException, session=None) -> str:
    """What a failed remote call means, in words (TVM's own text is an RPC protocol check).
    `session`: the one the call used; without it, the session opened last is assumed."""
    text = error_line(exc)
    relay = getattr(session, "_edgecc_relay", None) if session is not None else _latest_relay()
    if relay is not None and relay.just_expired:
        return (
            f"the session timeout ran out ({relay.timeout:g} s for the whole session; a board, or a network "
            "to it, that stopped answering ends there; raise it with --rpc-timeout SECONDS)"
        )
    if "session has expired" in text or "SessionTimeout" in text:
        return "the session timeout ran out (raise it with --rpc-timeout SECONDS)"
    if "kShutdown" in text or "connection" in text.lower() or "socket" in text.lower():
        return (
            "the board closed the session: its worker stopped or crashed (a library that crashes on the "
            "board ends the session; the board itself goes on serving), or the session timeout ran out"
        )
    return text
