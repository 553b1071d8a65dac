"""BF16 and INT8 dense kernels on Intel AMX tiles (schedule rule `matmul-amx`).

AMX holds eight 16-row x 64-byte tile registers and multiplies them in one instruction:

  tdpbf16ps   C[16 x 16] f32 += A[16 x 32] bf16 . B[32 x 16] bf16     16 x 16 x 32 multiply-adds
  tdpbusd     C[16 x 16] s32 += A[16 x 64] u8 . B[64 x 16] s8         16 x 16 x 64 multiply-adds

that is 8192 (bf16) or 16384 (int8) multiply-adds per instruction, against 32 (vdpbf16ps) or 64
(vpdpbusd) for the AVX-512 kernels of matmul_dot.py. The kernels are the ones matmul-dot takes (the
activations rounded to bf16 or quantized to u8 by their own kernel, a constant weight, the fused
epilogue); this rule runs before it on targets with amx-bf16 / amx-int8, and a kernel whose shape
the tiles do not fit is left to it.

  weight        repacked at compile time to [N / 16, K / G, 16, G] (matmul-dot's layout with 16-column
                panels; G = 2 for bf16, 4 for int8): the B tile of 16 columns and 16 x G consecutive
                k is one contiguous kilobyte (3-5% faster than 32-column panels, whose tiles are
                rows 128 bytes apart)
  activations   read in place: an A tile is 16 rows of the [M, K] input, K elements apart
  accumulator   an R x T block (R, T in 16, 32; four C tiles at most) over the whole K in one
                tensorized call, held in tiles 0-3 while A (4-5) and B (6-7) tiles stream past,
                then stored for the epilogue (dequantize, bias, GELU, residual) to read back;
                or, for deep panels beside small activations, over one K block (cpu.toml
                [matmul_amx]) at a time for every row block, so the panel's block stays in L1

The tile configuration is per thread, and another library in the process (oneDNN, say) may
change it between two of our calls, so every call loads it (ldtilecfg) first. The kernel also
asks Linux once per process for permission to use the tile data state (arch_prctl
ARCH_REQ_XCOMP_PERM): without it the first tile instruction is an illegal instruction. The compile
checks the permission on this machine (matmul_dot.amx_permitted) before it picks AMX at all.
"""

from __future__ import annotations

from functools import cache

from edgecc.schedules.common import largest_divisor, loop_extent, register_tensor_intrinsic, vectorize_innermost
from edgecc.schedules.matmul_dot import (
    TILE_INSTRUCTIONS,
    DotInstruction,
    DotMatmulRule,
    _dot_layout,
    dot_instruction,
)
from edgecc.schedules.rule import KernelView

TILE_ROWS = 16
TILE_BYTES = 64
MIN_BLOCKED_PANELS = 8  # parallel tasks a K-blocked kernel must have (its panels) to keep every core busy


# Once per process: permission for the tile data state (Linux >= 5.16); then, every call, the
# uniform configuration: palette 1, all eight tiles 16 rows x 64 bytes.
CONFIGURE_IR = """
@edgecc_amx_asked = internal global i32 0
declare i64 @syscall(i64, ...)
declare void @llvm.x86.ldtilecfg(ptr)
define internal void @edgecc_amx_configure() #0 {
entry:
  %asked = load i32, ptr @edgecc_amx_asked
  %done = icmp ne i32 %asked, 0
  br i1 %done, label %configure, label %ask
ask:
  %r = call i64 (i64, ...) @syscall(i64 158, i64 4131, i64 18)
  store i32 1, ptr @edgecc_amx_asked
  br label %configure
configure:
  %cfg = alloca <64 x i8>, align 64
  store <64 x i8> <i8 1, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0,
    i8 64, i8 0, i8 64, i8 0, i8 64, i8 0, i8 64, i8 0, i8 64, i8 0, i8 64, i8 0, i8 64, i8 0, i8 64, i8 0,
    i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0,
    i8 16, i8 16, i8 16, i8 16, i8 16, i8 16, i8 16, i8 16, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0, i8 0>,
    ptr %cfg, align 64
  call void @llvm.x86.ldtilecfg(ptr %cfg)
  ret void
}
attributes #0 = { noinline nounwind "target-features"="+amx-tile" }
"""


def tile_instruction(target, precision: str) -> DotInstruction | None:
    """The AMX instruction for `precision` ("bf16" / "int8") on `target` when it is the best one there
    (the target has it and Linux lets this process use the tiles), else None."""
    ins = dot_instruction(target, precision)
    return ins if ins in TILE_INSTRUCTIONS else None


def bf16_bits(value):
    """A float32 value's bfloat16 bits (round to nearest even) as uint16. A kernel's own buffers hold
    bf16 this way: TIR's BF16 legalization would store a bfloat16 buffer it allocates as float32."""
    from tvm import tirx

    bits = tirx.reinterpret("uint32", value)
    odd = tirx.bitwise_and(tirx.shift_right(bits, tirx.const(16, "uint32")), tirx.const(1, "uint32"))
    return tirx.Cast("uint16", tirx.shift_right(bits + tirx.const(0x7FFF, "uint32") + odd, tirx.const(16, "uint32")))


def from_bf16_bits(bits):
    """The float32 value of bfloat16 bits held as uint16."""
    from tvm import tirx

    return tirx.reinterpret("float32", tirx.shift_left(tirx.Cast("uint32", bits), tirx.const(16, "uint32")))


@cache
def register_tile_intrinsic(ins: DotInstruction, rows: int, cols: int, k: int, bits: bool = False) -> str:
    """Register (once per process) an R x T x K block on `ins`; returns its name. `bits`: the BF16
    operands are uint16 buffers of bf16 bits (`bf16_bits`), widened by `from_bf16_bits`."""
    from tvm.script import tirx as T

    group, a_dtype, w_dtype, acc = ins.group, ins.activation_dtype, ins.weight_dtype, ins.accumulator
    if bits:
        a_dtype = w_dtype = "uint16"
    widen = from_bf16_bits if bits else (lambda value: T.cast(value, acc))
    k_step = ins.k_tile  # k of one A tile's row
    element_bytes = TILE_BYTES // k_step
    row_tiles, col_tiles = rows // TILE_ROWS, cols // TILE_ROWS

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (rows, k), a_dtype, offset_factor=1)
        B = T.match_buffer(b, (col_tiles, k // group, TILE_ROWS, group), w_dtype, offset_factor=1)
        C = T.match_buffer(c, (rows, cols), acc, offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:rows, 0:cols], A[0:rows, 0:k], B[0:col_tiles, 0 : k // group, 0:TILE_ROWS, 0:group])
            T.writes(C[0:rows, 0:cols])
            for i, j, kk in T.grid(rows, cols, k):
                with T.sblock("update"):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, kk])
                    C[vi, vj] = C[vi, vj] + widen(A[vi, vk]) * widen(
                        B[vj // TILE_ROWS, vk // group, vj % TILE_ROWS, vk % group]
                    )

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        sa = T.int32()
        sb = T.int32()
        sc = T.int32()
        A = T.match_buffer(a, (rows, k), a_dtype, offset_factor=1, strides=[sa, 1])
        B = T.match_buffer(
            b,
            (col_tiles, k // group, TILE_ROWS, group),
            w_dtype,
            offset_factor=1,
            strides=[sb, TILE_ROWS * group, group, 1],
        )
        C = T.match_buffer(c, (rows, cols), acc, offset_factor=1, strides=[sc, 1])
        with T.sblock("root"):
            T.reads(C[0:rows, 0:cols], A[0:rows, 0:k], B[0:col_tiles, 0 : k // group, 0:TILE_ROWS, 0:group])
            T.writes(C[0:rows, 0:cols])
            T.evaluate(T.call_extern("void", "edgecc_amx_configure"))
            for r in T.unroll(row_tiles):
                for t in T.unroll(col_tiles):
                    T.evaluate(_accumulator_tile("llvm.x86.tileloadd64", C, r, t, col_tiles, sc))
            for s in range(k // k_step):
                # each product right after its operands' loads: the next step's load of a tile
                # waits only for the products that read it, not for all four
                for r in T.unroll(row_tiles):
                    T.evaluate(
                        _tile(
                            "llvm.x86.tileloadd64",
                            4 + r,
                            T.address_of(A[r * TILE_ROWS, s * k_step]),
                            sa * element_bytes,
                        )
                    )
                    for t in T.unroll(col_tiles):
                        if r == 0:
                            T.evaluate(
                                _tile(
                                    "llvm.x86.tileloadd64",
                                    6 + t,
                                    T.address_of(B[t, s * (k_step // group), 0, 0]),
                                    TILE_BYTES,
                                )
                            )
                        T.evaluate(
                            T.call_llvm_intrin(
                                "void",
                                T.llvm_lookup_intrinsic_id(f"llvm.x86.{ins.name}"),
                                T.uint8(r * col_tiles + t),
                                T.uint8(4 + r),
                                T.uint8(6 + t),
                            )
                        )
            for r in T.unroll(row_tiles):
                for t in T.unroll(col_tiles):
                    T.evaluate(_accumulator_tile("llvm.x86.tilestored64", C, r, t, col_tiles, sc))

    name = f"edgecc_amx_{ins.name}_{rows}x{cols}x{k}" + ("_bits" if bits else "")
    return register_tensor_intrinsic(name, desc, impl)


def _tile(intrinsic: str, tile: int, pointer, stride_bytes):
    from tvm.script import tirx as T

    return T.call_llvm_intrin(
        "void", T.llvm_lookup_intrinsic_id(intrinsic), T.uint8(tile), pointer, T.cast(stride_bytes, "int64")
    )


def _accumulator_tile(intrinsic: str, C, r, t, col_tiles: int, stride):
    """Load or store accumulator tile (r, t), register r x col_tiles + t, of the 32-bit block C."""
    mask = "w" if "store" in intrinsic else "r"
    pointer = C.access_ptr(mask, offset=r * TILE_ROWS * stride + t * TILE_ROWS)
    return _tile(intrinsic, r * col_tiles + t, pointer, stride * 4)


class AmxMatmulRule(DotMatmulRule):
    """R x T blocks of AMX tiles over the whole K, for the BF16 / INT8 dense kernels matmul-dot
    takes, on targets with AMX (see the module docstring)."""

    name = "matmul-amx"

    def __init__(self, row_tiles=(32, 16), column_tiles=(32, 16), k_block=None, k_block_max_activation_kib=None):
        from edgecc.schedules.parameters import schedule_parameters

        super().__init__()
        params = schedule_parameters()["matmul_amx"]
        self.row_tiles = tuple(row_tiles)
        self.column_tiles = tuple(column_tiles)
        self.k_block = params["k_block"] if k_block is None else k_block
        self.k_block_max_activation_kib = (
            params["k_block_max_activation_kib"] if k_block_max_activation_kib is None else k_block_max_activation_kib
        )

    @staticmethod
    def candidates(target) -> list[DotInstruction]:
        found = (tile_instruction(target, precision) for precision in ("bf16", "int8"))
        return [ins for ins in found if ins is not None]

    def _plan(self, kernel: KernelView):
        plan = super()._plan(kernel)
        if plan is None:
            return None
        ins, block = plan[0], plan[1]
        *_, i_loop, j_loop, k_loop = kernel.sch.get_loops(block)
        m, n, k = (loop_extent(kernel.sch, loop) for loop in (i_loop, j_loop, k_loop))
        if not m or m % TILE_ROWS or n % TILE_ROWS or k % ins.k_tile:
            return None
        return plan

    def apply(self, kernel: KernelView) -> list:
        plan = self._plan(kernel)
        if plan is None:
            raise ValueError(f"{kernel.name}: not a dense kernel the AMX tiles fit")
        ins, block, position, n_axis = plan
        sch, blocks = kernel.sch, kernel.blocks
        blocks = self._with_epilogue(sch, blocks, block)  # the tiles store into a block-local accumulator
        index = blocks.index(block)
        *_, i_loop, j_loop, k_loop = sch.get_loops(block)
        m, n, k = (loop_extent(sch, loop) for loop in (i_loop, j_loop, k_loop))
        rows = largest_divisor(m, self.row_tiles)
        cols = largest_divisor(n, self.column_tiles)
        group = ins.group
        sch.transform_layout(
            block, ("read", self._weight_read(sch, block, position)), _dot_layout(n_axis, TILE_ROWS, group)
        )
        for inner in blocks[index + 1 : -1]:
            sch.compute_inline(inner)
        for prologue in blocks[:index]:  # the tiles read memory: a prologue (a cast, say) stays a pass of its own
            _parallel_vectorized(sch, prologue, kernel.lanes)
        *spatial, i, j, kk = sch.get_loops(block)
        io, ii = sch.split(i, [None, rows])
        jo, ji = sch.split(j, [None, cols])
        last = blocks[-1]
        block_k = self._k_block(ins, m, k, panels=n // cols)
        if block_k:
            ko, ki = sch.split(kk, [None, block_k])
            sch.reorder(*spatial, jo, ko, io, ii, ji, ki)
            sch.reverse_compute_at(last, jo)  # the epilogue waits for the panel's last K block
            outer = sch.fuse(*spatial, jo)
            init_at = ko
        else:
            # weight panel outermost, as in matmul-dot: a K x T panel stays in cache for every row block
            sch.reorder(*spatial, jo, io, ii, ji, kk)
            sch.reverse_compute_at(last, io)
            outer = sch.fuse(*spatial, jo, io)
            init_at = ii
        vectorize_innermost(sch, last, kernel.lanes)
        sch.parallel(outer)
        sch.annotate(outer, "pragma_import_llvm", CONFIGURE_IR)
        init = sch.decompose_reduction(block, init_at)
        sch.tensorize(ii, register_tile_intrinsic(ins, rows, cols, block_k or k))
        sch.vectorize(sch.get_loops(init)[-1])
        return [[position, n_axis, TILE_ROWS, group]]

    def _k_block(self, ins: DotInstruction, m: int, k: int, panels: int) -> int | None:
        """K per block when the K x T weight panel should be cut into blocks, else None.

        A row block's products reload the panel's B tiles, and a 768-deep panel (48 KiB in BF16)
        does not stay in L1 while the row blocks' activations stream past it: every row block
        read it again from L2. A 256-deep block (16 KiB) stays in L1 for all row blocks; the
        accumulators wait in a panel-sized buffer between blocks. DistilBERT BF16 on the 2-core
        AMX Xeon, side by side: 11.7 -> 10.9 ms (INT8 7.62 -> 7.21). Only while the activations
        (M x K) stay small enough to come back from L2 for every block: its 3072-deep FFN
        down-projection (768 KiB of activations) ran 15% slower blocked. The panels alone are then
        the parallel tasks, so a kernel with few of them keeps the unblocked schedule."""
        block = self.k_block
        if not block or k <= block or k % block or block % ins.k_tile or panels < MIN_BLOCKED_PANELS:
            return None
        activation_bytes = m * k * TILE_BYTES // ins.k_tile
        return block if activation_bytes <= self.k_block_max_activation_kib * 1024 else None


def _parallel_vectorized(sch, block, lanes: int) -> None:
    loops = sch.get_loops(block)
    if len(loops) > 1:
        sch.parallel(sch.fuse(*loops[:-1]))
    vectorize_innermost(sch, block, lanes)
