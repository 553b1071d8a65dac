"""Write `R.nn.gelu` / `R.nn.gelu_tanh` out as elementwise ops so the matmul epilogue gets fast GELU.

TVM's FuseOps already puts bias + GELU into the producing matmul's kernel, whichever way GELU is
spelt (tests/test_pass_fuse_bias_gelu_epilogue.py checks it). But `R.nn.gelu` legalizes to a libm
`erf` call per element that the pipeline's FastMathTransform cannot see (it rewrites the Relax
`erf` / `tanh` ops), so a TinyBERT-sized matmul + bias + R.nn.gelu ran 2.1 ms here against 0.55 ms
for the same kernel with the erf formula the ONNX exporter writes. This pass rewrites
    gelu(x)      -> x * (0.5 + erf(x * 1/sqrt(2)) * 0.5)                  (TVM's own legalization)
    gelu_tanh(x) -> 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x * x * x)))
so FastMathTransform turns erf / tanh into vectorisable polynomials and FuseOps fuses the lot into
the matmul epilogue, as for an exported erf GELU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tvm
from tvm import relax

from edgecc.passes._bindings import binding_map, replace_bindings
from edgecc.passes._layout_chains import dtype, is_op


def _c(value: float, type_: str):
    return relax.const(value, type_)


def _expand(mutator, call):
    x = mutator.visit_expr(call.args[0])
    t = dtype(call)
    emit = mutator.builder_.emit
    if call.op.name == "relax.nn.gelu":
        erf = emit(relax.op.erf(emit(relax.op.multiply(x, _c(1 / math.sqrt(2), t)))))
        return relax.op.multiply(x, emit(relax.op.add(_c(0.5, t), emit(relax.op.multiply(erf, _c(0.5, t))))))
    cube = emit(relax.op.multiply(emit(relax.op.multiply(x, x)), x))
    inner = emit(relax.op.add(x, emit(relax.op.multiply(_c(0.044715, t), cube))))
    tanh = emit(relax.op.tanh(emit(relax.op.multiply(_c(math.sqrt(2 / math.pi), t), inner))))
    return relax.op.multiply(emit(relax.op.multiply(_c(0.5, t), x)), emit(relax.op.add(_c(1.0, t), tanh)))


@dataclass(frozen=True)
class FuseBiasGeluEpilogueStats:
    gelus_expanded: int = 0


@tvm.transform.module_pass(opt_level=0, name="fuse_bias_gelu_epilogue")
class FuseBiasGeluEpilogue:
    """Every float `R.nn.gelu` / `R.nn.gelu_tanh` becomes its erf / tanh formula."""

    def __init__(self):
        self.stats = FuseBiasGeluEpilogueStats()

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        expanded = [0]

        def find(func):
            found = {}
            for var, value in binding_map(func).items():
                if is_op(value, "relax.nn.gelu", "relax.nn.gelu_tanh") and dtype(value) in ("float32", "float16"):
                    found[var] = (lambda call: lambda mutator: _expand(mutator, call))(value)
            expanded[0] += len(found)
            return found

        result = replace_bindings(mod, find)
        self.stats = FuseBiasGeluEpilogueStats(expanded[0])
        return result
