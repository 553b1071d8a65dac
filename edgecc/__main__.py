"""`python -m edgecc` runs the edgecc command."""

from edgecc.console import main

main()
