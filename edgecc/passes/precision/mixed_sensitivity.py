"""What INT8 or BF16 on one layer (or any mix of layers) costs in accuracy, simulated on the host.

The model is built once for this machine (edgecc's lowering and default schedules) with every
quantizable weight lifted to a parameter and every dense layer's input passed through

    x' = x + f8 * (int8_rows(x) - x) + f16 * (bf16(x) - x)

where int8_rows is the per-row asymmetric quantize-dequantize the INT8 kernels apply at run time
(same code range as the target's instruction), bf16 rounds to bfloat16 and back, and f8, f16 are
scalar parameters (0 or 1). A configuration {layer: precision} then only swaps arrays: the weight
(FP32, INT8-decoded per-channel, or bf16-rounded) and the two flags. The drop is 1 - mean cosine of
the model's output against FP32 (mean-pooled over real tokens when the model takes an attention
mask), on calibration samples.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgecc.passes.precision.dense_weights import dense_weight, embedding_table, weight_key


def _fake_int8_rows(x, low: int, high: int):
    op = relax.op
    hi = op.maximum(op.max(x, axis=-1, keepdims=True), relax.const(0.0))
    lo = op.minimum(op.min(x, axis=-1, keepdims=True), relax.const(0.0))
    scale = op.maximum(op.divide(op.subtract(hi, lo), relax.const(float(high - low))), relax.const(1e-30))
    zero = op.subtract(relax.const(float(low)), op.round(op.divide(lo, scale)))
    codes = op.clip(op.add(op.round(op.divide(x, scale)), zero), low, high)
    return op.multiply(op.subtract(codes, zero), scale)


@mutator
class _Lifter(PyExprMutator):
    def __init__(self, mod, code_range):
        super().__init__(mod)
        self.code_range = code_range
        self.weights: dict[str, relax.Var] = {}  # key -> lifted weight parameter
        self.flags: dict[str, tuple] = {}  # dense key -> (f8, f16) parameters
        self.arrays: dict[str, np.ndarray] = {}
        self.kinds: dict[str, str] = {}

    def _param(self, key, array, kind):
        if key not in self.weights:
            self.weights[key] = relax.Var(f"w_{len(self.weights)}", relax.TensorType(array.shape, "float32"))
            self.arrays[key], self.kinds[key] = array, kind
        return self.weights[key]

    def visit_call_(self, call):
        call = super().visit_call_(call)
        table = embedding_table(call)
        if table is not None:
            return relax.op.take(self._param(weight_key(table), table, "embedding"), call.args[1], axis=0)
        weight = dense_weight(call)
        if weight is None:
            return call
        key = weight_key(weight)
        w = self._param(key, weight, "dense")
        if key not in self.flags:
            self.flags[key] = tuple(
                relax.Var(f"{name}_{len(self.flags)}", relax.TensorType((), "float32")) for name in ("f8", "f16")
            )
        f8, f16 = self.flags[key]
        x = call.args[0]
        op = relax.op
        int8 = self.builder_.emit(_fake_int8_rows(x, *self.code_range))
        bf16 = self.builder_.emit(op.astype(op.astype(x, "bfloat16"), "float32"))
        mixed = op.add(x, op.add(op.multiply(f8, op.subtract(int8, x)), op.multiply(f16, op.subtract(bf16, x))))
        return relax.op.matmul(self.builder_.emit(mixed), w)


class PrecisionSimulator:
    """Build once, then `drop({weight key: "int8" | "bf16" | "fp32"})` for any configuration."""

    def __init__(self, mod, samples: list[dict], code_range=(0, 255), log=print):
        from edgecc.passes.precision.calibration import input_specs
        from edgecc.passes.precision.cast_dense_layers_bf16 import to_bf16
        from edgecc.passes.precision.quantize_dense_weights_int8 import fake_quantize

        lifter = _Lifter(mod, code_range)
        main = lifter.visit_expr(mod["main"])
        self.keys = list(lifter.weights)
        self.kinds = lifter.kinds
        flag_keys = [k for k in self.keys if k in lifter.flags]
        extra = [lifter.weights[k] for k in self.keys] + [f for k in flag_keys for f in lifter.flags[k]]
        body = relax.BlockBuilder().normalize(main.body)
        lifted = relax.Function(list(main.params) + extra, body, attrs=main.attrs)
        functions = {gv: (lifted if gv.name_hint == "main" else f) for gv, f in mod.functions_items()}
        log(f"mixed precision: building the simulation model ({len(self.keys)} layers) ...")
        from edgecc.passes.precision.low_precision_timing import build_here
        from edgecc.targets import load_target

        self.vm = build_here(tvm.IRModule(functions), load_target("host"))
        self.names = [s.name for s in input_specs(mod)]
        self.samples = [[tvm.runtime.tensor(np.ascontiguousarray(s[n])) for n in self.names] for s in samples]
        self.masks = [s["attention_mask"] for s in samples] if "attention_mask" in self.names else None
        self.flag_keys = flag_keys
        variants = {}
        for key in self.keys:
            array, axis = lifter.arrays[key], (0 if self.kinds[key] == "embedding" else 1)
            variants[key] = {
                "fp32": array,
                "int8": fake_quantize(array, axis=axis),
                "bf16": to_bf16(array).astype(np.float32),
            }
        self.weights = {k: {p: tvm.runtime.tensor(a) for p, a in v.items()} for k, v in variants.items()}
        self.flag_values = {v: tvm.runtime.tensor(np.array(v, np.float32)) for v in (0.0, 1.0)}
        self.reference = self._outputs({})

    def _outputs(self, config: dict) -> list[np.ndarray]:
        weights = [self.weights[k][config.get(k, "fp32")] for k in self.keys]
        flags = []
        for key in self.flag_keys:
            precision = config.get(key, "fp32")
            flags += [self.flag_values[float(precision == "int8")], self.flag_values[float(precision == "bf16")]]
        outputs = []
        for sample in self.samples:
            result = self.vm["main"](*sample, *weights, *flags)
            outputs.append((result[0] if not isinstance(result, tvm.runtime.Tensor) else result).numpy())
        return outputs

    def drop(self, config: dict) -> float:
        from edgecc.passes.precision.sensitivity import output_drop

        return output_drop(self._outputs(config), self.reference, self.masks)
