"""The `edgecc` command: one module per command group, each a thin layer over `edgecc.api`."""

from __future__ import annotations

import os
import sys

import click

from edgecc.cli.board import board, tracker_command
from edgecc.cli.catalog import models, targets
from edgecc.cli.compile import compile, tune
from edgecc.cli.deploy import deploy_command
from edgecc.cli.logs import logs
from edgecc.cli.report import compare_command, report_command
from edgecc.cli.run import bench, run
from edgecc.errors import EdgeccError
from edgecc.interrupts import exiting, received, stop_message

COMMANDS = [
    compile,
    tune,
    run,
    bench,
    deploy_command,
    models,
    targets,
    report_command,
    compare_command,
    logs,
    board,
    tracker_command,
]


def _fail(message: str, code: int = 2):
    exiting()  # a signal now cannot cut the one line short or turn it into a traceback
    click.echo(f"edgecc: error: {message}", err=True)
    sys.exit(code)


class EdgeccGroup(click.Group):
    """Turns every EdgeccError into one line on stderr and a non-zero exit; never a traceback.
    Click's own usage errors (a bad option value, a missing argument) become the same one line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "edgecc"
            _fail(f"{exc.format_message()} (see {command} --help)", exc.exit_code)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.exceptions.Abort:  # Ctrl-C while click itself was parsing
            _fail("interrupted", 130)
        except KeyboardInterrupt as exc:  # a stop signal outside the command: while parsing, or as it returned
            _fail(*stop_message(exc))
        if received() is not None:  # a library swallowed the signal and the command ran on: it still ends stopped
            _fail(*stop_message())
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure ends as one line; see _one_line
            if received() is not None or isinstance(exc, KeyboardInterrupt):
                _fail(*stop_message(exc))  # Ctrl-C, or SIGTERM/SIGHUP (edgecc/interrupts.py)
            _one_line(exc)


def _one_line(exc: BaseException):
    if isinstance(exc, EdgeccError):
        _fail(str(exc), exc.exit_code)
    if isinstance(exc, BrokenPipeError):  # `edgecc targets | head -1`: the reader left; not an error of ours
        _silence_stdout()
        sys.exit(141)
    if isinstance(exc, OSError):  # the file system said no (disk full, permissions): the user can act on it
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or type(exc).__name__}{where}", 1)
    if isinstance(exc, MemoryError):
        _fail("out of memory", 1)
    if not isinstance(exc, Exception):
        raise exc
    text = str(exc).strip()  # a bug in edgecc: still one line, with where to look
    _fail(
        f"internal error: {type(exc).__name__}: {text.splitlines()[0] if text else ''}"
        " (please report this with the command you ran)",
        1,
    )


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush into the closed pipe stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@click.group(cls=EdgeccGroup)
@click.version_option(package_name="edgecc")
def main():
    """Compile transformer models for edge devices with Apache TVM Relax."""


for _command in COMMANDS:
    main.add_command(_command)
