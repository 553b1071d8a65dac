"""What the `edgecc` program (edgecc/console.py) does with the stop signals.

SIGINT, SIGTERM and SIGHUP become a clean exit. Each is recorded and raised as `Stopped` (a
KeyboardInterrupt, so every `except BaseException` cleanup runs: the staged artifact folder is
removed, a board session is closed) and the command prints one line and exits with 128 + the
signal's number. The handlers are installed before the command's modules are imported, so a Ctrl-C
while they load is a clean exit too, not a traceback.

A library may swallow the exception: onnxslim imports onnxruntime inside a bare `except:`, and a
signal that lands there is gone. So the handler never leaves a signal ignored (a second one always
raises again), and the record outlives the exception: the pipeline calls `check()` between steps
and after third-party calls, and the program ends as "stopped" whenever a signal was recorded.
edgecc's own cleanup runs inside `deferred()`, where a repeated signal (a supervisor's second
`kill`) is recorded but cannot cut the cleanup short; SIGKILL still can, and the next compile into
the same place removes what that leaves (see edgecc/atomic.py).

Only the program installs these handlers; the Python API leaves a program's signals alone.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager

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
_deferring = [0]  # depth of `deferred()` blocks; > 0 while edgecc's own cleanup runs, and once exiting


def _handler(signum, _frame):
    stopped = Stopped(signum)
    _received.append(stopped)
    if _deferring[0] == 0:
        raise stopped


def received() -> Stopped | None:
    """The signal that stopped the command, if one did: a library that swallowed the exception (or
    failed in odd ways after it, half-imported) must still end as "stopped", not as its own error."""
    return _received[0] if _received else None


def check() -> None:
    """Raise the first recorded signal again: for the points between steps and after third-party
    code, where a signal a library swallowed must still stop the command."""
    if _received and _deferring[0] == 0:
        raise _received[0]


def forget() -> None:
    """The command handled the stop as its normal end (a foreground server stopped with Ctrl-C)."""
    _received.clear()


@contextmanager
def deferred():
    """Signals are recorded but not raised inside: cleanup that must run to its end."""
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1


def exiting() -> None:
    """The program is printing its last line and exiting: later signals are only recorded."""
    _deferring[0] += 1


def install() -> None:
    """Route the stop signals through `Stopped` (main thread only, as Python requires)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue  # started with it ignored (nohup, a background job of a script): keep it so
        signal.signal(signum, _handler)


def stop_message(exc: KeyboardInterrupt | None = None) -> tuple[str, int]:
    """The one line and exit code for an interrupted command: the first stop signal recorded (a later
    one, or a swallowed one, does not change it), else `exc` (a Ctrl-C not routed through here)."""
    exc = received() or exc
    if isinstance(exc, Stopped):
        return f"{exc} (anything half-written was removed)", exc.exit_code
    return "interrupted (anything half-written was removed)", 128 + signal.SIGINT
