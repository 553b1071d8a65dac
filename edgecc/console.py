"""The `edgecc` program's entry point (console script, `python -m edgecc`, `python -m edgecc.cli`).

Kept apart from edgecc/cli/ so that the stop signals are routed (edgecc/interrupts.py) before the
command's modules are imported: a Ctrl-C while they load is a clean exit too, not a traceback.
"""

from __future__ import annotations

import sys

from edgecc.interrupts import exiting, install, stop_message


def main() -> None:
    install()
    if not sys.warnoptions:  # library UserWarnings (TVM's importer, torch's exporter) are not the user's to act on
        import warnings

        warnings.simplefilter("ignore")
    try:
        from edgecc.cli import main as command
    except KeyboardInterrupt as exc:
        exiting()
        message, code = stop_message(exc)
        sys.stderr.write(f"edgecc: error: {message}\n")
        sys.exit(code)
    command(prog_name="edgecc")
