"""The Python API; every `edgecc` command is a thin layer over the function of the same name here."""

from __future__ import annotations

from pathlib import Path


def compile(model: str, target: str = "host", output=None, *, preset: str = "default", log=print, **options):
    """Compile `model` (built-in name, .onnx path or Hugging Face folder) for `target`.

    Keyword options are the fields of `edgecc.options.CompileOptions`. The resolved options are
    logged first. Returns a CompileResult whose artifact folder holds the library, manifest.json,
    report.json, report.md and report.html. `output` defaults to out/<model>-<target>.
    """
    from edgecc.options import options_from_preset
    from edgecc.pipeline import default_output, run_pipeline

    output = Path(output) if output is not None else default_output(model, target)
    opts = options_from_preset(preset, target=target, output=output, **options)
    log("edgecc compile " + " ".join(f"{k}={v}" for k, v in opts.to_dict().items() if v not in (None, (), {}, False)))
    return run_pipeline(str(model), opts, log=log)


def tune(
    model: str,
    target: str = "host",
    output=None,
    *,
    trials: int | None = None,
    budget_seconds: float | None = None,
    tuning_logs="tuning_logs",
    log=print,
    **options,
):
    """Tune `model`'s kernels for `target` (records go to TUNING_LOGS/<target name>/, a rerun resumes
    from them), then compile with the result. `output` defaults to out/<model>-<target>-tuned.
    `trials` defaults to 64, or with a time budget to as many as the budget allows (CompileOptions)."""
    from edgecc.pipeline import default_output

    output = Path(output) if output is not None else Path(f"{default_output(model, target)}-tuned")
    return compile(
        model,
        target,
        output,
        log=log,
        tune=True,
        trials=trials,
        budget_seconds=budget_seconds,
        tuning_logs=(Path(tuning_logs),),
        **options,
    )


def run(
    artifact_dir, inputs: dict | None = None, *, rpc=None, tracker=None, key=None, timeout: float | None = None
) -> dict:
    """Run a compiled artifact (here, or on a board over RPC) and return its outputs by name.
    Without `inputs`, random inputs in the model's valid ranges are used."""
    from edgecc.artifact.loader import load_artifact
    from edgecc.measure.bench import artifact_sample_inputs

    artifact = load_artifact(artifact_dir, rpc=rpc, tracker=tracker, key=key, timeout=timeout)
    try:
        return artifact.run(inputs if inputs is not None else artifact_sample_inputs(artifact))
    finally:
        artifact.close()


def bench(
    artifact_dir,
    *,
    inputs: dict | None = None,
    min_seconds: float = 2.0,
    rpc=None,
    tracker=None,
    key=None,
    timeout: float | None = None,
    compare_onnxruntime: bool = True,
    seq_len: int | None = None,
    batch: int | None = None,
) -> dict:
    """Re-measure an artifact's latency; ONNX Runtime on the same inputs beside it when run locally.
    Without `inputs`: random inputs at the artifact's shape, or at `seq_len` / `batch` (any size up to
    the maximum of an artifact compiled with --max-seq-len / --max-batch)."""
    from edgecc.measure.bench import bench_artifact

    return bench_artifact(
        artifact_dir,
        inputs=inputs,
        min_seconds=min_seconds,
        rpc=rpc,
        tracker=tracker,
        key=key,
        timeout=timeout,
        compare_onnxruntime=compare_onnxruntime,
        seq_len=seq_len,
        batch=batch,
    )


def compare(artifact_a, artifact_b, *, remeasure: bool = True, seconds: float = 2.0):
    """What changed from artifact A to B. When both run here, their latencies are measured again side
    by side (alternating rounds, same inputs and threads, `seconds` each); otherwise, or with
    remeasure=False, the stored figures are shown and labelled as coming from different runs."""
    from edgecc.reports.compare import compare_artifacts

    return compare_artifacts(artifact_a, artifact_b, remeasure_here=remeasure, seconds=seconds)


def report(artifact_dir) -> list[Path]:
    """Re-render report.md and report.html from the artifact's report.json; returns the files written."""
    from edgecc.reports import render_reports
    from edgecc.reports.compare import WRONG_KIND, load_report, wrong_kind

    folder = Path(artifact_dir)
    report = load_report(folder)
    try:
        render_reports(folder, report)
    except WRONG_KIND as exc:
        raise wrong_kind(folder / "report.json", exc) from None
    return [folder / "report.md", folder / "report.html"]


def deploy(artifact_dir, output, *, threads: int | None = None, cuda_runtime=None, tvm_source=None, log=print):
    """Bundle a compiled artifact for its board: model, TVM runtime libraries, C API, example program.

    `tvm_source`: for a Jetson artifact compiled with cuda="12", a TVM checkout to build TVM's CUDA 12
    runtime module from (once; cached). Returns an edgecc.bundle.DeployResult (bundle folder, files
    and sizes, board requirements).
    """
    from edgecc.bundle import deploy as deploy_bundle

    return deploy_bundle(
        artifact_dir, output, threads=threads, cuda_runtime=cuda_runtime, tvm_source=tvm_source, log=log
    )
