"""Dense layers in FP16 arithmetic on aarch64 NEON with +fullfp16 (schedule rule `matmul-fp16`).

A kernel `acc[i, j] += f32(A[i, k]) * f32(W[k, j])` (A the FP16-rounded activations, W a
compile-time constant FP16 weight; what `matmul(a16, w16, out_dtype="float32")` legalizes to) and its
fused epilogue (bias, GELU, residual add, in FP32) gets a rows x vectors register tile whose
accumulators are FP16 vectors (8 lanes of a 128-bit register: twice the FP32 lanes the target reads):

    for each K block of B:                     acc16[r, v] = 0
        for k in block, v, r (unrolled):       acc16[r, v] = fma(a[r, k], w[k, v*8:(v+1)*8], acc16[r, v])
                                                           -> fmla v.8h, v.8h, v.h[lane]
        C[r, v] += f32(acc16[r, v])             -> fcvtl / fcvtl2 + fadd (FP32 across blocks)

so every multiply-add is one FP16 lane of `fmla .8h` (8 per instruction, twice FP32's 4), and
rounding errors of the FP16 accumulators build up over B products only; the block sums add up in
FP32. B (`k_block` in cpu.toml) was chosen by the accuracy it measured on the real all-MiniLM-L6-v2
(edgecc.passes.precision.cast_matmuls_to_fp16 documents the numbers). `fmlal` (FP16 products into
FP32 lanes, FEAT_FHM) was the other choice: exact enough to need no blocking, but it does 4
multiply-adds per instruction, the same as FP32 `fmla .4s`, so it buys no arithmetic over FP32 and
Cortex-A76 (Raspberry Pi 5) does not have it.

The weight is stored FP16 in the FP32 rule's panels [N / T, K, T] (T = 8 x vectors), read one
contiguous T-wide row per k step.
"""

from __future__ import annotations

from functools import cache

from edgecc.schedules.common import largest_divisor, loop_extent, register_tensor_intrinsic, vectorize_innermost
from edgecc.schedules.matmul_dot import DotInstruction, DotMatmulRule, target_features
from edgecc.schedules.parameters import schedule_parameters, vector_lanes
from edgecc.schedules.rule import KernelView
from edgecc.schedules.weight_packing import panel_layout

FP16_FEATURE = "fullfp16"
# A K without a divisor in [MIN_K_BLOCK, k_block] (a prime K, say) would leave the FP16 accumulators
# a handful of products each: such a layer stays FP32 (cast_matmuls_to_fp16 lists it and why).
MIN_K_BLOCK = 8


def k_block_for(k: int) -> int | None:
    """The K block a dense layer of reduction length `k` gets: the largest divisor of `k` up to
    cpu.toml's k_block, or None when it would be shorter than MIN_K_BLOCK."""
    block = largest_divisor(k, range(schedule_parameters()["matmul_fp16"]["k_block"], 0, -1))
    return block if block > 1 and block >= min(MIN_K_BLOCK, k) else None


def fp16_instruction(target) -> DotInstruction | None:
    """The FP16 multiply-add dense layers use on `target` (fmla on 8 FP16 lanes), or None when the
    target has no FP16 arithmetic on its CPU (x86 here; aarch64 without +fullfp16; GPU targets, whose
    FP16 is dlight's business)."""
    if target is None or getattr(target, "kind", "llvm") != "llvm" or FP16_FEATURE not in target_features(target):
        return None
    # 16-bit lanes of the vector registers the FP32 rule uses (NEON: 4 float32 -> 8 float16)
    return DotInstruction(
        "fmla",
        FP16_FEATURE,
        2 * vector_lanes(target),
        "float16",
        None,
        group=1,
        weight_dtype="float16",
        accumulator="float32",
    )


@cache
def register_fp16_intrinsic(rows: int, vectors: int, k_block: int, lanes: int) -> str:
    """Register (once per process) the rows x (vectors x lanes) x k_block FP16 tile; returns its name."""
    from tvm.script import tirx as T

    tile = vectors * lanes
    vec16, vec32 = f"float16x{lanes}", f"float32x{lanes}"
    fma = f"llvm.fma.v{lanes}f16"

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, w: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (rows, k_block), "float16", offset_factor=1)
        W = T.match_buffer(w, (k_block, tile), "float16", offset_factor=1)
        C = T.match_buffer(c, (rows, tile), "float32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:rows, 0:tile], A[0:rows, 0:k_block], W[0:k_block, 0:tile])
            T.writes(C[0:rows, 0:tile])
            for i, j, k in T.grid(rows, tile, k_block):
                with T.sblock("update"):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                    C[vi, vj] = C[vi, vj] + T.cast(A[vi, vk], "float32") * T.cast(W[vk, vj], "float32")

    @T.prim_func(s_tir=True)
    def desc_one_row(a: T.handle, w: T.handle, c: T.handle) -> None:
        # rows == 1: the kernel's row loop of extent 1 is simplified away, so the pattern has no i loop
        A = T.match_buffer(a, (1, k_block), "float16", offset_factor=1)
        W = T.match_buffer(w, (k_block, tile), "float16", offset_factor=1)
        C = T.match_buffer(c, (1, tile), "float32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0, 0:tile], A[0, 0:k_block], W[0:k_block, 0:tile])
            T.writes(C[0, 0:tile])
            for j, k in T.grid(tile, k_block):
                with T.sblock("update"):
                    vj, vk = T.axis.remap("SR", [j, k])
                    C[0, vj] = C[0, vj] + T.cast(A[0, vk], "float32") * T.cast(W[vk, vj], "float32")

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, w: T.handle, c: T.handle) -> None:
        sa = T.int32()
        sw = T.int32()
        sc = T.int32()
        A = T.match_buffer(a, (rows, k_block), "float16", offset_factor=1, strides=[sa, 1])
        W = T.match_buffer(w, (k_block, tile), "float16", offset_factor=1, strides=[sw, 1])
        C = T.match_buffer(c, (rows, tile), "float32", offset_factor=1, strides=[sc, 1])
        with T.sblock("root"):
            T.reads(C[0:rows, 0:tile], A[0:rows, 0:k_block], W[0:k_block, 0:tile])
            T.writes(C[0:rows, 0:tile])
            # the FP16 accumulators: constant indices once unrolled, so LLVM keeps them in registers
            acc = T.alloc_buffer((rows, tile), "float16", scope="local")
            for r in T.unroll(rows):
                for v in T.unroll(vectors):
                    acc[r, T.ramp(v * lanes, 1, lanes)] = T.broadcast(T.float16(0), lanes)
            for k in T.serial(k_block):
                for v in T.unroll(vectors):
                    for r in T.unroll(rows):
                        acc[r, T.ramp(v * lanes, 1, lanes)] = T.call_llvm_pure_intrin(
                            T.llvm_lookup_intrinsic_id(fma),
                            T.broadcast(A[r, k], lanes),
                            W[k, T.ramp(v * lanes, 1, lanes)],
                            acc[r, T.ramp(v * lanes, 1, lanes)],
                            dtype=vec16,
                        )
            for r in T.unroll(rows):
                for v in T.unroll(vectors):
                    C[r, T.ramp(v * lanes, 1, lanes)] = C[r, T.ramp(v * lanes, 1, lanes)] + T.cast(
                        acc[r, T.ramp(v * lanes, 1, lanes)], vec32
                    )

    name = f"edgecc_fp16_fmla_{rows}x{vectors}x{lanes}_k{k_block}"
    return register_tensor_intrinsic(name, desc if rows > 1 else desc_one_row, impl)


class Fp16MatmulRule(DotMatmulRule):
    """Register tile with FP16 accumulators in K blocks, for FP16 x FP16 -> FP32 dense kernels with a
    constant weight, on targets with FP16 arithmetic (see the module docstring)."""

    name = "matmul-fp16"

    @staticmethod
    def candidates(target) -> list[DotInstruction]:
        ins = fp16_instruction(target)
        return [ins] if ins is not None else []

    def apply(self, kernel: KernelView) -> list:
        plan = self._plan(kernel)
        if plan is None:
            raise ValueError(f"{kernel.name}: not an FP16 dense kernel this rule can tile")
        ins, block, position, n_axis = plan
        params = schedule_parameters()["matmul_fp16"]
        sch, blocks = kernel.sch, kernel.blocks
        index = blocks.index(block)
        *_, j_loop, k_loop = sch.get_loops(block)
        n, k = loop_extent(sch, j_loop), loop_extent(sch, k_loop)
        vectors = largest_divisor(n // ins.lanes, params["vectors_per_tile"])
        tile, k_block = ins.lanes * vectors, k_block_for(k)
        if k_block is None:
            raise ValueError(f"{kernel.name}: K={k} has no divisor between {MIN_K_BLOCK} and {params['k_block']}")
        sch.transform_layout(block, ("read", self._weight_read(sch, block, position)), panel_layout(n_axis, tile))
        for inner in blocks[index + 1 : -1]:
            sch.compute_inline(inner)
        for prologue in blocks[:index]:
            sch.compute_inline(prologue)
        *spatial, i, j, k_loop = sch.get_loops(block)
        rows = largest_divisor(loop_extent(sch, i), params["row_tiles"])
        io, ii = sch.split(i, [None, rows])
        jo, ji = sch.split(j, [None, tile])
        ko, ki = sch.split(k_loop, [None, k_block])
        sch.reorder(*spatial, jo, io, ko, ii, ji, ki)
        if index + 1 < len(blocks):
            last = blocks[-1]
            sch.reverse_compute_at(last, io)
            vectorize_innermost(sch, last, kernel.lanes)
        sch.parallel(sch.fuse(*spatial, jo, io))
        init = sch.decompose_reduction(block, ko)
        sch.tensorize(ii if rows > 1 else ji, register_fp16_intrinsic(rows, vectors, k_block, ins.lanes))
        sch.vectorize(sch.get_loops(init)[-1])
        return [[position, n_axis, tile]]
