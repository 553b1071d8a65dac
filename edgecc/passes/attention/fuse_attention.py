"""Replace each dense attention subgraph by one fused, pre-scheduled attention kernel (CPU targets).

The pattern is `pattern.AttentionMatcher`'s; Q, Kt and V are read through their layout chains
(the head split and the 1/sqrt(D) scaling), and a single following permute_dims of the output (the
head merge) is absorbed too: the kernel reads [B, S, H*D] projections and writes [B, S, H, Dv]
directly, so the transposes, the score matrix and the probabilities never reach memory. The kernel
and its schedule are `edgecc.schedules.attention`.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import relax

from edgecc.passes._bindings import replace_bindings
from edgecc.passes.attention.pattern import AttentionMatcher
from edgecc.schedules.attention import LANES, attention_kernel


@dataclass(frozen=True)
class FuseAttentionStats:
    attentions_fused: int = 0


@tvm.transform.module_pass(opt_level=0, name="fuse_attention")
class FuseAttention:
    """Every matching attention becomes one call_tir to a fused kernel; dead intermediates are removed.

    `lanes`: float32 lanes of the target's vectors (edgecc.schedules.vector_lanes).
    `fast_math`: exp as TVM's fast_exp polynomial (what the pipeline's FastMathTransform gives softmax).
    """

    def __init__(self, lanes: int = LANES, fast_math: bool = True):
        self.lanes = lanes
        self.fast_math = fast_math
        self.stats = FuseAttentionStats()

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        fused = [0]

        def make(plan, ty):
            def build(mutator):
                kernel = attention_kernel(plan, self.fast_math, self.lanes)
                gvar = mutator.builder_.add_func(kernel, "fused_attention")
                sources = [
                    plan.q.source,
                    plan.kt.source,
                    plan.v.source,
                    *([plan.bias] if plan.bias is not None else []),
                    *plan.q.tables,
                    *plan.kt.tables,
                    *plan.v.tables,
                ]
                fused[0] += 1
                return relax.call_tir(gvar, [mutator.visit_expr(x) for x in sources], ty)

            return build

        def find(func):
            return {var: make(plan, var.ty) for var, plan in AttentionMatcher(func).plans().items()}

        result = replace_bindings(mod, find)
        self.stats = FuseAttentionStats(fused[0])
        return result
