"""`edgecc report OUT` re-renders report.md and report.html; `edgecc compare A B` diffs two artifacts."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("out", type=click.Path(path_type=Path))
def report_command(out: Path):
    """Re-render OUT/report.md and OUT/report.html from OUT/report.json."""
    import edgecc

    click.echo(f"rendering {out}/report.md and report.html (with plots) ...", err=True)
    written = edgecc.report(out)
    click.echo(f"wrote {' and '.join(str(p) for p in written)}")


@click.command("compare")
@click.argument("out_a", type=click.Path(path_type=Path))
@click.argument("out_b", type=click.Path(path_type=Path))
def compare_command(out_a: Path, out_b: Path):
    """Show what changed from OUT_A to OUT_B: latency, size, accuracy, energy, top kernel changes."""
    import edgecc

    click.echo(edgecc.compare(out_a, out_b).text())
