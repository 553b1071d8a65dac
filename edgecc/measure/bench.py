"""Re-measure an existing artifact (edgecc bench)."""

from __future__ import annotations

from pathlib import Path

from edgecc.artifact.loader import checked_file, load_artifact
from edgecc.frontend.inputs import sample_inputs
from edgecc.measure.latency import measure_side_by_side, onnxruntime_session, time_artifact
from edgecc.threads import host_threads


def artifact_sample_inputs(artifact, seed: int = 0, seq_len: int | None = None, batch: int | None = None) -> dict:
    """Inputs in valid ranges (token ids below their table's size: the manifest's valid_range); at the
    artifact's (largest) shape, or at seq_len / batch for an artifact with dynamic axes."""
    specs = artifact.inputs
    if seq_len is not None or batch is not None:
        from edgecc.buckets.shapes import specs_at

        specs = specs_at(specs, batch=batch, seq_len=seq_len)
    return sample_inputs(specs, artifact.valid_ranges, seed)


def bench_artifact(
    folder,
    *,
    inputs=None,
    min_seconds=2.0,
    rpc=None,
    tracker=None,
    key=None,
    timeout=120.0,
    compare_onnxruntime=True,
    seq_len=None,
    batch=None,
) -> dict:
    """edgecc's latency here or on a board; ONNX Runtime in alternating rounds beside it when run here."""
    artifact = load_artifact(folder, rpc=rpc, tracker=tracker, key=key, timeout=timeout)
    inputs = inputs if inputs is not None else artifact_sample_inputs(artifact, seq_len=seq_len, batch=batch)
    result = {
        "where": artifact.where,
        "emulated": artifact.emulated,
        "input_shapes": {name: list(value.shape) for name, value in inputs.items()},
    }
    name = artifact.manifest.get("reference_model", "reference.onnx")
    reference = Path(folder) / str(name)
    if compare_onnxruntime and artifact.session is None and reference.exists():
        reference = checked_file(folder, artifact.manifest, name, "reference model")
        threads = artifact.manifest["target"]["board"].get("cores") or host_threads()
        result.update(
            measure_side_by_side(artifact, onnxruntime_session(reference, threads), inputs, min_seconds),
            onnxruntime_threads=threads,
        )
    else:
        result["edgecc"] = time_artifact(artifact, inputs, min_seconds)
    return result
