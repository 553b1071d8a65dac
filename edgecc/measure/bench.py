"""Re-measure an existing artifact (edgecc bench)."""

from __future__ import annotations

from pathlib import Path

from edgecc.artifact.loader import load_artifact
from edgecc.frontend.inputs import sample_inputs
from edgecc.measure.latency import onnxruntime_session, time_artifact, time_onnxruntime
from edgecc.threads import host_threads


def artifact_sample_inputs(artifact, seed: int = 0) -> dict:
    """Inputs in valid ranges, with embedding bounds read from the artifact's reference model."""
    import onnx

    from edgecc.frontend.onnx_import import _index_bounds

    reference = Path(artifact.folder) / artifact.manifest.get("reference_model", "reference.onnx")
    bounds = _index_bounds(onnx.load(str(reference)), artifact.inputs) if reference.exists() else {}
    return sample_inputs(artifact.inputs, bounds, seed)


def bench_artifact(folder, *, inputs=None, min_seconds=2.0, rpc=None, tracker=None, key=None, timeout=120.0,
                   compare_onnxruntime=True) -> dict:
    artifact = load_artifact(folder, rpc=rpc, tracker=tracker, key=key, timeout=timeout)
    inputs = inputs if inputs is not None else artifact_sample_inputs(artifact)
    result = {"where": artifact.where, "emulated": artifact.emulated,
              "edgecc": time_artifact(artifact, inputs, min_seconds)}
    reference = Path(folder) / artifact.manifest.get("reference_model", "reference.onnx")
    if compare_onnxruntime and artifact.session is None and reference.exists():
        threads = artifact.manifest["target"]["board"]["cores"] or host_threads()
        result["onnxruntime"] = time_onnxruntime(onnxruntime_session(reference, threads), inputs, min_seconds)
        result["ratio_vs_onnxruntime"] = result["edgecc"]["median_ms"] / result["onnxruntime"]["median_ms"]
    return result
