"""The `edgecc` command: a thin click layer over the library API."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import sys
from pathlib import Path

import click

from .errors import EdgeccError


def _fail(message: str, code: int = 2):
    click.echo(f"edgecc: error: {message}", err=True)
    sys.exit(code)


class EdgeccGroup(click.Group):
    """Turns every EdgeccError into one line on stderr and a non-zero exit; never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgeccError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug in edgecc: still one line, with where to look
            _fail(f"internal error: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                  " (please report this with the command you ran)", 1)


@click.group(cls=EdgeccGroup)
@click.version_option(package_name="edgecc")
def main():
    """Compile transformer models for edge devices with Apache TVM Relax."""


def parse_duration(text: str | None) -> float | None:
    """'90', '90s', '20m', '1h' -> seconds."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise EdgeccError(f"bad duration '{text}': use e.g. 90s, 20m or 1h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


@main.command()
def models():
    """List the built-in model architectures."""
    from .models import BUILTIN_MODELS

    for model in BUILTIN_MODELS.values():
        click.echo(f"{model.name:16s} {model.modality:6s} {model.description}")


@main.command()
@click.argument("name", required=False)
def targets(name):
    """List the known targets, or show one (a name, family alias or path to a target file)."""
    from .targets import aliases, known_target_names, load_target

    if name:
        click.echo(json.dumps(load_target(name).to_dict(), indent=2))
        return
    for target_name in known_target_names():
        target = load_target(target_name)
        click.echo(f"{target.name:28s} {target.kind:8s} {target.description}")
    click.echo("\nFamilies: " + ", ".join(f"{a} -> {b}" for a, b in sorted(aliases().items())))


def remote_options(function):
    for option in reversed([
        click.option("--rpc", metavar="HOST:PORT", help="Run on a board's TVM RPC server."),
        click.option("--tracker", metavar="HOST:PORT", help="Ask a TVM RPC tracker for a board."),
        click.option("--key", help="Device key to request from the tracker."),
        click.option("--rpc-timeout", type=float, default=120.0, show_default=True,
                     help="Seconds to wait for a board session."),
    ]):
        function = option(function)
    return function


@main.command()
@click.argument("model")
@click.option("--target", "-t", default="host", show_default=True, help="Board name, family or target file.")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None, help="Artifact folder.")
@click.option("--preset", default="default", show_default=True, help="quick, default, tuned or int8.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--seq-len", type=int, default=128, show_default=True)
@click.option("--input", "input_specs", multiple=True, metavar="NAME:SHAPE:DTYPE",
              help="Fix an input's shape, e.g. input_ids:1x128:int64 (repeatable).")
@click.option("--inputs", "sample_inputs", type=click.Path(path_type=Path), help=".npz of inputs for verification.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8", "mixed"]), default=None)
@click.option("--calibration", type=click.Path(path_type=Path), help=".npz of calibration inputs for int8.")
@click.option("--max-accuracy-drop", type=float, default=None)
@click.option("--sparse-attention", default=None, metavar="SPEC", help="e.g. window=64,global=2")
@click.option("--fast-math/--no-fast-math", default=None,
              help="Polynomial exp/erf/tanh (default on; ~1e-7 relative error).")
@click.option("--fusion/--no-fusion", default=None,
              help="Fusion graph passes: attention, LayerNorm, transposes into matmuls, GELU (default on).")
@click.option("--tune", is_flag=True, default=None, help="Auto-tune kernels with MetaSchedule first.")
@click.option("--trials", type=int, default=None)
@click.option("--budget", default=None, help="Tuning time budget, e.g. 20m.")
@click.option("--tuning-logs", multiple=True, type=click.Path(path_type=Path),
              help="Tuning log folders to use (default ./tuning_logs).")
@remote_options
@click.option("--no-verify", is_flag=True, help="Skip the comparison with ONNX Runtime.")
@click.option("--tolerance", type=float, default=None, help="Max relative error (fp32 default 1e-4).")
@click.option("--no-measure", is_flag=True, help="Skip latency measurement.")
@click.option("--min-seconds", type=float, default=None, help="Minimum timing duration per runtime.")
@click.option("--dump-ir", type=click.Path(path_type=Path), default=None, help="Write the module after each pass.")
@click.option("--print-pipeline", is_flag=True, help="Print the steps and graph passes, then exit.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", "-q", is_flag=True)
def compile(model, target, output, preset, budget, print_pipeline, no_verify, no_measure, quiet, **values):
    """Compile MODEL (built-in name, .onnx file or Hugging Face folder) for a target."""
    from .options import options_from_preset
    from .pipeline import run_pipeline

    output = output or Path("out") / f"{Path(model).stem}-{target}"
    values = {k: (tuple(v) if isinstance(v, tuple) else v) for k, v in values.items() if v not in (None, ())}
    opts = options_from_preset(preset, target=target, output=output, budget_seconds=parse_duration(budget),
                               verify=not no_verify, measure=not no_measure, quiet=quiet, **values)
    if print_pipeline:
        _print_pipeline(opts)
        return
    log = (lambda *_: None) if quiet else (lambda text: click.echo(text, err=True))
    log("edgecc compile " + " ".join(f"{k}={v}" for k, v in opts.to_dict().items()
                                      if v not in (None, (), {}, False)))
    result = run_pipeline(model, opts, log=log)
    _print_summary(result.report, result.artifact_dir)


@main.command()
@click.argument("model")
@click.option("--target", "-t", default="host", show_default=True)
@click.option("--trials", type=int, default=64, show_default=True, help="Trial budget across all kernels.")
@click.option("--budget", default=None, help="Time budget, e.g. 20m; tuning stops cleanly when it is spent.")
@click.option("--tuning-logs", type=click.Path(path_type=Path), default=Path("tuning_logs"), show_default=True,
              help="Root of the shared logs; records go to ROOT/<target-name>/.")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None, help="Artifact folder.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--seq-len", type=int, default=128, show_default=True)
@click.option("--input", "input_specs", multiple=True, metavar="NAME:SHAPE:DTYPE")
@remote_options
@click.option("--min-seconds", type=float, default=2.0, show_default=True)
@click.pass_context
def tune(ctx, model, target, trials, budget, tuning_logs, output, **values):
    """Tune MODEL's kernels for a target (resumes from the log), then compile with the result."""
    output = output or Path("out") / f"{Path(model).stem}-{target}-tuned"
    ctx.invoke(compile, model=model, target=target, output=output, tune=True, trials=trials, budget=budget,
               tuning_logs=(tuning_logs,), **values)


def _print_pipeline(opts) -> None:
    from .passes import graph_passes
    from .pipeline import step_names
    from .targets import load_target

    target = load_target(opts.target)
    click.echo(f"target {target.name} ({target.kind})")
    for index, name in enumerate(step_names(), 1):
        click.echo(f"{index:2d}. {name}")
        if name == "graph passes":
            for pass_name, _ in graph_passes(opts, target):
                click.echo(f"      - {pass_name}")


def _print_summary(report: dict, folder: Path) -> None:
    verification = report["verification"]
    click.echo(f"artifact: {folder / report['artifact']['library']}")
    click.echo(f"report:   {folder / 'report.md'} (and report.json)")
    click.echo(f"verify:   {verification['status']}: {verification['reason']}")
    latency = report.get("latency") or {}
    if latency.get("edgecc"):
        line = f"latency:  edgecc median {latency['edgecc']['median_ms']:.3f} ms"
        if latency.get("onnxruntime"):
            line += (f", ONNX Runtime {latency['onnxruntime']['median_ms']:.3f} ms "
                     f"(ratio {latency['ratio_vs_onnxruntime']:.2f}x)")
        if latency.get("emulated"):
            line += " [EMULATED board: not a speed measurement]"
        click.echo(line)


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--inputs", "inputs_file", type=click.Path(path_type=Path), help=".npz keyed by input name.")
@click.option("--outputs", "outputs_file", type=click.Path(path_type=Path), default=None,
              help="Where to write outputs (.npz keyed by output name).")
@remote_options
def run(artifact, inputs_file, outputs_file, rpc, tracker, key, rpc_timeout):
    """Run a compiled artifact on inputs and write its outputs."""
    import numpy as np

    from .benchmark import artifact_sample_inputs
    from .inputs import load_inputs_file
    from .runtime import load_artifact

    loaded = load_artifact(artifact, rpc=rpc, tracker=tracker, key=key, timeout=rpc_timeout)
    inputs = load_inputs_file(inputs_file, loaded.inputs) if inputs_file else artifact_sample_inputs(loaded)
    outputs = loaded.run(inputs)
    if outputs_file:
        _save_npz_atomic(Path(outputs_file), outputs)
        click.echo(f"wrote {', '.join(outputs)} to {outputs_file}")
    for name, value in outputs.items():
        click.echo(f"{name}: shape {list(value.shape)} {value.dtype} mean {float(np.mean(value)):.6g}")


def _save_npz_atomic(path: Path, arrays: dict) -> None:
    import os
    import tempfile

    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise EdgeccError(f"cannot write {path}: {exc.strerror}") from None


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--min-seconds", type=float, default=2.0, show_default=True)
@click.option("--inputs", "inputs_file", type=click.Path(path_type=Path))
@remote_options
def bench(artifact, min_seconds, inputs_file, rpc, tracker, key, rpc_timeout):
    """Re-measure an artifact's latency (with ONNX Runtime beside it when run here)."""
    from .benchmark import bench_artifact
    from .inputs import load_inputs_file
    from .runtime import read_manifest

    inputs = None
    if inputs_file:
        from .inputs import TensorSpec

        specs = [TensorSpec.from_dict(d) for d in read_manifest(artifact)["inputs"]]
        inputs = load_inputs_file(inputs_file, specs)
    result = bench_artifact(artifact, inputs=inputs, min_seconds=min_seconds, rpc=rpc, tracker=tracker, key=key,
                            timeout=rpc_timeout)
    if result["emulated"]:
        click.echo("EMULATED board: these timings say nothing about the real board's speed.")
    click.echo(f"{'runtime':12s} {'median ms':>10s} {'min ms':>9s} {'p90 ms':>9s} {'p99 ms':>9s} {'CV':>6s} {'runs':>6s}")
    for name in ("edgecc", "onnxruntime"):
        s = result.get(name)
        if s:
            click.echo(f"{name:12s} {s['median_ms']:10.3f} {s['min_ms']:9.3f} {s['p90_ms']:9.3f} {s['p99_ms']:9.3f} "
                       f"{s['cv']:6.3f} {s['runs']:6d}")
    if "ratio_vs_onnxruntime" in result:
        click.echo(f"edgecc / ONNX Runtime: {result['ratio_vs_onnxruntime']:.2f}x")


def _register_subsystem_commands() -> None:
    from . import commands

    for info in pkgutil.iter_modules(commands.__path__):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            main.add_command(command)


_register_subsystem_commands()

if __name__ == "__main__":
    main()
