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
from edgecc.schedules.attention import LANES, attention_kernel, uses_tiles

ATTENTION_ON_TILES = (
    "BF16 where the AMX tiles fit (QK^T and PV on tdpbf16ps, FP32 accumulation; softmax FP32), else FP32"
)


def attention_on_tiles(options, target) -> bool:
    """Whether the fused attention computes its products in BF16 on AMX: --precision bf16 or int8 on
    a CPU target whose AMX-BF16 edgecc uses (the fused attention is a CPU kernel). With int8 that is
    more precise than the dense layers, and faster than FP32: no INT8 attention kernel exists yet."""
    from edgecc.backends import backend_for
    from edgecc.schedules.matmul_amx import tile_instruction

    if options.precision not in ("bf16", "int8") or not options.fusion or not backend_for(target).cpu_kernels:
        return False
    return tile_instruction(target, "bf16") is not None


@dataclass(frozen=True)
class FuseAttentionStats:
    attentions_fused: int = 0
    on_tiles: int = 0  # of them with QK^T and PV in BF16 on AMX tiles (`tiles`)
    tiles_asked: bool = False

    def summary(self) -> str:
        text = f"attention: {self.attentions_fused} fused"
        if not self.tiles_asked:
            return text + ", QK^T and PV in FP32"
        kept = self.attentions_fused - self.on_tiles
        return (
            text
            + f", QK^T and PV of {self.on_tiles} in BF16 on AMX tdpbf16ps (softmax FP32)"
            + (f"; {kept} in FP32 (head dim or keys not a multiple of 32, or gathered operands)" if kept else "")
        )


@tvm.transform.module_pass(opt_level=0, name="fuse_attention")
class FuseAttention:
    """Every matching attention becomes one call_tir to a fused kernel; dead intermediates are removed.

    `lanes`: float32 lanes of the target's vectors (edgecc.schedules.vector_lanes).
    `fast_math`: exp as TVM's fast_exp polynomial (what the pipeline's FastMathTransform gives softmax).
    `tiles`: QK^T and PV in BF16 on AMX tiles where they fit (`attention_on_tiles`).
    """

    def __init__(self, lanes: int = LANES, fast_math: bool = True, tiles: bool = False):
        self.lanes = lanes
        self.fast_math = fast_math
        self.tiles = tiles
        self.stats = FuseAttentionStats()

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        fused, on_tiles = [0], [0]

        def make(plan, ty):
            def build(mutator):
                kernel = attention_kernel(plan, self.fast_math, self.lanes, self.tiles)
                on_tiles[0] += int(self.tiles and uses_tiles(kernel))
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
        self.stats = FuseAttentionStats(fused[0], on_tiles[0], self.tiles)
        return result
