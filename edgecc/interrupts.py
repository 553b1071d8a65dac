"""What the `edgecc` program (edgecc/console.py) does with the stop signals.

SIGINT, SIGTERM and SIGHUP become a clean exit. Each is raised as `Stopped` (a KeyboardInterrupt,
so every `except BaseException` cleanup runs: the staged artifact folder is removed, a board
session is closed) and the command prints one line and exits with 128 + the signal's number.
Later signals are ignored while that cleanup runs, so a second Ctrl-C or a `kill` repeated by a
supervisor cannot cut it short (SIGKILL still can; the next compile into the same place removes
what that leaves, see edgecc/atomic.py). The handlers are installed before the command's modules
are imported, so a Ctrl-C while they load is a clean exit too, not a traceback.

Only the program installs these handlers; the Python API leaves a program's signals alone.
"""

from __future__ import annotations

import signal

SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


class Stopped(KeyboardInterrupt):
    """The command was stopped by a signal."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_received: list[Stopped] = []


def _handler(signum, _frame):
    for other in SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    stopped = Stopped(signum)
    _received.append(stopped)
    raise stopped


def received() -> Stopped | None:
    """The signal that stopped the command, if one did: a library that swallowed the exception (or
    failed in odd ways after it, half-imported) must still end as "stopped", not as its own error."""
    return _received[0] if _received else None


def install() -> None:
    """Route the stop signals through `Stopped` (main thread only, as Python requires)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue  # started with it ignored (nohup, a background job of a script): keep it so
        signal.signal(signum, _handler)


def stop_message(exc: KeyboardInterrupt) -> tuple[str, int]:
    """The one line and exit code for an interrupted command."""
    if isinstance(exc, Stopped):
        return f"{exc} (anything half-written was removed)", exc.exit_code
    return "interrupted (anything half-written was removed)", 128 + signal.SIGINT
