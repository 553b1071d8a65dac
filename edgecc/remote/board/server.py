"""Start and stop the emulated aarch64 TVM RPC server (QEMU user-mode, loopback only)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

from edgecc.atomic import write_text_atomic
from edgecc.errors import RemoteError, ToolchainError
from edgecc.remote.board.boot import BOOT, EMULATED_ENV, SESSION_DIED, SITECUSTOMIZE
from edgecc.remote.board.setup import QEMU, BoardPaths, ensure_board


def _write_launchers(paths: BoardPaths) -> Path:
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise ToolchainError(f"{QEMU} is not installed; run `edgecc board setup` (or apt-get install qemu-user-static)")
    boot = paths.base / "boot"
    boot.mkdir(exist_ok=True)
    (boot / "sitecustomize.py").write_text(SITECUSTOMIZE)
    wrapper = paths.base / "python-aarch64"
    text = f'#!/bin/sh\nexec "{qemu}" -L "{paths.root}" "{paths.python}" "$@"\n'
    if not wrapper.exists() or wrapper.read_text() != text:
        write_text_atomic(wrapper, text, mode=0o755)
    return wrapper


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmulatedBoard:
    """A running emulated board; use as a context manager or call stop()."""

    def __init__(self, process: subprocess.Popen, host: str, port: int, tracker: str | None, key: str | None):
        self.process, self.host, self.port, self.tracker, self.key = process, host, port, tracker, key
        self.log: deque[str] = deque(maxlen=200)
        self.events: deque[str] = deque(maxlen=50)  # sessions whose worker died (the board kept serving)
        self._bound = threading.Event()
        self._registered = threading.Event()
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _read_output(self) -> None:
        for line in self.process.stdout:
            line = line.rstrip()
            self.log.append(line)
            if SESSION_DIED in line:
                self.events.append(line[line.index(SESSION_DIED) :])
            if f"bind to {self.host}:{self.port}" in line:
                self._bound.set()

    def wait_ready(self, timeout: float = 300.0, progress=None) -> EmulatedBoard:
        """Until the server listens (and, with a tracker, is registered under its key)."""
        deadline = time.monotonic() + timeout
        while not self._bound.wait(0.5):
            if self.process.poll() is not None:
                self._reader.join(2)
                tail = " | ".join(list(self.log)[-3:]) or "no output"
                raise RemoteError(
                    f"emulated board on {self.address} exited with code {self.process.returncode}: {tail}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RemoteError(f"emulated board on {self.address} did not start within {timeout:.0f} s")
        # "bind to" is logged just before listen(): wait until a connection is actually accepted.
        while not self._accepts_connections():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RemoteError(f"emulated board on {self.address} bound its port but never listened")
            time.sleep(0.2)
        if self.tracker:
            from edgecc.remote.session import tracker_free_count

            while tracker_free_count(self.tracker, self.key) < 1:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RemoteError(
                        f"emulated board on {self.address} never registered with tracker "
                        f"{self.tracker} under key '{self.key}'"
                    )
                time.sleep(0.5)
        if progress:
            where = f" (tracker {self.tracker}, key '{self.key}')" if self.tracker else ""
            progress(f"emulated aarch64 board ready on {self.address}{where}")
        return self

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        stop_process_group(self.process)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_board(
    port: int | None = None,
    host: str = "127.0.0.1",
    tracker: str | None = None,
    key: str | None = None,
    arch: str = "aarch64",
    progress=print,
    wait: bool = True,
    timeout: float = 300.0,
) -> EmulatedBoard:
    """Start the emulated board's RPC server (setting the board up first if needed)."""
    if tracker and not key:
        raise RemoteError("registering with a tracker needs a key: pass --key KEY")
    if tracker:
        from edgecc.remote.session import tracker_summary

        tracker_summary(tracker, timeout=10)  # a wrong or dead tracker fails here, before QEMU starts
    paths = ensure_board(arch, progress=progress)
    wrapper = _write_launchers(paths)
    port = port or free_port(host)
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": f"{paths.base / 'boot'}:{paths.site}",
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "TVM_USE_RUNTIME_LIB": "1",
            EMULATED_ENV: f"qemu-{arch}",
        }
    )
    for name in ("PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(name, None)
    args = [str(wrapper), "-c", BOOT, str(wrapper), "--host", host, "--port", str(port), "--port-end", str(port + 1)]
    if tracker:
        args += ["--tracker", tracker, "--key", key, "--custom-addr", host]
    process = subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    board = EmulatedBoard(process, host, port, tracker, key)
    if wait:
        try:
            board.wait_ready(timeout, progress)
        except BaseException:
            board.stop()
            raise
    return board


def stop_process_group(process: subprocess.Popen) -> None:
    """End a server started in its own process group (TVM's RPC server forks a worker per session,
    the tracker its handlers): all of them, politely first, then for certain."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, 15)
        process.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, 9)
        except ProcessLookupError:
            pass
        process.wait(5)
