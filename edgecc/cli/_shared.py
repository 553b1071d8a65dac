"""Option groups and parsers shared by several commands."""

from __future__ import annotations

import math
import re

import click

from edgecc.errors import EdgeccError


def parse_duration(text: str | None) -> float | None:
    """'90', '90s', '20m', '1h' -> seconds."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise EdgeccError(f"bad duration '{text}': use e.g. 90s, 20m or 1h")
    seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if seconds <= 0:
        raise EdgeccError(f"bad duration '{text}': it must be longer than zero")
    return seconds


class FiniteFloat(click.ParamType):
    """A finite number (no nan or inf) above `low` (or at least `low`, with `inclusive`)."""

    name = "number"

    def __init__(self, low: float = 0.0, inclusive: bool = True):
        self.low, self.inclusive = low, inclusive

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if number < self.low or (number == self.low and not self.inclusive):
            self.fail(f"{value!r} must be {'>=' if self.inclusive else '>'} {self.low:g}", param, ctx)
        return number


def remote_options(function):
    for option in reversed(
        [
            click.option("--rpc", metavar="HOST:PORT", help="Run on a board's TVM RPC server."),
            click.option("--tracker", metavar="HOST:PORT", help="Ask a TVM RPC tracker for a board."),
            click.option("--key", help="Device key to request from the tracker."),
            click.option(
                "--rpc-timeout",
                type=FiniteFloat(0.0, inclusive=False),
                default=None,
                help="Seconds a board session may take in all (default: 120, or 1800 on edgecc's emulated board).",
            ),
        ]
    ):
        function = option(function)
    return function


def stderr_log(quiet: bool):
    return (lambda *_: None) if quiet else (lambda text: click.echo(text, err=True))
