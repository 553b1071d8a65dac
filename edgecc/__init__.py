"""edgecc: compile transformer models for edge devices with Apache TVM Relax."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import EdgeccError  # noqa: E402
from .threads import size_tvm_thread_pool

size_tvm_thread_pool()


def compile(model: str, target: str = "host", output="out/model", *, preset: str = "default", log=print,
            **options):
    """Compile `model` (built-in name, .onnx path or Hugging Face folder) for `target`.

    Keyword options are the fields of `edgecc.options.CompileOptions`. Returns a CompileResult
    whose artifact folder holds the library, manifest.json, report.json and report.md.
    """
    from .options import options_from_preset
    from .pipeline import run_pipeline

    opts = options_from_preset(preset, target=target, output=output, **options)
    return run_pipeline(str(model), opts, log=log)


def run(artifact_dir, inputs: dict, *, rpc=None, tracker=None, key=None, timeout: float = 120.0) -> dict:
    """Run a compiled artifact (here, or on a board over RPC) and return its outputs by name."""
    from .runtime import load_artifact

    return load_artifact(artifact_dir, rpc=rpc, tracker=tracker, key=key, timeout=timeout).run(inputs)


def bench(artifact_dir, *, inputs: dict | None = None, min_seconds: float = 2.0, rpc=None, tracker=None,
          key=None, timeout: float = 120.0, compare_onnxruntime: bool = True) -> dict:
    """Re-measure an artifact's latency; ONNX Runtime on the same inputs beside it when run locally."""
    from .benchmark import bench_artifact

    return bench_artifact(artifact_dir, inputs=inputs, min_seconds=min_seconds, rpc=rpc, tracker=tracker, key=key,
                          timeout=timeout, compare_onnxruntime=compare_onnxruntime)


def deploy(artifact_dir, output, *, threads: int | None = None, cuda_runtime=None, log=print):
    """Bundle a compiled artifact for its board: model, TVM runtime libraries, C API, example program.

    Returns an edgecc.bundle.DeployResult (bundle folder, files and sizes, board requirements).
    """
    from .bundle import deploy as deploy_bundle

    return deploy_bundle(artifact_dir, output, threads=threads, cuda_runtime=cuda_runtime, log=log)


__all__ = ["compile", "run", "bench", "deploy", "EdgeccError", "__version__"]
