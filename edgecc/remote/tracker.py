"""A TVM RPC tracker (tvm.exec.rpc_tracker) on this machine, as a device farm would run one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from edgecc.errors import RemoteError
from edgecc.remote.board.boot import PARENT_WATCH
from edgecc.remote.board.server import free_port, stop_process_group

TRACKER_MAIN = """\
import runpy, sys
sys.argv = ["tvm.exec.rpc_tracker"] + sys.argv[1:]
runpy.run_module("tvm.exec.rpc_tracker", run_name="__main__", alter_sys=True)
"""


class Tracker:
    def __init__(self, process: subprocess.Popen, host: str, port: int):
        self.process, self.host, self.port = process, host, port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> Tracker:
        from edgecc.remote.session import tracker_summary

        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                tail = (self.process.stdout.read() or "").strip().splitlines()[-1:] or ["no output"]
                raise RemoteError(f"tracker on {self.address} exited with code {self.process.returncode}: {tail[0]}")
            try:
                tracker_summary(self.address, timeout=2)
                return self
            except RemoteError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RemoteError(f"tracker on {self.address} did not start within {timeout:.0f} s") from None
                time.sleep(0.3)

    def stop(self) -> None:
        stop_process_group(self.process)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def start_tracker(port: int | None = None, host: str = "127.0.0.1", wait: bool = True, capture: bool = True) -> Tracker:
    port = port or free_port(host)
    if not port_is_free(host, port):
        raise RemoteError(f"cannot start a tracker on {host}:{port}: the port is in use")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PARENT_WATCH + TRACKER_MAIN,
            "--host",
            host,
            "--port",
            str(port),
            "--port-end",
            str(port + 1),
        ],
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, "TVM_USE_RUNTIME_LIB": "1"},
    )  # the tracker needs only tvm.rpc: faster start
    tracker = Tracker(process, host, port)
    return tracker.wait_ready() if wait else tracker
