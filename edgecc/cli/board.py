"""`edgecc board setup|emulate` and `edgecc tracker`: an emulated aarch64 board and a TVM RPC tracker."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import click

from edgecc.errors import EdgeccError
from edgecc.interrupts import deferred
from edgecc.interrupts import forget as forget_stop


def _is_loopback(host: str) -> bool:
    import ipaddress
    import socket

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def _require_loopback_or_consent(host: str, allow_remote: bool, what: str) -> None:
    """TVM RPC has no authentication: whoever reaches the port runs any code they upload on this machine."""
    if _is_loopback(host):
        return
    if not allow_remote:
        raise EdgeccError(
            f"--host {host} would let any machine that reaches it run arbitrary code here (TVM RPC "
            f"has no authentication); {what} serves on 127.0.0.1 by default: pass --allow-remote to "
            "serve on a network address anyway, on a network you trust"
        )
    click.echo(
        f"WARNING: {what} serves on {host} without authentication: anyone who reaches it can run any code "
        "on this machine. Only do this on a network you trust.",
        err=True,
    )


@click.group()
def board():
    """Set up and run an emulated board (QEMU user-mode) that serves TVM RPC."""


@board.command("setup")
@click.option("--arch", type=click.Choice(["aarch64"]), default="aarch64", show_default=True)
@click.option("--force", is_flag=True, help="Rebuild the cached sysroot and wheels.")
def setup_command(arch, force):
    """Download (once, cached) the aarch64 Python, TVM runtime and QEMU the emulated board needs."""
    from edgecc.remote.board import ensure_board

    paths = ensure_board(arch, progress=click.echo, force=force)
    click.echo(f"board ready: {paths.base}")


RESTARTS = 3  # a board that keeps dying is reported dead after this many restarts


@dataclass
class Watched:
    thing: object  # an EmulatedBoard or a Tracker: .process, .address, .stop()
    name: str
    restart: Callable[[], object] | None = None  # starts a replacement; None: a death ends the command
    restarts: int = 0


def _wait_forever(watched: list[Watched]) -> None:
    """Foreground until Ctrl-C / SIGTERM or until a child dies for good; then stop everything started here.

    A board whose process exits is restarted (up to RESTARTS times); sessions a board survived (their
    worker died: a library that crashed on the board) are printed as they happen."""
    try:
        while True:
            for w in watched:
                while getattr(w.thing, "events", None):
                    click.echo(f"{w.name} on {w.thing.address}: {w.thing.events.popleft()}", err=True)
                if w.thing.process.poll() is None:
                    continue
                code = w.thing.process.returncode
                if w.restart is None:
                    raise EdgeccError(f"{w.name} on {w.thing.address} stopped (exit code {code})")
                if w.restarts >= RESTARTS:
                    raise EdgeccError(
                        f"{w.name} on {w.thing.address} stopped (exit code {code}) after {RESTARTS} restarts; giving up"
                    )
                click.echo(f"{w.name} on {w.thing.address} stopped (exit code {code}); restarting it", err=True)
                w.thing.stop()
                w.thing, w.restarts = w.restart(), w.restarts + 1
                click.echo(f"{w.name} ready again on {w.thing.address}", err=True)
            time.sleep(0.5)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP (edgecc/interrupts.py, when run as the program)
        forget_stop()  # the way a foreground server is meant to end
    finally:
        with deferred():  # a second Ctrl-C must not leave a QEMU board or a tracker running
            for w in reversed(watched):
                w.thing.stop()
            click.echo("stopped")


@board.command("emulate")
@click.option("--arch", type=click.Choice(["aarch64"]), default="aarch64", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to serve on.")
@click.option("--port", type=click.IntRange(1, 65535), default=9090, show_default=True)
@click.option("--tracker", metavar="HOST:PORT", help="Register with this TVM RPC tracker.")
@click.option("--key", help="Device key to register under (with --tracker), e.g. raspberry-pi-5.")
@click.option("--allow-remote", is_flag=True, help="Serve on an address other machines can reach (see the warning).")
def emulate_command(arch, host, port, tracker, key, allow_remote):
    """Serve TVM RPC from an emulated aarch64 board in the foreground until Ctrl-C.

    Correctness only: timings taken on it are emulated and say nothing about a real board's speed.
    """
    from edgecc.remote.board import start_board
    from edgecc.remote.tracker import port_is_free

    _require_loopback_or_consent(host, allow_remote, "the emulated board")
    if not port_is_free(host, port):
        raise EdgeccError(f"cannot serve on {host}:{port}: the port is in use")

    def start():
        return start_board(port=port, host=host, tracker=tracker, key=key, arch=arch, progress=click.echo)

    running = start()
    click.echo(f"use: --rpc {running.address}" + (f"  or  --tracker {tracker} --key {key}" if tracker else ""))
    click.echo("timings on this board are emulated (QEMU), not board speed; Ctrl-C stops it")
    _wait_forever([Watched(running, "emulated board", start)])


@click.command("tracker")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=9190, show_default=True)
@click.option("--allow-remote", is_flag=True, help="Serve on an address other machines can reach (see the warning).")
def tracker_command(host, port, allow_remote):
    """Run a TVM RPC tracker (tvm.exec.rpc_tracker) in the foreground until Ctrl-C."""
    from edgecc.remote.tracker import start_tracker

    _require_loopback_or_consent(host, allow_remote, "the tracker")
    running = start_tracker(port=port, host=host)
    click.echo(f"tracker ready on {running.address}; boards register with --tracker {running.address} --key KEY")
    _wait_forever([Watched(running, "tracker")])
