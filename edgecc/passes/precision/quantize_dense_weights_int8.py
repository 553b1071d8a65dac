"""Store dense-layer weights and embedding tables as per-channel symmetric INT8.

Dense `matmul(x, W)` with W [K, N] float32 becomes, per output channel j with s_j = max|W[:, j]| / 127:

- dequantize-on-load (targets without INT8 arithmetic):  matmul(x, Wq, out_dtype=f32) * s
  The int8 weight is read and widened inside the matmul kernel; since x is not a constant, no later
  constant folding can turn Wq back into a float32 tensor, so the exported library really shrinks.
- INT8 math (targets with INT8 arithmetic and a calibrated activation scale a for x):
  matmul(q(x), Wq, out_dtype=int32) * (a * s), with q(x) = int8(clip(round(x / a), -127, 127)).

Embedding tables `take(T, ids)` keep one scale per row: take(Tq, ids) * take(s, ids).
Softmax, LayerNorm and every other op stay float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgecc.passes._bindings import rewrite_relax_functions
from edgecc.passes.precision.dense_weights import dense_weight, embedding_table, fold_weight_transposes, weight_key


def quantize_per_channel(weight: np.ndarray, axis: int, limit: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 along `axis` (the kept axis gets one scale each), codes within +-`limit`;
    returns (int8 values, float32 scales)."""
    reduce_axes = tuple(a for a in range(weight.ndim) if a != axis % weight.ndim)
    peak = np.abs(weight).max(axis=reduce_axes)
    scale = np.where(peak > 0, peak / float(limit), 1.0).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    values = np.clip(np.rint(weight / scale.reshape(shape)), -limit, limit).astype(np.int8)
    return values, scale


def fake_quantize(weight: np.ndarray, axis: int) -> np.ndarray:
    """What the int8 weight decodes to: used to measure a layer's sensitivity without compiling."""
    values, scale = quantize_per_channel(weight, axis)
    shape = [1] * weight.ndim
    shape[axis] = -1
    return values.astype(np.float32) * scale.reshape(shape)


def quantize_activation(x, scale: float):
    inverse = relax.const(np.float32(1.0 / scale))
    rounded = relax.op.round(relax.op.multiply(x, inverse))
    return relax.op.astype(relax.op.clip(rounded, -127.0, 127.0), "int8")


@mutator
class _Int8Quantizer(PyExprMutator):
    def __init__(self, mod, keys, int8_math, activation_scales):
        super().__init__(mod)
        self.mod_ = mod
        self.keys = keys
        self.int8_math = int8_math
        self.activation_scales = activation_scales or {}
        self.quantized: list[str] = []

    def wanted(self, array) -> str | None:
        key = weight_key(array)
        return key if self.keys is None or key in self.keys else None

    def visit_call_(self, call):
        call = super().visit_call_(call)
        weight = dense_weight(call)
        if weight is not None and (key := self.wanted(weight)):
            self.quantized.append(key)
            return self.rewrite_dense(call.args[0], weight, key)
        table = embedding_table(call)
        if table is not None and (key := self.wanted(table)):
            self.quantized.append(key)
            values, scale = quantize_per_channel(table, axis=0)
            ids = call.args[1]
            rows = self.builder_.emit(relax.op.astype(relax.op.take(relax.const(values), ids, axis=0), "float32"))
            row_scale = self.builder_.emit(relax.op.take(relax.const(scale.reshape(-1, 1)), ids, axis=0))
            return relax.op.multiply(rows, row_scale)
        return call

    def rewrite_dense(self, x, weight, key):
        values, scale = quantize_per_channel(weight, axis=1)
        activation_scale = self.activation_scales.get(key)
        if self.int8_math and activation_scale:
            xq = self.builder_.emit(quantize_activation(x, activation_scale))
            acc = self.builder_.emit(relax.op.matmul(xq, relax.const(values), out_dtype="int32"))
            widened = self.builder_.emit(relax.op.astype(acc, "float32"))
            return relax.op.multiply(widened, relax.const((scale * np.float32(activation_scale)).astype(np.float32)))
        product = self.builder_.emit(relax.op.matmul(x, relax.const(values), out_dtype="float32"))
        return relax.op.multiply(product, relax.const(scale))

    def transform(self):
        return rewrite_relax_functions(self)


@dataclass(frozen=True)
class Int8Stats:
    weights: str = "per-channel symmetric int8"
    layers: int = 0  # dense layers and embedding tables quantized
    int8_math_layers: int = 0
    dequantize_on_load_layers: int = 0
    activation_error_limit: float | None = None
    calibration: str | None = None
    activation_errors: dict = field(default_factory=dict)


@tvm.transform.module_pass(opt_level=0, name="quantize_dense_weights_int8")
class QuantizeDenseWeightsInt8:
    """INT8 weights; INT8 math with calibrated activation scales where the target has it."""

    def __init__(self, int8_math: bool = False, calibration: Path | None = None, keys: frozenset[str] | None = None):
        self.int8_math = int8_math
        self.calibration = calibration
        self.keys = keys
        self.stats = Int8Stats()

    @property
    def description(self) -> str:
        return "int8 math" if self.int8_math else "dequantize on load (no int8 math on target)"

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        from edgecc.passes.precision.calibration import MAX_ACTIVATION_ERROR, activation_scales, calibration_samples
        from edgecc.passes.precision.dense_weights import list_dense_layers

        mod = fold_weight_transposes(mod)
        scales, errors = None, {}
        if self.int8_math:
            samples = calibration_samples(mod, self.calibration)
            scales = activation_scales(mod, samples, report=errors)
        layers = list_dense_layers(mod)
        dense = [layer for layer in layers if layer["kind"] == "dense"]
        self.stats = Int8Stats(
            layers=len(layers),
            int8_math_layers=len(scales or {}),
            dequantize_on_load_layers=len(dense) - len(scales or {}),
            activation_error_limit=MAX_ACTIVATION_ERROR if self.int8_math else None,
            calibration=str(self.calibration or "built-in samples") if self.int8_math else None,
            activation_errors={k: round(v, 5) for k, v in errors.items()},
        )
        return quantize_dense_weights_int8(mod, keys=self.keys, int8_math=self.int8_math, activation_scales=scales)


def quantize_dense_weights_int8(
    mod: tvm.IRModule,
    keys: set[str] | None = None,
    int8_math: bool = False,
    activation_scales: dict[str, float] | None = None,
) -> tvm.IRModule:
    """Quantize the dense weights (all, or those whose `weight_key` is in `keys`).

    `int8_math` with a calibrated `activation_scales[key]` computes that layer in INT8 with int32
    accumulation; layers without a scale fall back to dequantize-on-load.
    """
    quantizer = _Int8Quantizer(fold_weight_transposes(mod), keys, int8_math, activation_scales)
    result = quantizer.transform()
    return relax.transform.DeadCodeElimination()(result)
