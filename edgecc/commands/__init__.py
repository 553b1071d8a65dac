"""CLI command groups contributed by subsystems; `edgecc.cli` adds every `COMMANDS` entry found here."""
