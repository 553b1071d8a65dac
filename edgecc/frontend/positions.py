"""The longest sequence a model takes, found when an import at the asked length fails.

A transformer exported with a dynamic sequence axis still has a fixed number of positions (its
position-embedding table, a slice of a constant of position ids): past it the graph adds tensors
of different lengths, and TVM's importer says only `broadcast_to expects the input shape ...`.
ONNX Runtime, the reference, runs the same graph; where it also fails at the asked length and
runs at shorter ones, the length is the problem, and the longest it runs is the model's maximum.
Only run after a failed import, so a compile that works pays nothing.
"""

from __future__ import annotations

from pathlib import Path

from edgecc.errors import ModelError, error_line
from edgecc.frontend.inputs import TensorSpec, resolve_input_specs, sample_inputs


def _has_sequence_axis(graph_inputs, overrides: list[TensorSpec]) -> bool:
    given = {spec.name for spec in overrides}
    return any(
        any(not (isinstance(dim, int) and dim > 0) for dim in dims[1:])
        for name, dims, _ in graph_inputs
        if name not in given
    )


def _runs(session, graph_inputs, overrides, seq_len: int) -> str | None:
    """None when ONNX Runtime runs the model at batch 1 and `seq_len`, else its error."""
    specs = resolve_input_specs(graph_inputs, overrides, 1, seq_len)
    try:
        session.run(None, sample_inputs(specs, {}, seed=0))
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types; any failure counts
        return error_line(exc, limit=200)
    return None


def sequence_too_long(path: Path, overrides: list[TensorSpec], seq_len: int, option: str) -> ModelError | None:
    """A ModelError naming the model's longest sequence when `seq_len` is past it; None when the
    length is not why the model cannot be imported (it has no sequence axis, ONNX Runtime runs it at
    `seq_len`, or at no length at all)."""
    import onnxruntime as ort

    from edgecc.frontend.onnx_import import graph_inputs, load_onnx

    graph = graph_inputs(load_onnx(path))
    if seq_len <= 1 or not _has_sequence_axis(graph, overrides):
        return None
    quiet = ort.SessionOptions()
    quiet.log_severity_level = 4  # its failures at the longer lengths are expected: not on stderr
    try:
        session = ort.InferenceSession(str(path), quiet, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - the reference cannot load it either: the length is not the question
        return None
    failure = _runs(session, graph, overrides, seq_len)
    if failure is None or _runs(session, graph, overrides, 1) is not None:
        return None
    shortest_failing, longest_running = seq_len, 1
    while shortest_failing - longest_running > 1:  # the lengths it runs at are 1 .. its maximum
        middle = (shortest_failing + longest_running) // 2
        if _runs(session, graph, overrides, middle) is None:
            longest_running = middle
        else:
            shortest_failing = middle
    return ModelError(
        f"{path} takes sequences of at most {longest_running} tokens (ONNX Runtime runs it at "
        f"{longest_running} and fails at {longest_running + 1}), so {option} {seq_len} is too long; "
        f"use {option} {longest_running} or less"
    )
