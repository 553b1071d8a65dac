"""`edgecc compile` and `edgecc tune`: parse, call edgecc.compile / edgecc.tune, print the summary."""

from __future__ import annotations

from pathlib import Path

import click

from edgecc.backends.cuda_toolkits import DEFAULT_CUDA, TOOLKITS
from edgecc.cli._shared import parse_duration, remote_options, stderr_log
from edgecc.options import PRECISIONS

# The artifact was written and passed verification, but the board failed while timing or profiling it
# (its --rpc-timeout, mostly): distinct from 2 (nothing written) and 3 (verification failed).
MEASUREMENT_FAILED_EXIT = 4


def _model_options(function):
    for option in reversed(
        [
            click.option("--batch", type=int, default=None, help="Batch size (default 1)."),
            click.option("--seq-len", type=int, default=None, help="Sequence length for text models (default 128)."),
            click.option(
                "--max-seq-len",
                type=int,
                default=None,
                help="One artifact for every length 1..N (static kernels per bucket, padded inside).",
            ),
            click.option(
                "--seq-buckets",
                default=None,
                metavar="LIST",
                help="The buckets' lengths, e.g. 16,32,64,128 (default: powers of two from 16 to --max-seq-len).",
            ),
            click.option("--max-batch", type=int, default=None, help="One artifact for every batch 1..B."),
            click.option(
                "--input",
                "input_specs",
                multiple=True,
                metavar="NAME:SHAPE:DTYPE",
                help="Fix an input's shape, e.g. input_ids:1x128:int64 (repeatable).",
            ),
        ]
    ):
        function = option(function)
    return function


@click.command()
@click.argument("model")
@click.option("--target", "-t", default="host", show_default=True, help="Board name, family or target file.")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Artifact folder (default out/<model>-<target>).",
)
@click.option("--preset", default="default", show_default=True, help="quick, default, tuned or int8.")
@_model_options
@click.option("--inputs", "sample_inputs", type=click.Path(path_type=Path), help=".npz of inputs for verification.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None)
@click.option(
    "--cuda",
    type=click.Choice(sorted(TOOLKITS)),
    default=None,
    help=f"Jetson: the CUDA major of the board's JetPack (12: JetPack 6, 13: JetPack 7; default {DEFAULT_CUDA}).",
)
@click.option("--calibration", type=click.Path(path_type=Path), help=".npz of calibration inputs for int8.")
@click.option("--max-accuracy-drop", type=float, default=None)
@click.option("--sparse-attention", default=None, metavar="SPEC", help="e.g. window=64,global=2")
@click.option(
    "--fast-math/--no-fast-math", default=None, help="Polynomial exp/erf/tanh (default on; ~1e-7 relative error)."
)
@click.option(
    "--fusion/--no-fusion",
    default=None,
    help="Fusion graph passes: attention, LayerNorm, transposes into matmuls, GELU (default on).",
)
@click.option("--tune", is_flag=True, default=None, help="Auto-tune kernels with MetaSchedule first.")
@click.option("--trials", type=int, default=None, help="Tuning trials (default 64; with --budget: what it allows).")
@click.option("--budget", default=None, help="Tuning time budget, e.g. 20m.")
@click.option(
    "--tuning-logs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Tuning log folders to use (default ./tuning_logs).",
)
@remote_options
@click.option("--no-verify", is_flag=True, help="Skip the comparison with ONNX Runtime.")
@click.option("--tolerance", type=float, default=None, help="Max relative error (fp32 default 1e-4).")
@click.option("--no-measure", is_flag=True, help="Skip latency measurement.")
@click.option("--min-seconds", type=float, default=None, help="Minimum timing duration per runtime.")
@click.option("--dump-ir", type=click.Path(path_type=Path), default=None, help="Write the module after each pass.")
@click.option("--print-pipeline", is_flag=True, help="Print the steps and graph passes, then exit.")
@click.option("--seed", type=int, default=None, help="Seed of the random verification inputs (default 0).")
@click.option("--quiet", "-q", is_flag=True)
def compile(model, target, output, preset, budget, print_pipeline, no_verify, no_measure, quiet, **values):
    """Compile MODEL (built-in name, .onnx file or Hugging Face folder) for a target.

    Exit status: 0 done; 2 an error (nothing written); 3 verification failed; 4 the artifact was written
    and verified, but the board failed while measuring it (the report says what was not measured)."""
    import edgecc

    values = {k: v for k, v in values.items() if v not in (None, ())}
    values.update(budget_seconds=parse_duration(budget), verify=not no_verify, measure=not no_measure, quiet=quiet)
    if print_pipeline:
        from edgecc.options import options_from_preset
        from edgecc.pipeline import pipeline_plan

        click.echo("\n".join(pipeline_plan(options_from_preset(preset, target=target, **values))))
        return
    result = edgecc.compile(model, target, output, preset=preset, log=stderr_log(quiet), **values)
    return print_summary(result.report, result.artifact_dir)


@click.command()
@click.argument("model")
@click.option("--target", "-t", default="host", show_default=True)
@click.option(
    "--trials",
    type=int,
    default=None,
    help="Trials over all kernels (default 64; with --budget: what the budget allows).",
)
@click.option("--budget", default=None, help="Time budget, e.g. 20m; tuning stops cleanly when it is spent.")
@click.option(
    "--tuning-logs",
    type=click.Path(path_type=Path),
    default=Path("tuning_logs"),
    show_default=True,
    help="Root of the shared logs; records go to ROOT/<target-name>/.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Artifact folder (default out/<model>-<target>-tuned).",
)
@_model_options
@remote_options
@click.option("--min-seconds", type=float, default=None, help="Minimum timing duration per runtime.")
@click.option("--quiet", "-q", is_flag=True)
def tune(model, target, trials, budget, tuning_logs, output, quiet, **values):
    """Tune MODEL's kernels for a target (resumes from the log), then compile with the result."""
    import edgecc

    values = {k: v for k, v in values.items() if v not in (None, ())}
    result = edgecc.tune(
        model,
        target,
        output,
        trials=trials,
        budget_seconds=parse_duration(budget),
        tuning_logs=tuning_logs,
        log=stderr_log(quiet),
        quiet=quiet,
        **values,
    )
    return print_summary(result.report, result.artifact_dir)


def measurement_failure(report: dict) -> str | None:
    """Why timing or profiling a verified artifact failed on its board, if it did."""
    for section in ("latency", "profile"):
        part = report.get(section) or {}
        if part.get("status") == "failed":
            return part.get("reason") or f"{section} failed"
    return None


def print_summary(report: dict, folder: Path) -> int:
    """The summary lines; the exit code: 0, or MEASUREMENT_FAILED_EXIT when the artifact was written
    and verified but the board failed while measuring it (a script can tell the two apart)."""
    verification = report["verification"]
    click.echo(f"artifact: {folder / report['artifact']['library']}")
    click.echo(f"report:   {folder / 'report.md'} (and report.json, report.html)")
    click.echo(f"verify:   {verification['status']}: {verification['reason']}")
    schedules = report.get("schedules") or {}
    if schedules:
        unscheduled = schedules.get("unscheduled") or []
        click.echo(
            f"kernels:  {schedules['kernels']}, {len(unscheduled)} unscheduled"
            + (f" ({', '.join(unscheduled)})" if unscheduled else "")
        )
    latency = report.get("latency") or {}
    if latency.get("edgecc"):
        line = f"latency:  edgecc median {latency['edgecc']['median_ms']:.3f} ms"
        if latency.get("onnxruntime"):
            line += (
                f", ONNX Runtime {latency['onnxruntime']['median_ms']:.3f} ms "
                f"(ratio {latency['ratio_vs_onnxruntime']:.2f}x)"
            )
        if latency.get("emulated"):
            line += " [EMULATED board: not a speed measurement]"
        click.echo(line)
    failure = measurement_failure(report)
    if failure:
        click.echo(
            f"edgecc: warning: measurement failed, the verified artifact is kept: {failure} "
            f"(exit status {MEASUREMENT_FAILED_EXIT})",
            err=True,
        )
        return MEASUREMENT_FAILED_EXIT
    return 0
