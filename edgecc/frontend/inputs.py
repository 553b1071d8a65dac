"""Input specifications (name, shape, dtype) and sample inputs in the ranges a model expects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecc.errors import InputSpecError
from edgecc.user_files import MiB, checked_npz

ONNX_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    16: "bfloat16",
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # the largest shape, when some axes are dynamic
    dtype: str
    # ((axis, "batch" | "sequence"), ...): any size 1..shape[axis] (edgecc/buckets/shapes.py)
    dynamic_axes: tuple[tuple[int, str], ...] = ()

    def to_dict(self) -> dict:
        entry = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.dynamic_axes:
            entry["dynamic_axes"] = {str(axis): dim for axis, dim in self.dynamic_axes}
        return entry

    @staticmethod
    def from_dict(data: dict) -> TensorSpec:
        axes = tuple((int(axis), str(dim)) for axis, dim in (data.get("dynamic_axes") or {}).items())
        return TensorSpec(data["name"], tuple(data["shape"]), data["dtype"], axes)


def parse_input_spec(text: str) -> TensorSpec:
    """`name:1x128:int64` (dtype optional, default float32)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise InputSpecError(f"bad --input '{text}': expected NAME:SHAPE[:DTYPE], e.g. input_ids:1x128:int64")
    try:
        shape = tuple(int(d) for d in parts[1].lower().split("x"))
    except ValueError:
        raise InputSpecError(f"bad shape in --input '{text}': use dimensions like 1x128") from None
    if any(d <= 0 for d in shape):
        raise InputSpecError(f"bad shape in --input '{text}': dimensions must be positive")
    dtype = parts[2] if len(parts) == 3 else "float32"
    if dtype not in ONNX_DTYPES.values():
        raise InputSpecError(
            f"bad dtype '{dtype}' in --input '{text}'; known: {', '.join(sorted(set(ONNX_DTYPES.values())))}"
        )
    return TensorSpec(parts[0], shape, dtype)


def resolve_input_specs(
    graph_inputs: list[tuple[str, list, str]], overrides: list[TensorSpec], batch: int, seq_len: int
) -> list[TensorSpec]:
    """Fix every input's shape: explicit overrides first, then symbolic dims from batch / seq_len."""
    by_name = {name: (dims, dtype) for name, dims, dtype in graph_inputs}
    for spec in overrides:
        if spec.name not in by_name:
            raise InputSpecError(
                f"the model has no input '{spec.name}'; its inputs are: "
                + ", ".join(f"{n} {_fmt(d)} {t}" for n, d, t in graph_inputs)
            )
        dims, dtype = by_name[spec.name]
        if spec.dtype != dtype:
            raise InputSpecError(f"input '{spec.name}' has dtype {dtype} in the model, not {spec.dtype}")
        if len(spec.shape) != len(dims):
            raise InputSpecError(
                f"input '{spec.name}' has rank {len(dims)} {_fmt(dims)} in the model, "
                f"but --input gives rank {len(spec.shape)} {_fmt(spec.shape)}"
            )
        for axis, (want, got) in enumerate(zip(dims, spec.shape)):
            if isinstance(want, int) and want > 0 and want != got:
                raise InputSpecError(
                    f"input '{spec.name}' dimension {axis} is fixed to {want} in the model, but --input gives {got}"
                )
    given = {spec.name: spec for spec in overrides}
    specs = []
    for name, dims, dtype in graph_inputs:
        if name in given:
            specs.append(given[name])
            continue
        shape = []
        for axis, dim in enumerate(dims):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            else:
                shape.append(batch if axis == 0 else seq_len)
        specs.append(TensorSpec(name, tuple(shape), dtype))
    return specs


def _fmt(dims) -> str:
    return "x".join(str(d) if d not in (None, "", 0) else "?" for d in dims)


def sample_inputs(specs: list[TensorSpec], index_bounds: dict[str, tuple], seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs in valid ranges: token ids below the embedding size, indices inside the tensor they
    index (index_bounds: name -> (low, high), frontend/index_ranges.py, or the high alone for [0, high)),
    masks of ones with padding."""
    rng = np.random.default_rng(seed)
    values = {}
    for spec in specs:
        lname = spec.name.lower()
        if spec.dtype.startswith(("int", "uint")) or spec.dtype == "bool":
            if "mask" in lname:
                array = np.ones(spec.shape, dtype=spec.dtype)
                if len(spec.shape) >= 2 and spec.shape[-1] >= 4:
                    array[..., -(spec.shape[-1] // 4) :] = 0  # exercise the padding path
            elif "token_type" in lname or "segment" in lname:
                array = np.zeros(spec.shape, dtype=spec.dtype)
            else:
                low, high = _sample_range(index_bounds.get(spec.name, (0, 2)), spec)
                array = rng.integers(low, high, size=spec.shape).astype(spec.dtype)
        else:
            array = rng.standard_normal(spec.shape).astype(spec.dtype)
        values[spec.name] = array
    return values


def _sample_range(bounds: tuple, spec: TensorSpec) -> tuple[np.ndarray, np.ndarray]:
    """[low, high) to draw from: the non-negative part of the valid range where it has one (the values
    a model is fed), per position of the last axis where the range is given so."""
    low, high = (np.asarray(b, dtype=np.int64) for b in (bounds if isinstance(bounds, tuple) else (0, bounds)))
    if low.ndim and spec.shape and spec.shape[-1] != low.size:
        low, high = low.max(), high.min()  # not the axis the range was found for: a range valid everywhere
    low = np.where(np.maximum(low, 0) < high, np.maximum(low, 0), low)
    return low, np.maximum(high, low + 1)


def load_inputs_file(path: Path, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    expected = sum(int(np.prod(s.shape)) * (2 if s.dtype == "bfloat16" else np.dtype(s.dtype).itemsize) for s in specs)
    path = checked_npz(path, "inputs file", 16 * MiB + 2 * expected, InputSpecError)  # room for npz headers
    try:
        data = np.load(path, allow_pickle=False)
        arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputSpecError(f"inputs file not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - the library raises many types; each becomes one clear line
        raise InputSpecError(f"cannot read inputs file {path} as .npz: {exc}") from None
    check_inputs(arrays, specs, f"inputs file {path}")
    return {spec.name: arrays[spec.name] for spec in specs}


def check_inputs(arrays: dict, specs: list[TensorSpec], where: str) -> None:
    names = {spec.name for spec in specs}
    missing = [s.name for s in specs if s.name not in arrays]
    extra = sorted(set(arrays) - names)
    if missing or extra:
        raise InputSpecError(
            f"{where}: expected inputs {', '.join(sorted(names))}; "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}"
        )
    if any(spec.dynamic_axes for spec in specs):
        from edgecc.buckets.shapes import check_dynamic_shapes

        check_dynamic_shapes(arrays, specs, where)
    for spec in specs:
        array = arrays[spec.name]
        if not spec.dynamic_axes and tuple(array.shape) != tuple(spec.shape):
            raise InputSpecError(
                f"{where}: input '{spec.name}' has shape {_fmt(array.shape)}, "
                f"the artifact was compiled for {_fmt(spec.shape)}"
            )
        if str(array.dtype) != spec.dtype:
            raise InputSpecError(f"{where}: input '{spec.name}' has dtype {array.dtype}, expected {spec.dtype}")


def check_value_ranges(arrays: dict, ranges: dict[str, tuple], where: str) -> None:
    """Integer inputs that index a tensor (token ids, gather and scatter indices) must lie in [low, high):
    outside it, ONNX Runtime refuses them and the library would read or write a wrong element. Negative
    token ids are refused too (see edgecc/artifact/manifest.py for why). low and high are tuples where
    each position of the input's last axis has its own range (GatherND, ScatterND coordinates)."""
    for name, (low, high) in ranges.items():
        array = arrays.get(name)
        if array is None or np.size(array) == 0:
            continue
        array = np.asarray(array)
        per_position = not isinstance(low, int)
        if per_position and (array.ndim == 0 or array.shape[-1] != len(low)):
            low, high = max(low), min(high)  # not the axis the ranges were found for: the range valid everywhere
            per_position = False
        bad = (array < np.asarray(low)) | (array >= np.asarray(high))
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            if per_position:
                position = first[-1]
                allowed = f"{low[position]} <= v < {high[position]} at position {position} of its last axis"
                what = "its last axis holds coordinates into axes of different sizes"
            else:
                allowed = f"{low} <= v < {high}"
                what = (
                    f"it indexes a table of {high} rows (e.g. the vocabulary)"
                    if low == 0
                    else f"it indexes an axis of {high} elements (negative values count from the end)"
                    if low == -high
                    else "it indexes a tensor"
                )
            raise InputSpecError(
                f"{where}: input '{name}' holds {int(array[first])} at {list(first)} ({int(bad.sum())} value(s) "
                f"outside {allowed}); {what}, so every value must be in that range"
            )
