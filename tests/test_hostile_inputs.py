"""Token ids outside the embedding table: refused before any kernel (run, bench, the Python API, a board),
and the library itself never reads past the table (clamped gathers), compared with ONNX Runtime.

Negative ids are refused. ONNX's Gather would read row rows + id for -rows <= id < 0 (ONNX Runtime
does), but a negative token id is a caller's bug, and refusing keeps the CLI, the API and a bundle's
C API in agreement (edgecc/artifact/manifest.py); the test below records ONNX Runtime's behaviour.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import edgecc
from edgecc.errors import InputSpecError

from fixtures_hostile import assert_refused, invoke

VOCAB = 1000  # bert-tiny-test


def _inputs(ids) -> dict:
    ids = np.asarray(ids, dtype=np.int64).reshape(1, 8)
    return {"input_ids": ids, "attention_mask": np.ones((1, 8), np.int64)}


def _ort(model, inputs) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


def test_the_manifest_records_each_table_input_and_its_range(tiny_artifact):
    entries = {e["name"]: e for e in json.loads((tiny_artifact / "manifest.json").read_text())["inputs"]}
    assert entries["input_ids"]["valid_range"] == [0, VOCAB]
    assert "valid_range" not in entries["attention_mask"]


@pytest.mark.parametrize(
    "ids, shown",
    [
        ([1, 2, 3, VOCAB, 5, 6, 7, 8], f"holds {VOCAB} at [0, 3]"),
        ([1, 2, 3, 4, 5, 6, 7, 10**9], "holds 1000000000 at [0, 7]"),
        ([-1] + [1] * 7, "holds -1 at [0, 0]"),
        ([-(VOCAB + 1)] + [1] * 7, f"holds {-(VOCAB + 1)} at [0, 0]"),
    ],
)
def test_run_and_bench_refuse_ids_outside_the_table(tiny_artifact, tmp_path, ids, shown):
    np.savez(tmp_path / "bad.npz", **_inputs(ids))
    for command in (
        ["run", tiny_artifact, "--inputs", tmp_path / "bad.npz"],
        ["bench", tiny_artifact, "--inputs", tmp_path / "bad.npz", "--min-seconds", "0.1"],
    ):
        result = invoke(*command)
        assert_refused(result.exit_code, result.stderr, "input 'input_ids'", shown, f"0 <= v < {VOCAB}", code=2)


def test_python_api_refuses_them_too(tiny_artifact):
    with pytest.raises(InputSpecError, match=f"outside 0 <= v < {VOCAB}"):
        edgecc.run(tiny_artifact, _inputs([VOCAB + 7] * 8))
    with pytest.raises(InputSpecError, match="holds -3"):
        edgecc.bench(tiny_artifact, inputs=_inputs([-3] * 8), min_seconds=0.1)
    from edgecc.artifact.loader import load_artifact

    artifact = load_artifact(tiny_artifact)
    try:
        with pytest.raises(InputSpecError, match="input_ids"):
            artifact.arguments(_inputs([VOCAB] * 8))
    finally:
        artifact.close()


def test_onnx_runtime_agrees_on_ids_past_the_end_and_wraps_negative_ones(tiny_artifact):
    """What the reference does with the same ids: refuses past either end, wraps -rows..-1."""
    reference = tiny_artifact / "reference.onnx"
    for ids in ([VOCAB] * 8, [-(VOCAB + 1)] * 8):
        with pytest.raises(Exception, match="out of bounds|indices element out of data bounds|INVALID_ARGUMENT"):
            _ort(reference, _inputs(ids))
    wrapped = _ort(reference, _inputs([-1] * 8))
    np.testing.assert_allclose(wrapped, _ort(reference, _inputs([VOCAB - 1] * 8)), rtol=1e-6, atol=1e-6)


def test_the_library_itself_never_reads_past_the_table(tiny_artifact):
    """Called below every check (as a bundle's C caller or a user's own loader could), bad ids read a
    clamped row: the same numbers ONNX Runtime gives for the nearest valid id, never memory past the
    table (which gave values ~1e20 or a segfault before)."""
    import tvm

    from edgecc.artifact.loader import load_artifact

    reference = tiny_artifact / "reference.onnx"
    artifact = load_artifact(tiny_artifact)
    try:

        def raw(ids):
            arrays = _inputs(ids)
            args = [tvm.runtime.tensor(arrays[s.name], artifact.device) for s in artifact.inputs]
            return artifact.vm["main"](*args).numpy()

        past = raw([5, VOCAB, 10**9, 7, 2**40, 9, VOCAB + 1, 3])
        np.testing.assert_allclose(
            past,
            _ort(reference, _inputs([5, VOCAB - 1, VOCAB - 1, 7, VOCAB - 1, 9, VOCAB - 1, 3])),
            rtol=1e-4,
            atol=1e-5,
        )
        below = raw([-5000, 1, 2, -(2**40), 4, 5, 6, 7])  # below -rows: clamps to row 0
        np.testing.assert_allclose(below, _ort(reference, _inputs([0, 1, 2, 0, 4, 5, 6, 7])), rtol=1e-4, atol=1e-5)
        wrapped = raw([-1, 1, 2, 3, 4, 5, 6, -VOCAB])  # ONNX's own wrap-around, as the importer writes it
        np.testing.assert_allclose(
            wrapped, _ort(reference, _inputs([VOCAB - 1, 1, 2, 3, 4, 5, 6, 0])), rtol=1e-4, atol=1e-5
        )
        assert np.isfinite(past).all() and np.abs(past).max() < 100
    finally:
        artifact.close()


def test_every_gather_of_caller_ids_is_clamped_in_the_report(tiny_artifact):
    report = json.loads((tiny_artifact / "report.json").read_text())
    assert report["passes"]["clamp_gather_indices"]["gathers_clamped"] >= 1


def test_an_artifact_compiled_before_valid_range_still_checks_ids(tiny_artifact, tmp_path):
    """Older manifests have no valid_range: the range comes from the (hash-checked) reference model."""
    old = tmp_path / "old"
    shutil.copytree(tiny_artifact, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for entry in manifest["inputs"]:
        entry.pop("valid_range", None)
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputSpecError, match=f"outside 0 <= v < {VOCAB}"):
        edgecc.run(old, _inputs([VOCAB] * 8))


def test_ids_are_checked_on_the_host_before_a_board_sees_them(tiny_artifact, rpc_board, tmp_path):
    """--rpc: the check runs here, before the inputs are sent (x86 TVM RPC server on loopback)."""
    np.savez(tmp_path / "bad.npz", **_inputs([VOCAB] * 8))
    result = invoke("run", tiny_artifact, "--inputs", tmp_path / "bad.npz", "--rpc", rpc_board)
    assert_refused(result.exit_code, result.stderr, "input 'input_ids'", code=2)
    np.savez(tmp_path / "good.npz", **_inputs([3] * 8))
    good = invoke("run", tiny_artifact, "--inputs", tmp_path / "good.npz", "--rpc", rpc_board)
    assert good.exit_code == 0, good.output
