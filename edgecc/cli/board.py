"""`edgecc board setup|emulate` and `edgecc tracker`: an emulated aarch64 board and a TVM RPC tracker."""

from __future__ import annotations

import signal
import time

import click

from edgecc.errors import EdgeccError


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


def _wait_forever(processes_and_names) -> None:
    """Foreground until Ctrl-C or until a child exits; then stop everything started here."""
    stopping = {"flag": False}

    def handler(signum, frame):
        stopping["flag"] = True

    old = signal.signal(signal.SIGTERM, handler)
    try:
        while not stopping["flag"]:
            for thing, name in processes_and_names:
                if thing.process.poll() is not None:
                    raise EdgeccError(f"{name} on {thing.address} stopped (exit code {thing.process.returncode})")
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        for thing, _ in reversed(processes_and_names):
            thing.stop()
        click.echo("stopped")


@board.command("emulate")
@click.option("--arch", type=click.Choice(["aarch64"]), default="aarch64", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to serve on.")
@click.option("--port", type=click.IntRange(1, 65535), default=9090, show_default=True)
@click.option("--tracker", metavar="HOST:PORT", help="Register with this TVM RPC tracker.")
@click.option("--key", help="Device key to register under (with --tracker), e.g. raspberry-pi-5.")
def emulate_command(arch, host, port, tracker, key):
    """Serve TVM RPC from an emulated aarch64 board in the foreground until Ctrl-C.

    Correctness only: timings taken on it are emulated and say nothing about a real board's speed.
    """
    from edgecc.remote.board import start_board
    from edgecc.remote.tracker import port_is_free

    if not port_is_free(host, port):
        raise EdgeccError(f"cannot serve on {host}:{port}: the port is in use")
    running = start_board(port=port, host=host, tracker=tracker, key=key, arch=arch, progress=click.echo)
    click.echo(f"use: --rpc {running.address}" + (f"  or  --tracker {tracker} --key {key}" if tracker else ""))
    click.echo("timings on this board are emulated (QEMU), not board speed; Ctrl-C stops it")
    _wait_forever([(running, "emulated board")])


@click.command("tracker")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=9190, show_default=True)
def tracker_command(host, port):
    """Run a TVM RPC tracker (tvm.exec.rpc_tracker) in the foreground until Ctrl-C."""
    from edgecc.remote.tracker import start_tracker

    running = start_tracker(port=port, host=host)
    click.echo(f"tracker ready on {running.address}; boards register with --tracker {running.address} --key KEY")
    _wait_forever([(running, "tracker")])


