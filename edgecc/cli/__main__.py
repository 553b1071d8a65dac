"""`python -m edgecc.cli` runs the edgecc command."""

from edgecc.console import main

main()
