"""`edgecc logs show|merge|check`: the tuning logs a team shares."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import click

from edgecc.errors import EdgeccError


def _require_logs(paths) -> None:
    from edgecc.tuning.records import log_files

    missing = [str(p) for p in paths if not log_files(Path(p))]
    if missing:
        raise EdgeccError(f"no tuning logs (*.jsonl) found in: {', '.join(missing)}")


def _report_bad_lines(readout) -> None:
    for file, number, why in readout.bad_lines:
        click.echo(f"  skipped {file}:{number}: {why}", err=True)


@click.group()
def logs():
    """Show, merge and check shared tuning logs."""


@logs.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def show(paths):
    """Records per board and target, with the best latency per kernel (named by its computations,
    buffer shapes and dtypes)."""
    from edgecc.tuning.describe import describe_workload
    from edgecc.tuning.records import best_records, read_logs

    _require_logs(paths)
    readout = read_logs(paths)
    _report_bad_lines(readout)
    by_target = defaultdict(list)
    for record in readout.records:
        by_target[(record.data["board"], record.data["target"])].append(record)
    for (board, target), records in sorted(by_target.items()):
        best = best_records(records)
        versions = Counter(f"tvm {r.data['tvm']}, edgecc {r.data['edgecc']}" for r in records)
        click.echo(f"board {board}: {len(records)} records, {len(best)} kernels, {versions.most_common(1)[0][0]}")
        click.echo(
            f"  target {json.loads(target).get('kind')} {json.loads(target).get('mcpu', '')} "
            f"{json.loads(target).get('mtriple', '')}".rstrip()
        )
        for (workload, _), record in sorted(best.items(), key=lambda kv: kv[1].latency, reverse=True)[:10]:
            kernel = describe_workload(record.workload) if record.workload is not None else "(workload line missing)"
            which = "default schedule, " if record.is_default else ""
            click.echo(
                f"  best {record.latency * 1e6:10.2f} us  {kernel}  [{which}{workload[:8]}, {record.data['time']}]"
            )
    click.echo(
        f"{len(readout.records)} good records in {len(readout.files)} file(s), "
        f"{len(readout.bad_lines)} bad line(s) skipped"
    )


@logs.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="The merged log file (ends in .jsonl), or a folder to write records.jsonl into.",
)
def merge(sources, output):
    """Keep the best record per kernel and target from SOURCES; drop duplicates; say what came from where.

    Reading and writing happen under the output log's lock, so OUTPUT may be one of SOURCES while a
    tuner appends to it: nothing it appends is lost."""
    from edgecc.tuning.records import merge_logs

    _require_logs(sources)
    destination = output if output.suffix == ".jsonl" else output / "records.jsonl"
    merged = merge_logs(sources, destination)
    readout, best = merged.readout, merged.best
    _report_bad_lines(readout)
    origin = Counter(record.source.rsplit(":", 1)[0] for record in best.values())
    for file in readout.files:
        click.echo(f"  {file}: {origin.get(str(file), 0)} best record(s) kept")
    dropped = len(readout.records) - len(best)
    click.echo(
        f"wrote {len(best)} records ({len({k[1] for k in best})} target(s)) to {destination}; "
        f"dropped {dropped} slower or duplicate record(s), skipped {len(readout.bad_lines)} bad line(s)"
    )


@logs.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--fix", is_flag=True, help="Rewrite each damaged file without its bad lines (good lines kept as is).")
def check(paths, fix):
    """Find unusable lines (file:line and why): torn or corrupt lines, wrong types, latencies that are not
    a finite number > 0, targets, workloads or traces TVM cannot read. Exits 1 when there are any."""
    from edgecc.tuning.records import drop_bad_lines, read_logs

    _require_logs(paths)
    readout = read_logs(paths)
    for file, number, why in readout.bad_lines:
        click.echo(f"{file}:{number}: {why}")
    click.echo(
        f"{len(readout.records)} good record(s), {len(readout.bad_lines)} bad line(s) in {len(readout.files)} file(s)"
    )
    if fix:
        for file in sorted({file for file, _, _ in readout.bad_lines}):
            click.echo(f"fixed {file}: dropped {drop_bad_lines(Path(file))} bad line(s)")
    elif readout.bad_lines:
        raise SystemExit(1)
