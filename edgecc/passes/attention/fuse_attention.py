"""Replace each dense attention subgraph by one fused, pre-scheduled attention kernel (CPU targets).

The pattern is `pattern.AttentionMatcher`'s; Q, Kt and V are read through their layout chains
(the head split and the 1/sqrt(D) scaling), and a single following permute_dims of the output (the
head merge) is absorbed too: the kernel reads [B, S, H*D] projections and writes [B, S, H, Dv]
directly, so the transposes, the score matrix and the probabilities never reach memory. The kernel
and its schedule are `edgecc.schedules.attention`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm
import tvm_ffi
from tvm import relax

from edgecc.passes._bindings import replace_bindings
from edgecc.passes.attention.pattern import AttentionMatcher
from edgecc.schedules.attention import INT8_PRODUCTS, LANES, REGISTERS, attention_kernel, uses_tiles
from edgecc.schedules.common import FAILURES_ATTR

_BF16_TILES = "BF16 where the AMX tiles fit (QK^T and PV on tdpbf16ps, FP32 accumulation; softmax FP32)"
ATTENTION_ON_TILES = {
    "bf16": _BF16_TILES + ", else FP32",
    "int8": (
        "INT8 where the AMX tiles fit and it times faster than BF16 here (QK^T on tdpbssd, PV on tdpbusd, "
        "scales per call; softmax FP32), else " + _BF16_TILES + ", else FP32"
    ),
    "int8-vnni": (
        "INT8 on AVX-512 VNNI where the keys and value dim are whole vectors and it times faster than FP32 "
        "here (QK^T and PV on vpdpbusd, scales per call; softmax FP32), else FP32"
    ),
}
PRODUCT_LABELS = {
    "int8": "INT8 on AMX tdpbssd / tdpbusd",
    "bf16": "BF16 on AMX tdpbf16ps",
    "int8-vnni": "INT8 on vpdpbusd",
}
_AMX_MISFIT = "head dim or keys not a multiple of 32, queries or value dim not of 16, or gathered operands"
# why an attention asked for those products kept FP32 ones
FP32_REASONS = {
    "int8": _AMX_MISFIT,
    "bf16": _AMX_MISFIT,
    "int8-vnni": "keys or value dim not whole 16-lane vectors, or gathered operands",
}


def attention_on_tiles(options, target) -> str | None:
    """How the fused attention computes its products (a key of edgecc.schedules.attention.PRODUCTS),
    or None (FP32): with --precision bf16, int8 or mixed, on a CPU target (the fused attention is a
    CPU kernel) with AMX or, for int8, AVX-512 VNNI. INT8 on AMX-INT8 is still timed against BF16
    and INT8 on VNNI against FP32 (time_attention_tiles); with AMX-BF16 only, int8 compiles take
    BF16, more precise than the dense layers and faster than FP32.
    Mixed takes BF16: its search budgets the dense layers only, and BF16 attention costs MiniLM
    ~1e-5 of embedding cosine (the report's accuracy step measures the whole model either way)."""
    from edgecc.backends import backend_for
    from edgecc.schedules.matmul_amx import tile_instruction
    from edgecc.schedules.matmul_dot import VPDPBUSD, dot_instruction

    if options.precision not in ("bf16", "int8", "mixed") or not options.fusion or not backend_for(target).cpu_kernels:
        return None
    if options.precision == "int8" and tile_instruction(target, "int8") is not None:
        return "int8"
    if options.precision == "int8" and dot_instruction(target, "int8") == VPDPBUSD:
        return "int8-vnni"
    return "bf16" if tile_instruction(target, "bf16") is not None else None


@dataclass(frozen=True)
class FuseAttentionStats:
    attentions_fused: int = 0
    on_tiles: dict = field(default_factory=dict)  # precision -> attentions with QK^T and PV on AMX tiles in it
    tiles_asked: str | None = None
    tile_timings: tuple = ()  # TileTiming.to_dict() of each plan timed INT8 against BF16 or FP32
    timing: str = ""  # how INT8 against BF16 or FP32 was decided, when INT8 was asked
    tile_failures: int = 0  # attentions the tiles fit whose tile schedule failed (kept FP32)

    def summary(self) -> str:
        text = f"attention: {self.attentions_fused} fused"
        if not self.tiles_asked:
            return text + ", QK^T and PV in FP32"
        parts = [f"QK^T and PV of {n} in {PRODUCT_LABELS[p]}" for p, n in self.on_tiles.items() if n]
        kept = self.attentions_fused - sum(self.on_tiles.values()) - self.tile_failures
        if kept:
            parts.append(f"{kept} in FP32 ({FP32_REASONS[self.tiles_asked]})")
        if self.tile_failures:
            parts.append(f"{self.tile_failures} in FP32 (the tile schedule failed: see the kernel's schedule failures)")
        text += ", " + "; ".join(parts or ["QK^T and PV in FP32"]) + " (softmax FP32)"
        return text + (f"; {self.timing}" if self.timing else "")


@tvm.transform.module_pass(opt_level=0, name="fuse_attention")
class FuseAttention:
    """Every matching attention becomes one call_tir to a fused kernel; dead intermediates are removed.

    `lanes`, `registers`: float32 lanes of the target's vectors and how many vector registers it has
    (edgecc.schedules.vector_lanes, vector_registers).
    `fast_math`: exp as TVM's fast_exp polynomial (what the pipeline's FastMathTransform gives softmax).
    `tiles`: QK^T and PV in that precision, on those instructions, where they fit (`attention_on_tiles`).
    `timing_target`: for INT8, the TVM target of this machine to time each plan's INT8 kernel against
    its BF16 one (AMX) or FP32 one (VNNI) on (time_attention_tiles); None (a board): INT8 where it
    fits, untimed.
    """

    def __init__(
        self,
        lanes: int = LANES,
        fast_math: bool = True,
        tiles: str | None = None,
        timing_target=None,
        registers: int = REGISTERS,
    ):
        self.lanes, self.registers = lanes, registers
        self.fast_math = fast_math
        self.tiles = tiles
        self.timing_target = timing_target
        self.stats = FuseAttentionStats()

    def _kernel(self, plan, out_shape, timed: dict):
        kernel = attention_kernel(plan, self.fast_math, self.lanes, self.tiles, self.registers)
        int8 = uses_tiles(kernel)
        if int8 not in INT8_PRODUCTS or self.timing_target is None:
            return kernel
        key = tvm_ffi.structural_hash(kernel)  # equal plans give equal kernels
        if key not in timed:
            from edgecc.passes.attention.time_attention_tiles import time_plan

            rival = attention_kernel(
                plan, self.fast_math, self.lanes, "bf16" if int8 == "int8" else None, self.registers
            )
            timed[key] = time_plan(
                plan, {int8: kernel, uses_tiles(rival) or "fp32": rival}, out_shape, self.timing_target
            )
        timing = timed[key]
        timing.attentions += 1
        return timing.kernels[timing.kept]

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        fused, failed, on_tiles, timed = [0], [0], {}, {}

        def make(plan, ty):
            def build(mutator):
                kernel = self._kernel(plan, ty.shape, timed)
                precision = uses_tiles(kernel)
                if precision:
                    on_tiles[precision] = on_tiles.get(precision, 0) + 1
                elif self.tiles and kernel.attrs and FAILURES_ATTR in kernel.attrs:
                    failed[0] += 1
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
        timing = ""
        if timed:
            from edgecc.passes.precision.low_precision_timing import loaded_machine_caveat

            rivals = sorted({t.rival.upper() for t in timed.values() if t.rival})
            timing = f"INT8 against {' / '.join(rivals)} timed here: " + ", ".join(
                t.summary() + " kept" for t in timed.values()
            )
            timing += loaded_machine_caveat("either precision may win on a quiet one")
        elif self.tiles in INT8_PRODUCTS and self.timing_target is None:
            timing = "INT8 untimed (the target does not run here)"
        tile_timings = tuple(t.to_dict() for t in timed.values())
        self.stats = FuseAttentionStats(fused[0], on_tiles, self.tiles, tile_timings, timing, failed[0])
        return result
