"""The `edgecc` command: one module per command group, each a thin layer over `edgecc.api`."""

from __future__ import annotations

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

COMMANDS = [compile, tune, run, bench, deploy_command, models, targets, report_command, compare_command, logs,
            board, tracker_command]


def _fail(message: str, code: int = 2):
    click.echo(f"edgecc: error: {message}", err=True)
    sys.exit(code)


class EdgeccGroup(click.Group):
    """Turns every EdgeccError into one line on stderr and a non-zero exit; never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgeccError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in edgecc: still one line, with where to look
            text = str(exc).strip()
            _fail(f"internal error: {type(exc).__name__}: {text.splitlines()[0] if text else ''}"
                  " (please report this with the command you ran)", 1)


@click.group(cls=EdgeccGroup)
@click.version_option(package_name="edgecc")
def main():
    """Compile transformer models for edge devices with Apache TVM Relax."""


for _command in COMMANDS:
    main.add_command(_command)

if __name__ == "__main__":
    main()
