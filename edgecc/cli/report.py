"""`edgecc report OUT` re-renders report.md and report.html; `edgecc compare A B` compares two artifacts
(re-measuring both side by side when they run here)."""

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
@click.option("--stored", is_flag=True, help="Only compare the figures stored in the two reports; measure nothing.")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds of timing per artifact for the side-by-side re-measurement.",
)
def compare_command(out_a: Path, out_b: Path, stored: bool, seconds: float):
    """Show what changed from OUT_A to OUT_B: latency, size, accuracy, energy, top kernel changes.

    When both artifacts run on this machine their latencies are measured again, side by side in
    alternating rounds on the same inputs and threads; otherwise the stored figures are labelled as
    coming from different runs."""
    import edgecc

    if not stored:
        click.echo(f"timing {out_a} and {out_b} side by side (about {2 * seconds:g} s) ...", err=True)
    click.echo(edgecc.compare(out_a, out_b, remeasure=not stored, seconds=seconds).text())
