"""`python -m edgecc.cli` runs the edgecc command."""

from edgecc.cli import main

main()
