"""Finding the dense layers (matmul by a constant weight) and embedding tables in a Relax module.

Shared by the precision passes so that every pass, the sensitivity search and the report name a
layer the same way: by a short hash of its weight's bytes (`weight_key`), which also lets the
sensitivity search map a Relax constant back to the ONNX initializer it came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant

# Smaller constants (biases, LayerNorm scales, tiny projections) are not worth quantizing:
# they save nothing measurable and cost accuracy.
MIN_WEIGHT_ELEMENTS = 4096


def weight_key(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def constant_array(expr) -> np.ndarray | None:
    if not isinstance(expr, Constant) or not hasattr(expr.value, "numpy"):
        return None  # not a constant, or a scalar literal
    return expr.value.numpy()


def dense_weight(call) -> np.ndarray | None:
    """The float32 [K, N] weight of `matmul(x, W)` when W is a large enough constant, else None."""
    if not _is_op(call, "relax.matmul") or len(call.args) != 2:
        return None
    weight = constant_array(call.args[1])
    if weight is None or weight.ndim != 2 or weight.dtype != np.float32 or weight.size < MIN_WEIGHT_ELEMENTS:
        return None
    if isinstance(call.args[0], Constant):
        return None
    return weight


def embedding_table(call) -> np.ndarray | None:
    """The float32 [V, D] table of `take(T, ids, axis=0)` when T is a large constant and ids are not."""
    if not _is_op(call, "relax.take") or len(call.args) != 2:
        return None
    table = constant_array(call.args[0])
    if table is None or table.ndim != 2 or table.dtype != np.float32 or table.size < MIN_WEIGHT_ELEMENTS:
        return None
    if isinstance(call.args[1], Constant) or int(call.attrs.axis) not in (0, -2):
        return None
    return table


def _is_op(call, name: str) -> bool:
    return isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op) and call.op.name == name


def list_dense_layers(mod) -> list[dict]:
    """[{key, kind, shape}] for every quantizable weight in `main`, in program order."""
    layers, seen = [], set()

    def visit(expr):
        for kind, finder in (("dense", dense_weight), ("embedding", embedding_table)):
            array = finder(expr) if isinstance(expr, relax.Call) else None
            if array is not None:
                key = weight_key(array)
                if key not in seen:
                    seen.add(key)
                    layers.append({"key": key, "kind": kind, "shape": list(array.shape)})

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return layers


def fold_weight_transposes(mod):
    """Fold `permute_dims(W)` (torch exports Linear as Gemm with transB) into plain [K, N] constants.

    Relax's FoldConstant evaluates each all-constant call on the host CPU, whatever the target.
    """
    with tvm.target.Target({"kind": "llvm"}):
        return relax.transform.FoldConstant()(mod)


def unsupported_reason(x, weight, ins) -> str | None:
    """Why the dense layer `x @ weight` cannot run on instruction `ins` (nor on its fallback), or None."""
    ty = x.ty
    if str(getattr(ty, "dtype", "")) != "float32" or getattr(ty, "shape", None) is None:
        return "input is not a float32 tensor of known shape"
    if any(not isinstance(d, tvm.tirx.IntImm) for d in ty.shape):
        return "input shape is not static"
    reason = _shape_reason(x, weight, ins)
    if reason and ins.fallback is not None:
        fallback_reason = _shape_reason(x, weight, ins.fallback)
        return f"{reason}; on {ins.fallback.name}: {fallback_reason}" if fallback_reason else None
    return reason


def instruction_fallback_reason(x, weight, ins) -> str | None:
    """Why a layer `ins` takes (unsupported_reason None) runs on `ins.fallback` (a matrix instruction
    such as smmla whose tile its shape does not fit), or None when it runs on `ins` itself."""
    return _shape_reason(x, weight, ins) if ins.fallback is not None else None


def _shape_reason(x, weight, ins) -> str | None:
    k, n = weight.shape
    if k % ins.group:
        return f"K={k} is not a multiple of {ins.group}"
    if ins.k_tile and k % ins.k_tile:
        return f"K={k} is not a multiple of the tile's {ins.k_tile}"
    if n % ins.lanes:
        what = f"{ins.lanes} columns" if ins.rows > 1 else f"{ins.lanes} lanes"
        return f"N={n} is not a multiple of the instruction's {what}"
    shape = x.ty.shape
    rows = int(shape[-2]) if len(shape) > 1 else 1
    if rows % ins.rows:
        return f"M={rows} rows are not a multiple of the instruction's {ins.rows}"
    return None


@dataclass(frozen=True)
class LayerFallback:
    layer: str  # dense_<n>: program order, embedding tables counted (as the mixed report names layers)
    key: str
    shape: tuple
    reason: str


def choose_dense_layer(call, names: dict, keys, keep_fp32: dict, ins, fallbacks: list, kernel_reason=None):
    """(weight, key, name) when `call` is a dense layer a low-precision pass should rewrite on `ins`:
    chosen (`keys` None: all) and not kept FP32 by the caller, by the instruction's shape rules or by
    `kernel_reason(weight)` (the kernel's own). A layer kept FP32 is appended to `fallbacks` with its
    reason; None for anything else."""
    weight = dense_weight(call)
    if weight is None:
        return None
    key = weight_key(weight)
    if keys is not None and key not in keys:
        return None
    name = names.get(key, key)
    reason = (
        keep_fp32.get(key)
        or unsupported_reason(call.args[0], weight, ins)
        or (kernel_reason(weight) if kernel_reason else None)
    )
    if reason:
        fallbacks.append(LayerFallback(name, key, tuple(weight.shape), reason))
        return None
    return weight, key, name


def layer_names(mod) -> dict[str, str]:
    """{weight key: "dense_3"}: the names the mixed-precision report gives layers."""
    return {layer["key"]: f"{layer['kind']}_{index}" for index, layer in enumerate(list_dense_layers(mod))}


def dense_layer_inputs(mod) -> list[tuple[str, object, np.ndarray]]:
    """[(weight key, input expr, weight)] of every dense layer in `main`, in program order."""
    found = []

    def visit(expr):
        if isinstance(expr, relax.Call):
            weight = dense_weight(expr)
            if weight is not None:
                found.append((weight_key(weight), expr.args[0], weight))

    relax.analysis.post_order_visit(mod["main"], visit)
    return found
