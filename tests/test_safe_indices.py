"""Every op that takes indices from the caller (Gather, GatherElements, GatherND, ScatterElements,
ScatterND, OneHot) never reads or writes out of bounds.

Where the indices come straight from a model input (or that input plus a constant), their range is
known at the boundary: `edgecc run` and the Python API refuse a value past either end (n, -n - 1,
1e6) with one clear line, as ONNX Runtime does, and accept every value in [-n, n) with ONNX
Runtime's exact result (negative indices count from the end). Where they are computed inside the
graph, or a caller skips the check (a bundle's C API, a user's loader), the library clamps them
(passes/clamp_gather_indices.py): a deterministic element, never memory past the tensor (a scatter
index of 1e6 had segfaulted, one equal to the row width had written into the next row).

One hand-built ONNX model and one compile per operator, shared through module-scoped fixtures.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgecc
from edgecc.errors import InputSpecError

from fixtures_hostile import assert_refused, invoke

BIG = 10**6


def _float(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _int(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.INT64, shape)


def _save(path, nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _table(name, shape):
    values = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) / 7 - 3
    return helper.make_tensor(name, TensorProto.FLOAT, shape, values.ravel())


def _ints(name, values):
    values = np.asarray(values, dtype=np.int64)
    return helper.make_tensor(name, TensorProto.INT64, list(values.shape), values.ravel())


# name -> (nodes, inputs, outputs, initializers, index input, the extents each index position selects from)
MODELS = {
    # axis 1 of a [4, 10] table: ids up to 9 are valid (the old range heuristics refused ids >= 4)
    "gather_axis1": (
        [helper.make_node("Gather", ["table", "ids"], ["y"], axis=1)],
        [_int("ids", [2, 3])],
        [_float("y", [4, 2, 3])],
        [_table("table", [4, 10])],
        "ids",
        10,
    ),
    "gather_elements": (
        [helper.make_node("GatherElements", ["data", "idx"], ["y"], axis=1)],
        [_float("data", [3, 5]), _int("idx", [3, 2])],
        [_float("y", [3, 2])],
        [],
        "idx",
        5,
    ),
    # coordinates into axes 0 (4) and 1 (3): each position of the last axis has its own range
    "gather_nd": (
        [helper.make_node("GatherND", ["data", "idx"], ["y"])],
        [_float("data", [4, 3, 2]), _int("idx", [2, 2])],
        [_float("y", [2, 2])],
        [],
        "idx",
        (4, 3),
    ),
    "scatter_elements": (
        [helper.make_node("ScatterElements", ["data", "idx", "upd"], ["y"], axis=1)],
        [_float("data", [3, 5]), _int("idx", [3, 2]), _float("upd", [3, 2])],
        [_float("y", [3, 5])],
        [],
        "idx",
        5,
    ),
    "scatter_nd": (
        [helper.make_node("ScatterND", ["data", "idx", "upd"], ["y"])],
        [_float("data", [4, 3, 2]), _int("idx", [2, 2]), _float("upd", [2, 2])],
        [_float("y", [4, 3, 2])],
        [],
        "idx",
        (4, 3),
    ),
}

# ids + 2 into a 6-row embedding table: valid ids are -2 <= id < 4, checked at the boundary (the
# library used to clamp id 4 -> row 5 silently)
OFFSET_GATHER = (
    [
        helper.make_node("Add", ["ids", "two"], ["shifted"]),
        helper.make_node("Gather", ["table", "shifted"], ["y"]),
    ],
    [_int("ids", [2, 3])],
    [_float("y", [2, 3, 3])],
    [_table("table", [6, 3]), _ints("two", 2)],
)

# indices computed inside the graph (idx * 2): no range is known at the boundary, the library clamps;
# name -> (nodes, inputs, outputs, initializers, extents, in-range idx)
COMPUTED = {
    "computed_scatter_elements": (
        [
            helper.make_node("Mul", ["idx", "two"], ["doubled"]),
            helper.make_node("ScatterElements", ["data", "doubled", "upd"], ["y"], axis=1),
        ],
        [_float("data", [3, 5]), _int("idx", [3, 2]), _float("upd", [3, 2])],
        [_float("y", [3, 5])],
        [_ints("two", 2)],
        5,
        [[0, 1], [-1, -2], [1, 2]],  # doubled: distinct in-range positions in each row
    ),
    "computed_gather_nd": (
        [
            helper.make_node("Mul", ["idx", "two"], ["doubled"]),
            helper.make_node("GatherND", ["data", "doubled"], ["y"]),
        ],
        [_float("data", [4, 3, 2]), _int("idx", [2, 2])],
        [_float("y", [2, 2])],
        [_ints("two", 2)],
        (4, 3),
        [[0, 1], [-1, -1]],
    ),
}

ONE_HOT = (
    [helper.make_node("OneHot", ["idx", "depth", "values"], ["y"])],
    [_int("idx", [2, 3])],
    [_float("y", [2, 3, 5])],
    [_ints("depth", 5), helper.make_tensor("values", TensorProto.FLOAT, [2], [0.0, 1.0])],
)


def _compile(tmp_path_factory, name, nodes, inputs, outputs, initializers):
    folder = tmp_path_factory.mktemp(name)
    model = _save(folder / f"{name}.onnx", nodes, inputs, outputs, initializers)
    edgecc.compile(model, "host", folder / "artifact", measure=False, log=lambda *_: None)
    return model, folder / "artifact"


@pytest.fixture(scope="module", params=sorted(MODELS))
def compiled(request, tmp_path_factory):
    """(name, model, artifact, index input, extents) of one operator, compiled once."""
    nodes, inputs, outputs, initializers, index, extents = MODELS[request.param]
    model, artifact = _compile(tmp_path_factory, request.param, nodes, inputs, outputs, initializers)
    return request.param, model, artifact, index, extents


@pytest.fixture(scope="module")
def offset_gather(tmp_path_factory):
    return _compile(tmp_path_factory, "offset_gather", *OFFSET_GATHER)


@pytest.fixture(scope="module", params=sorted(COMPUTED))
def computed(request, tmp_path_factory):
    nodes, inputs, outputs, initializers, extents, in_range = COMPUTED[request.param]
    model, artifact = _compile(tmp_path_factory, request.param, nodes, inputs, outputs, initializers)
    return model, artifact, extents, in_range


@pytest.fixture(scope="module")
def one_hot(tmp_path_factory):
    return _compile(tmp_path_factory, "one_hot", *ONE_HOT)


def _specs(artifact):
    return json.loads((artifact / "manifest.json").read_text())["inputs"]


def _valid_inputs(artifact, index: str) -> dict:
    """Data and updates random, the indices distinct in-range values, negative ones included."""
    rng = np.random.default_rng(3)
    arrays = {}
    for entry in _specs(artifact):
        shape = tuple(entry["shape"])
        if entry["name"] == index:
            arrays[index] = np.zeros(shape, np.int64)
        else:
            arrays[entry["name"]] = rng.standard_normal(shape).astype(np.float32)
    return arrays


def _in_range_indices(shape, extents) -> list[np.ndarray]:
    """Index tensors whose values cover -n .. n - 1 (each coordinate its own n), no two rows alike."""
    per_position = np.broadcast_to(np.asarray(extents), shape[-1:])
    cases = []
    for start in range(-int(per_position.max()), int(per_position.max())):
        rows = np.arange(np.prod(shape[:-1]))[:, None] + np.arange(shape[-1])[None, :] + start
        lows = -per_position
        wrapped = lows + np.mod(rows - lows, 2 * per_position)  # inside [-n, n), distinct along each row
        cases.append(wrapped.reshape(shape).astype(np.int64))
    return cases


def _ort(model, arrays) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, arrays)[0]


def _raw(artifact, arrays) -> np.ndarray:
    """The library called below every check, as a bundle's C caller or a user's own loader could."""
    import tvm

    from edgecc.artifact.loader import load_artifact

    loaded = load_artifact(artifact)
    try:
        args = [tvm.runtime.tensor(np.ascontiguousarray(arrays[s.name]), loaded.device) for s in loaded.inputs]
        return loaded.vm["main"](*args).numpy()
    finally:
        loaded.close()


def _clamped(indices, extents) -> np.ndarray:
    """What the library reads for any index: ONNX's wrap of -n..-1, then clamped into 0..n - 1."""
    n = np.broadcast_to(np.asarray(extents), indices.shape[-1:])
    wrapped = np.where(indices < 0, indices + n, indices)
    return np.clip(wrapped, 0, n - 1)


def _scatter(name: str) -> bool:
    return "scatter" in name


def test_the_manifest_records_each_index_input_and_its_range(compiled):
    name, _, artifact, index, extents = compiled
    entry = next(e for e in _specs(artifact) if e["name"] == index)
    if isinstance(extents, tuple):  # GatherND / ScatterND: each coordinate its own range
        assert entry["valid_range"] == [-max(extents), max(extents)]
        assert entry["valid_range_last_axis"] == [[-n, n] for n in extents]
    else:
        assert entry["valid_range"] == [-extents, extents], name
    report = json.loads((artifact / "report.json").read_text())["passes"]["clamp_gather_indices"]
    assert report["scatters_clamped" if _scatter(name) else "gathers_clamped"] == 1, report


def test_in_range_indices_match_onnx_runtime_exactly(compiled):
    """Every value from -n to n - 1 (negative ones wrap, as in ONNX) gives ONNX Runtime's numbers."""
    name, model, artifact, index, extents = compiled
    arrays = _valid_inputs(artifact, index)
    for indices in _in_range_indices(arrays[index].shape, extents):
        arrays[index] = indices
        np.testing.assert_allclose(
            edgecc.run(artifact, arrays)["y"], _ort(model, arrays), rtol=1e-6, atol=1e-6, err_msg=f"{name} {indices}"
        )


@pytest.mark.parametrize("past", ["n", "-n-1", "1e6", "-1e6"])
def test_indices_past_either_end_are_refused_with_one_line(compiled, tmp_path, past):
    name, model, artifact, index, extents = compiled
    arrays = _valid_inputs(artifact, index)
    n = extents if isinstance(extents, int) else extents[-1]  # the last coordinate's axis
    value = {"n": n, "-n-1": -n - 1, "1e6": BIG, "-1e6": -BIG}[past]
    arrays[index].flat[-1] = value
    with pytest.raises(Exception, match="out of bounds|out of data bounds|Out of range|invalid ind"):
        _ort(model, arrays)  # the reference refuses it too
    with pytest.raises(InputSpecError, match=f"input '{index}' holds {value} at"):
        edgecc.run(artifact, arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    result = invoke("run", artifact, "--inputs", tmp_path / "bad.npz")
    assert_refused(result.exit_code, result.stderr, f"input '{index}' holds {value}", f"{-n} <= v < {n}", code=2)


def test_the_library_itself_clamps_what_skips_the_check(compiled):
    """Below every check, past-the-end indices read or write a clamped element: the numbers ONNX
    Runtime gives for the clamped indices, never a crash or memory past the tensor."""
    name, model, artifact, index, extents = compiled
    arrays = _valid_inputs(artifact, index)
    shape = arrays[index].shape
    n = np.broadcast_to(np.asarray(extents), shape[-1:])
    for hostile in ([BIG, -BIG], [-BIG, BIG], list(n), list(-n - 1)):
        indices = np.zeros(shape, np.int64)
        indices[0, : len(hostile)] = np.asarray(hostile)[: shape[-1]]
        indices[-1, -1] = -1  # and one valid negative index beside them
        arrays[index] = indices
        clamped = {**arrays, index: _clamped(indices, extents)}
        np.testing.assert_allclose(_raw(artifact, arrays), _ort(model, clamped), rtol=1e-6, atol=1e-6, err_msg=name)


def test_gather_after_an_offset_is_checked_where_the_offset_lands(offset_gather, tmp_path):
    """ids + 2 into 6 rows: -2 <= id < 4 is valid (id -2 reads row 0), id 4 would read row 6 and is
    refused at the boundary instead of clamped into row 5."""
    model, artifact = offset_gather
    entry = next(e for e in _specs(artifact) if e["name"] == "ids")
    assert entry["valid_range"] == [-2, 4]
    good = {"ids": np.array([[-2, -1, 0], [1, 2, 3]], np.int64)}
    np.testing.assert_allclose(edgecc.run(artifact, good)["y"], _ort(model, good), rtol=1e-6, atol=1e-6)
    for value in (4, -3, BIG):
        bad = {"ids": np.array([[0, 1, value], [1, 2, 3]], np.int64)}
        if value != -3:  # -3 + 2 = -1: ONNX Runtime wraps a negative token id, edgecc refuses it (manifest.py)
            with pytest.raises(Exception, match="out of data bounds"):
                _ort(model, bad)
        np.savez(tmp_path / "bad.npz", **bad)
        result = invoke("run", artifact, "--inputs", tmp_path / "bad.npz")
        assert_refused(result.exit_code, result.stderr, f"input 'ids' holds {value}", "-2 <= v < 4", code=2)


def test_indices_computed_in_the_graph_are_clamped_deterministically(computed):
    """idx * 2: nothing is known at the boundary, so nothing is refused there; in-range results match
    ONNX Runtime, and out-of-range ones (which ONNX Runtime refuses) read or write the clamped
    element, the same on every run, never past the tensor."""
    model, artifact, extents, in_range = computed
    assert "valid_range" not in next(e for e in _specs(artifact) if e["name"] == "idx")
    arrays = {**_valid_inputs(artifact, "idx"), "idx": np.array(in_range, np.int64)}
    np.testing.assert_allclose(edgecc.run(artifact, arrays)["y"], _ort(model, arrays), rtol=1e-6, atol=1e-6)
    arrays["idx"] = np.array(in_range, np.int64)
    arrays["idx"][0] = [BIG, -BIG]
    with pytest.raises(Exception, match="out of data bounds|invalid ind"):
        _ort(model, arrays)
    first = edgecc.run(artifact, arrays)["y"]
    expected = _ort_with_indices(model, arrays, _clamped(arrays["idx"] * 2, extents))
    np.testing.assert_allclose(first, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(edgecc.run(artifact, arrays)["y"], first)


def _ort_with_indices(model, arrays, indices) -> np.ndarray:
    """ONNX Runtime's result for the graph with the computed indices replaced by `indices`."""
    graph = onnx.load(str(model))
    op = graph.graph.node[-1]
    nodes = [helper.make_node(op.op_type, [op.input[0], "fixed", *op.input[2:]], list(op.output), name="op")]
    nodes[0].attribute.extend(op.attribute)
    inputs = [i for i in graph.graph.input if i.name != "idx"] + [_int("fixed", list(indices.shape))]
    path = model.with_name(model.stem + "-fixed.onnx")
    _save(path, nodes, inputs, list(graph.graph.output))
    return _ort(path, {**{k: v for k, v in arrays.items() if k != "idx"}, "fixed": indices})


def test_one_hot_outside_its_depth_gives_onnx_runtimes_all_off_rows(one_hot):
    """OneHot compares each index with each position: an index outside [-depth, depth) is valid ONNX
    and gives a row of off values; nothing to refuse, nothing out of bounds."""
    model, artifact = one_hot
    for values in ([[0, 4, -1], [-5, 2, 3]], [[5, -6, BIG], [-BIG, 0, 1]]):
        arrays = {"idx": np.array(values, np.int64)}
        np.testing.assert_allclose(edgecc.run(artifact, arrays)["y"], _ort(model, arrays), rtol=0, atol=0)


ROI_ALIGN = (
    [helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"], output_height=2, output_width=2, sampling_ratio=2)],
    [_float("x", [2, 1, 4, 4]), _float("rois", [3, 4]), _int("batch", [3])],
    [_float("y", [3, 1, 2, 2])],
    [],
)
MAX_ROI_POOL = (
    [helper.make_node("MaxRoiPool", ["x", "rois"], ["y"], pooled_shape=[2, 2])],
    [_float("x", [2, 1, 4, 4]), _float("rois", [3, 5])],
    [_float("y", [3, 1, 2, 2])],
    [],
)
BOXES = np.array([[0, 0, 3, 3], [1, 1, 2, 3], [0, 1, 3, 2]], np.float32)
IMAGES = np.arange(32, dtype=np.float32).reshape(2, 1, 4, 4)


@pytest.fixture(scope="module")
def roi_align(tmp_path_factory):
    return _compile(tmp_path_factory, "roi_align", *ROI_ALIGN)


@pytest.fixture(scope="module")
def max_roi_pool(tmp_path_factory):
    return _compile(tmp_path_factory, "max_roi_pool", *MAX_ROI_POOL)


def test_roi_align_batch_indices_are_checked_and_clamped(roi_align, tmp_path):
    """RoiAlign reads image batch_indices[i] of the batch: 0 <= v < 2 at the boundary (ONNX Runtime
    refuses the rest, negative ones too), and the library clamps what skips the check."""
    model, artifact = roi_align
    assert next(e for e in _specs(artifact) if e["name"] == "batch")["valid_range"] == [0, 2]
    good = {"x": IMAGES, "rois": BOXES, "batch": np.array([0, 1, 1], np.int64)}
    np.testing.assert_allclose(edgecc.run(artifact, good)["y"], _ort(model, good), rtol=1e-5, atol=1e-5)
    for value in (2, -1, BIG):
        bad = {**good, "batch": np.array([value, 0, 1], np.int64)}
        with pytest.raises(Exception, match="out of range"):
            _ort(model, bad)
        np.savez(tmp_path / "bad.npz", **bad)
        result = invoke("run", artifact, "--inputs", tmp_path / "bad.npz")
        assert_refused(result.exit_code, result.stderr, f"input 'batch' holds {value}", "0 <= v < 2", code=2)
        clamped = {**good, "batch": np.array([min(max(value, 0), 1), 0, 1], np.int64)}
        np.testing.assert_allclose(_raw(artifact, bad), _ort(model, clamped), rtol=1e-5, atol=1e-5)


def test_max_roi_pool_reads_a_clamped_image_for_a_batch_index_past_the_batch(max_roi_pool):
    """MaxRoiPool's batch index is a float in rois[:, 0] (no integer input to check): past the batch, or
    NaN, it reads the nearest image (NaN: image 0), never memory past the input."""
    model, artifact = max_roi_pool
    for batch, nearest in ((0, 0), (1, 1), (5, 1), (1e9, 1), (-3, 0), (np.nan, 0), (np.inf, 1)):
        rois = np.concatenate([np.full((3, 1), batch, np.float32), BOXES], axis=1)
        expected = _ort(model, {"x": IMAGES, "rois": np.concatenate([np.full((3, 1), nearest, np.float32), BOXES], 1)})
        np.testing.assert_allclose(
            edgecc.run(artifact, {"x": IMAGES, "rois": rois})["y"], expected, rtol=0, atol=0, err_msg=str(batch)
        )


@pytest.mark.toolchain("g++")
def test_a_bundle_check_feeds_ids_inside_a_range_that_starts_above_zero(tmp_path_factory, tmp_path):
    """ids - 3 into 6 rows: 3 <= id < 9. The bundle check sampled ids from [0, 9) (the range's high
    end alone), so the bundle refused ids 0..2 and the check reported a failure."""
    from edgecc.bundle.check import check_bundle

    nodes = [
        helper.make_node("Sub", ["ids", "three"], ["shifted"]),
        helper.make_node("Gather", ["table", "shifted"], ["y"]),
    ]
    model, artifact = _compile(
        tmp_path_factory,
        "subtracted_gather",
        nodes,
        [_int("ids", [2, 3])],
        [_float("y", [2, 3, 3])],
        [_table("table", [6, 3]), _ints("three", 3)],
    )
    assert next(e for e in _specs(artifact) if e["name"] == "ids")["valid_range"] == [3, 9]
    bundle = edgecc.deploy(artifact, tmp_path / "bundle", log=lambda *_: None).bundle
    outcome = check_bundle(bundle, artifact)
    assert outcome["status"] == "passed", outcome
