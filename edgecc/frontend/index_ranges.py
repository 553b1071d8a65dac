"""Which values each integer model input may hold, where the input flows into the index operand of an
op that indexes a tensor: the ranges the manifest's "valid_range" records and `edgecc run`, the Python
API, bench and a bundle's runner check before anything reaches a kernel (as ONNX Runtime refuses them).

  Gather, GatherElements, ScatterElements, Scatter   -n <= v < n, n = data.shape[axis]
  GatherND (batch_dims b), ScatterND                 per coordinate k of the last axis: n_k = data.shape[b + k]
  Gather of an initializer on axis 0 (an embedding)  0 <= v < rows: a negative token id is refused
                                                     (edgecc/artifact/manifest.py says why)
  RoiAlign's batch_indices                           0 <= v < batch

An input reaches the index operand straight, or through ops that keep its values (Cast, Identity,
Reshape, Squeeze, ...) and the addition or subtraction of a constant (ids + offset): the range is
moved by the constant, so an id that the offset would carry past the table is refused here rather
than clamped by the library (passes/clamp_gather_indices.py) into a wrong row. A constant that is not
the same everywhere moves the range by its extremes (every value it admits is valid). Indices
computed any other way are not known here; the library clamps them.

A range is (low, high), each an int, or a tuple of ints per position of the input's last axis.
"""

from __future__ import annotations

import numpy as np

# op type -> (index operand, data operand); the data axis is the "axis" attribute (default 0)
_AXIS_INDEXED = {
    "Gather": (1, 0),
    "GatherElements": (1, 0),
    "ScatterElements": (1, 0),
    "Scatter": (1, 0),
    "RoiAlign": (2, 0),  # batch_indices: which image of the batch each box is in
}
# op type -> (index operand, data operand); the last axis of the indices holds coordinates
_COORDINATE_INDEXED = {"GatherND": (1, 0), "ScatterND": (1, 0)}
# ops whose output holds the values of their first input (which positions may change)
_VALUE_KEEPING = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand", "Transpose", "Cast"}
# of those, the ones that keep the last axis where it was (a per-coordinate range stays valid)
_LAST_AXIS_KEEPING = {"Identity", "Cast"}
_INTEGER_TYPES = {2, 3, 4, 5, 6, 7, 12, 13}  # onnx TensorProto integer element types
_MAX_OFFSET_ELEMENTS = 1 << 20


class _Source:
    """An input as it reaches a tensor: input + offset (low and high extremes of the offset)."""

    def __init__(self, name: str, low_offset: int = 0, high_offset: int = 0, last_axis_kept: bool = True):
        self.name = name
        self.low_offset = low_offset
        self.high_offset = high_offset
        self.last_axis_kept = last_axis_kept

    def shifted(self, offset: np.ndarray) -> _Source:
        return _Source(
            self.name, self.low_offset + int(offset.min()), self.high_offset + int(offset.max()), self.last_axis_kept
        )

    def through(self, op_type: str) -> _Source:
        kept = self.last_axis_kept and op_type in _LAST_AXIS_KEEPING
        return _Source(self.name, self.low_offset, self.high_offset, kept)


def index_ranges(model, input_names) -> dict[str, tuple]:
    """{input name: (low, high)} of the inputs that index a tensor (module docstring)."""
    constants = _constants(model)
    shapes = _shapes(model)
    sources = {name: _Source(name) for name in input_names}
    ranges: dict[str, tuple] = {}
    inferred = False
    for node in model.graph.node:
        if node.op_type in _VALUE_KEEPING and node.input and node.input[0] in sources:
            if node.op_type != "Cast" or _attribute(node, "to", 0) in _INTEGER_TYPES:
                sources[node.output[0]] = sources[node.input[0]].through(node.op_type)
        elif node.op_type in ("Add", "Sub") and len(node.input) == 2:
            _follow_offset(node, sources, constants)
        table = _AXIS_INDEXED.get(node.op_type) or _COORDINATE_INDEXED.get(node.op_type)
        if table is None or len(node.input) <= max(table) or node.input[table[0]] not in sources:
            continue
        index, data = node.input[table[0]], node.input[table[1]]
        if data not in shapes and not inferred:
            shapes.update(_shapes(_inferred(model)))
            inferred = True
        found = _operand_range(node, shapes.get(data), data in constants, index, shapes)
        if found is None:
            continue
        source = sources[index]
        low, high = found
        if not isinstance(low, int) and not source.last_axis_kept:
            continue  # coordinates moved off the last axis: not expressible here, the library clamps
        low, high = _minus(low, source.low_offset), _minus(high, source.high_offset)
        merged = _intersect(ranges.get(source.name), (low, high))
        if merged is not None:
            ranges[source.name] = merged
    return {name: value for name, value in ranges.items() if _nonempty(value)}


def _operand_range(node, data_shape, data_is_constant: bool, index: str, shapes: dict):
    if not data_shape or any(not isinstance(d, int) or d <= 0 for d in data_shape):
        return None
    if node.op_type in _AXIS_INDEXED:
        axis = _attribute(node, "axis", 0) % len(data_shape)
        rows = data_shape[axis]
        embedding = node.op_type == "Gather" and axis == 0 and data_is_constant
        counts_from_end = not embedding and node.op_type != "RoiAlign"  # ONNX's RoiAlign has no negative batch index
        return (-rows if counts_from_end else 0, rows)
    index_shape = shapes.get(index)
    if not index_shape or not isinstance(index_shape[-1], int) or index_shape[-1] <= 0:
        return None
    start = _attribute(node, "batch_dims", 0) if node.op_type == "GatherND" else 0
    extents = data_shape[start : start + index_shape[-1]]
    if len(extents) != index_shape[-1]:
        return None
    if len(set(extents)) == 1:
        return (-extents[0], extents[0])
    return (tuple(-e for e in extents), tuple(extents))


def _follow_offset(node, sources: dict, constants: dict) -> None:
    """input + c, c + input, input - c: the range moves by c (by its extremes where c varies)."""
    left, right = node.input
    if left in sources and right in constants:
        offset, source = _small_integer_constant(constants[right]), sources[left]
        if offset is not None and node.op_type == "Sub":
            offset = -offset
    elif node.op_type == "Add" and right in sources and left in constants:
        offset, source = _small_integer_constant(constants[left]), sources[right]
    else:
        return
    if offset is not None and offset.size:
        sources[node.output[0]] = source.shifted(offset)


def _minus(bound, offset: int):
    return bound - offset if isinstance(bound, int) else tuple(b - offset for b in bound)


def _intersect(old, new):
    if old is None:
        return new
    low = np.maximum(np.asarray(old[0]), np.asarray(new[0]))
    high = np.minimum(np.asarray(old[1]), np.asarray(new[1]))
    if low.shape != high.shape:
        return None
    as_bound = lambda a: int(a) if a.ndim == 0 else tuple(int(v) for v in a)  # noqa: E731
    return (as_bound(low), as_bound(high))


def _nonempty(value) -> bool:
    return bool(np.all(np.asarray(value[0]) < np.asarray(value[1])))


def _attribute(node, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def _constants(model) -> dict:
    """{name: TensorProto} of the initializers and Constant nodes (read as arrays only where used)."""
    found = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    found[node.output[0]] = attribute.t
    return found


def _small_integer_constant(tensor) -> np.ndarray | None:
    from onnx import numpy_helper

    if tensor.data_type not in _INTEGER_TYPES or np.prod(tensor.dims, dtype=np.int64) > _MAX_OFFSET_ELEMENTS:
        return None
    try:
        return numpy_helper.to_array(tensor).astype(np.int64)
    except Exception:  # noqa: BLE001 - external data not loaded: no range, and the library clamps
        return None


def _shapes(model) -> dict[str, list]:
    graph = model.graph
    shapes = {init.name: [int(d) for d in init.dims] for init in graph.initializer}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            dims = value.type.tensor_type.shape.dim
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


def _inferred(model):
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - no shapes: those inputs get no range, and the library clamps
        return model
