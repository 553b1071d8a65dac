"""`edgecc run` and `edgecc bench`: use a compiled artifact here or on a board."""

from __future__ import annotations

from pathlib import Path

import click

from edgecc.cli._shared import FiniteFloat, remote_options


def _inputs_for(artifact: Path, inputs_file: Path | None) -> dict | None:
    if not inputs_file:
        return None
    from edgecc.artifact.loader import read_manifest
    from edgecc.artifact.manifest import input_valid_ranges
    from edgecc.frontend.inputs import TensorSpec, check_value_ranges, load_inputs_file

    manifest = read_manifest(artifact)
    specs = [TensorSpec.from_dict(d) for d in manifest["inputs"]]
    arrays = load_inputs_file(inputs_file, specs)
    check_value_ranges(arrays, input_valid_ranges(manifest), f"inputs file {inputs_file}")
    return arrays


def _check_outputs_file(path: Path, artifact: Path) -> None:
    """--outputs may not land on a folder or on one of the artifact's own files (it would break it)."""
    from edgecc.artifact.loader import read_manifest
    from edgecc.artifact.output import WRITTEN_AFTER_MANIFEST
    from edgecc.errors import EdgeccError

    if path.is_dir():
        raise EdgeccError(f"--outputs {path} is a folder; give a file name, e.g. {path / 'outputs.npz'}")
    own = {*read_manifest(artifact).get("files", {}), "manifest.json", *WRITTEN_AFTER_MANIFEST}
    if path.resolve().parent == Path(artifact).resolve() and path.name in own:
        raise EdgeccError(
            f"--outputs {path} would overwrite a file of the artifact {artifact}; write the outputs somewhere else"
        )


@click.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--inputs", "inputs_file", type=click.Path(path_type=Path), help=".npz keyed by input name.")
@click.option(
    "--outputs",
    "outputs_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write outputs (.npz keyed by output name).",
)
@remote_options
def run(artifact, inputs_file, outputs_file, rpc, tracker, key, rpc_timeout):
    """Run a compiled artifact on inputs and write its outputs."""
    import numpy as np

    import edgecc
    from edgecc.atomic import write_npz_atomic

    if outputs_file:
        _check_outputs_file(Path(outputs_file), artifact)
    outputs = edgecc.run(
        artifact, _inputs_for(artifact, inputs_file), rpc=rpc, tracker=tracker, key=key, timeout=rpc_timeout
    )
    if outputs_file:
        write_npz_atomic(Path(outputs_file), outputs)
        click.echo(f"wrote {', '.join(outputs)} to {outputs_file}")
    for name, value in outputs.items():
        click.echo(f"{name}: shape {list(value.shape)} {value.dtype} mean {float(np.mean(value)):.6g}")


@click.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--min-seconds", type=FiniteFloat(0.0), default=2.0, show_default=True)
@click.option("--inputs", "inputs_file", type=click.Path(path_type=Path))
@click.option(
    "--seq-len",
    type=int,
    default=None,
    help="Time random inputs of this length (an artifact compiled with --max-seq-len takes any up to it).",
)
@click.option("--batch", type=int, default=None, help="Time random inputs of this batch (up to --max-batch).")
@remote_options
def bench(artifact, min_seconds, inputs_file, seq_len, batch, rpc, tracker, key, rpc_timeout):
    """Re-measure an artifact's latency (with ONNX Runtime beside it, in alternating rounds, when run here)."""
    import edgecc

    result = edgecc.bench(
        artifact,
        inputs=_inputs_for(artifact, inputs_file),
        min_seconds=min_seconds,
        rpc=rpc,
        tracker=tracker,
        key=key,
        timeout=rpc_timeout,
        seq_len=seq_len,
        batch=batch,
    )
    if result["emulated"]:
        click.echo("EMULATED board: these timings say nothing about the real board's speed.")
    click.echo(
        "inputs: " + ", ".join(f"{name} {'x'.join(map(str, shape))}" for name, shape in result["input_shapes"].items())
    )
    click.echo(
        f"{'runtime':12s} {'median ms':>10s} {'min ms':>9s} {'p90 ms':>9s} {'p99 ms':>9s} {'CV':>6s} {'runs':>6s}"
    )
    for name in ("edgecc", "onnxruntime"):
        s = result.get(name)
        if s:
            click.echo(
                f"{name:12s} {s['median_ms']:10.3f} {s['min_ms']:9.3f} {s['p90_ms']:9.3f} {s['p99_ms']:9.3f} "
                f"{s['cv']:6.3f} {s['runs']:6d}"
            )
    if "ratio_vs_onnxruntime" in result:
        low, high = result["ratio_spread"]
        click.echo(
            f"edgecc / ONNX Runtime: {result['ratio_vs_onnxruntime']:.2f}x ({result['rounds']} alternating "
            f"rounds on the same inputs, {result['onnxruntime_threads']} threads each; rounds' ratios "
            f"{low:.2f}-{high:.2f}x)"
        )
