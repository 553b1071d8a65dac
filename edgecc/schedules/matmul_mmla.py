"""INT8 dense kernels on aarch64 `smmla` (FEAT_I8MM; schedule rule `matmul-mmla`).

`smmla` multiplies a 2 x 8 block of int8 activations (rows r0, r1; 8 consecutive k) by two weight
columns' 8 k and adds the 2 x 2 int32 products to one vector [r0c0, r0c1, r1c0, r1c1]: 32
multiply-adds per instruction, twice `sdot`'s 16. The kernel `acc[i, j] += A[i, k] * W[k, j]` of
edgecc.passes.precision.quantize_dense_layers_int8 (s8 x s8 -> s32, so no +128 compensation) and its
fused epilogue (dequantize, bias, GELU, residual) get an R x T register tile of such 2 x 2 tiles:

  weight        repacked at compile time to [N / T, K / 8, T, 8] (matmul-dot's layout with G = 8): one
                16-byte load is two adjacent columns' 8 consecutive k
  activations   two rows' 8 bytes loaded separately and combined into one vector (no packing pass)
  accumulator   stored as [.., M / 2, N / 2, 2, 2], so each 2 x 2 tile is one vector; the epilogue
                reads it back by (i, j), which un-interleaves it

A kernel the tile does not fit (an odd row count, K not a multiple of 8, N odd) is left to
matmul-dot, which takes it on `sdot`: the INT8 pass lists such layers and why
(Int8DenseStats.instruction_fallbacks) and the report counts kernels by rule. The speed of this path
is unmeasured: no board with i8mm is reachable, and the emulated board (QEMU) proves only that the
numbers are right.
"""

from __future__ import annotations

from functools import cache

from edgecc.schedules.common import largest_divisor, loop_extent, register_tensor_intrinsic, vectorize_innermost
from edgecc.schedules.matmul_dot import SMMLA, DotInstruction, DotMatmulRule, _dot_layout, dot_instruction
from edgecc.schedules.rule import KernelView


def mmla_instruction(target) -> DotInstruction | None:
    """smmla when it is `target`'s best INT8 instruction, else None."""
    ins = dot_instruction(target, "int8")
    return ins if ins is not None and ins.name == SMMLA.name else None


@cache
def register_mmla_intrinsic(ins: DotInstruction = SMMLA) -> str:
    """Register (once per process) the 2 x 2 x 8 smmla tile; returns its name."""
    from tvm.script import tirx as T

    rows, cols, group = ins.rows, ins.lanes, ins.group

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (rows, group), "int8", offset_factor=1)
        B = T.match_buffer(b, (cols, group), "int8", offset_factor=1)
        C = T.match_buffer(c, (rows, cols), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:rows, 0:cols], A[0:rows, 0:group], B[0:cols, 0:group])
            T.writes(C[0:rows, 0:cols])
            for i, j, k in T.grid(rows, cols, group):
                with T.sblock("update"):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                    C[vi, vj] = C[vi, vj] + T.cast(A[vi, vk], "int32") * T.cast(B[vj, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa = T.int32()
        A = T.match_buffer(a, (rows, group), "int8", offset_factor=1, strides=[sa, 1])
        B = T.match_buffer(b, (cols, group), "int8", offset_factor=1)
        C = T.match_buffer(c, (rows, cols), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:rows, 0:cols], A[0:rows, 0:group], B[0:cols, 0:group])
            T.writes(C[0:rows, 0:cols])
            # the two activation rows are K apart: two 8-byte loads, one 16-byte operand
            pair = T.vectorcombine(A.vload([0, 0], dtype="int8x8"), A.vload([1, 0], dtype="int8x8"), dtype="int8x16")
            C[0, T.ramp(T.int32(0), 1, 4)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.smmla.v4i32.v16i8"),
                C.vload([0, 0], dtype="int32x4"),
                pair,
                B.vload([0, 0], dtype="int8x16"),
                dtype="int32x4",
            )

    name = f"edgecc_mmla_{ins.name}_{rows}x{cols}x{group}"
    return register_tensor_intrinsic(name, desc, impl)


def _tiled_accumulator(ndim: int):
    """Index map of the [.., M, N] accumulator to [.., M / 2, N / 2, 2, 2]: one smmla tile contiguous."""
    # TVM reads the map's arity from its signature: spell the cases out
    if ndim == 2:
        return lambda i, j: (i // 2, j // 2, i % 2, j % 2)
    if ndim == 3:
        return lambda b, i, j: (b, i // 2, j // 2, i % 2, j % 2)
    if ndim == 4:
        return lambda a, b, i, j: (a, b, i // 2, j // 2, i % 2, j % 2)
    raise ValueError(f"no tiled accumulator for a {ndim}-D matmul")


class MmlaMatmulRule(DotMatmulRule):
    """Register tile of smmla 2 x 2 tiles for s8 x s8 -> s32 dense kernels with a constant weight, on
    targets with i8mm (see the module docstring)."""

    name = "matmul-mmla"

    def __init__(self, row_tiles=(8, 4, 2), column_tiles=(8, 4, 2)):
        # 8 x 8: 16 accumulator registers + 4 activation + 4 weight vectors of NEON's 32 (unmeasured)
        super().__init__()
        self.row_tiles = tuple(row_tiles)
        self.column_tiles = tuple(column_tiles)

    @staticmethod
    def candidates(target) -> list[DotInstruction]:
        ins = mmla_instruction(target)
        return [ins] if ins is not None else []

    def _plan(self, kernel: KernelView):
        plan = super()._plan(kernel)
        if plan is None:
            return None
        ins, block = plan[0], plan[1]
        i_loop = kernel.sch.get_loops(block)[-3]
        rows = loop_extent(kernel.sch, i_loop)
        return plan if rows and rows % ins.rows == 0 else None

    def apply(self, kernel: KernelView) -> list:
        plan = self._plan(kernel)
        if plan is None:
            raise ValueError(f"{kernel.name}: not an INT8 dense kernel the smmla tile fits")
        ins, block, position, n_axis = plan
        sch, blocks = kernel.sch, kernel.blocks
        blocks = self._with_epilogue(sch, blocks, block)  # one reads the tiled accumulator back
        index = blocks.index(block)
        *_, i_loop, j_loop, _ = sch.get_loops(block)
        m, n = loop_extent(sch, i_loop), loop_extent(sch, j_loop)
        rows = largest_divisor(m, self.row_tiles)
        tile = largest_divisor(n, self.column_tiles)
        group = ins.group
        sch.transform_layout(block, ("read", self._weight_read(sch, block, position)), _dot_layout(n_axis, tile, group))
        sch.transform_layout(block, ("write", 0), _tiled_accumulator(len(sch.get_loops(block)) - 1))
        for inner in blocks[index + 1 : -1]:
            sch.compute_inline(inner)
        for prologue in blocks[:index]:
            sch.compute_inline(prologue)
        *spatial, i, j, k = sch.get_loops(block)
        io, iv, ir = sch.split(i, [None, rows // ins.rows, ins.rows])
        jo, jv, jr = sch.split(j, [None, tile // ins.lanes, ins.lanes])
        ko, kr = sch.split(k, [None, group])
        # weight panel outermost, as in matmul-dot
        sch.reorder(*spatial, jo, io, ko, iv, jv, ir, jr, kr)
        last = blocks[-1]
        sch.reverse_compute_at(last, io)
        vectorize_innermost(sch, last, kernel.lanes)
        sch.parallel(sch.fuse(*spatial, jo, io))
        init = sch.decompose_reduction(block, ko)
        sch.tensorize(ir, register_mmla_intrinsic(ins))
        sch.unroll(iv)
        sch.unroll(jv)
        sch.vectorize(sch.get_loops(init)[-1])
        return [[position, n_axis, tile, group]]
