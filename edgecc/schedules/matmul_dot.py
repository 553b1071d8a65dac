"""Matmuls on the CPU's dot-product instructions: INT8 and BF16 dense kernels (schedule rule
`matmul-dot`).

A kernel `acc[i, j] += widen(A[i, k]) * widen(W[k, j])` (A the run-time quantized or rounded
activations, W a compile-time constant weight) followed by its fused epilogue (dequantize, bias,
GELU, residual add) is register-tiled like the FP32 matmul (edgecc.schedules), but its innermost
(L columns x G k) step is one instruction:

  x86 AVX-512 VNNI   vpdpbusd        u8 x s8 -> s32, 64 multiply-adds per instruction
  x86 AVX-512BW      vpmaddubsw+vpmaddwd  (vpmaddubsw sums each two u8 x s8 products in an int16
                                      that saturates at 32767: dynamic activations are limited to
                                      0..127 against full int8 weights, calibrated static ones keep
                                      0..255 against weights limited to +-64, so no pair can reach it)
  x86 AVX2           vpmaddubsw+vpmaddwd, 8 lanes (same limits)
  aarch64 +i8mm      smmla           s8 x s8 -> s32, a 2 x 2 tile of 8-long dot products: 32 multiply-adds
                                      per instruction (2 rows at once: its kernel is matmul_mmla.py; a
                                      kernel its tile does not fit runs on sdot here). Checked on the
                                      emulated board only: its speed on a real core is unmeasured
  aarch64 +dotprod   sdot            s8 x s8 -> s32, 16 multiply-adds per instruction
  x86 AVX512-BF16    vdpbf16ps       bf16 x bf16 -> f32, 32 multiply-adds per instruction
  x86 AMX            tdpbusd, tdpbf16ps  16 x 16 accumulator tiles, 16384 / 8192 multiply-adds per
                                      instruction: their kernel is matmul_amx.py, with this layout; a
                                      kernel the tiles do not fit runs here on vpdpbusd / vdpbf16ps

The weight is repacked at compile time to [N / T, K / G, T, G] (T = the tile's columns): one
instruction reads G consecutive k of L consecutive columns as one contiguous vector.

The intrinsics are edgecc's own: TVM 0.27's registered `dot_16x4_vnni` passes the operands of
`llvm.x86.avx512.vpdpbusd.512` as <16 x i32>, which its LLVM 22 rejects ("Call parameter type does
not match function signature": the intrinsic takes <64 x i8> since LLVM 21). Registering our own
also avoids importing `tvm.s_tir.tensor_intrin`, whose package init parses every architecture's
intrinsics (~60 s on a 2-core machine). BF16: TVM's LLVM code generator has no bfloat type (a
bfloat16 value reaching it crashes the process) and TIR's BF16 legalization widens bfloat16 values
to float32, so `vdpbf16ps` is called through a three-line LLVM IR function taking the bf16 bits as
<16 x i32> and bitcasting them to <32 x bfloat>, linked into the kernel's module by TVM's
`pragma_import_llvm` and inlined by LLVM.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, replace
from functools import cache

from edgecc.schedules.common import iter_types, loop_extent, register_tensor_intrinsic, vectorize_innermost
from edgecc.schedules.parameters import target_features, vector_registers
from edgecc.schedules.rule import KernelView


@dataclass(frozen=True)
class DotInstruction:
    name: str  # the mnemonic the disassembly shows
    feature: str  # LLVM CPU feature that provides it
    lanes: int  # accumulators in one vector
    activation_dtype: str  # what the activations are quantized or rounded to
    activation_range: tuple[int, int] | None  # integer codes' range (None: floating point)
    group: int = 4  # consecutive k each lane sums per instruction
    weight_dtype: str = "int8"
    accumulator: str = "int32"
    rows: int = 1  # activation rows one instruction reads (2: a matrix multiply-accumulate such as smmla)
    fallback: DotInstruction | None = None  # the one-row instruction for layers whose shape the tile does not fit
    k_tile: int = 0  # k one instruction reads when that is more than `group` (AMX tiles: 32 bf16, 64 int8)
    pair_sum_limit: int | None = None  # largest sum of two products an intermediate holds (vpmaddubsw: int16)
    # vector registers a k step needs besides the tile's accumulators and weight vectors: the broadcast
    # activations, and for vpmaddubsw + vpmaddwd also the pair sums and the vector of ones
    scratch_registers: int = 1

    @property
    def static_activation_range(self) -> tuple[int, int] | None:
        """Codes of calibrated per-tensor activations (+-127 steps around the range's middle): the
        whole unsigned byte for a u8 operand, whose weights then come from `weight_limit`."""
        return (0, 255) if self.activation_dtype == "uint8" else self.activation_range

    def weight_limit(self, activation_range: tuple[int, int] | None = None) -> int:
        """Largest |weight code| against activation codes in `activation_range` (default: the dynamic
        one) that keeps every sum of two products within `pair_sum_limit`, at most 127."""
        low, high = activation_range or self.activation_range
        if self.pair_sum_limit is None:
            return 127
        return min(127, self.pair_sum_limit // (2 * max(abs(low), abs(high))))

    @property
    def label(self) -> str:
        """How reports name it: "sdot (dotprod)"."""
        return f"{self.name} ({self.feature})"

    @property
    def intrinsic(self) -> str:
        return f"edgecc_dot_{self.name}_{self.lanes}x{self.group}"


VPDPBUSD = DotInstruction("vpdpbusd", "avx512vnni", 16, "uint8", (0, 255))
VDPBF16PS = DotInstruction(
    "vdpbf16ps", "avx512bf16", 16, "bfloat16", None, group=2, weight_dtype="bfloat16", accumulator="float32"
)
# Intel AMX: a 16 x 16 accumulator tile per instruction (its kernel is edgecc.schedules.matmul_amx), with
# matmul-dot's weight layout and operand dtypes; a layer the tiles do not fit runs on the AVX-512 one
TDPBUSD = DotInstruction("tdpbusd", "amx-int8", 16, "uint8", (0, 255), rows=16, fallback=VPDPBUSD, k_tile=64)
TDPBF16PS = DotInstruction(
    "tdpbf16ps",
    "amx-bf16",
    16,
    "bfloat16",
    None,
    group=2,
    weight_dtype="bfloat16",
    accumulator="float32",
    rows=16,
    fallback=VDPBF16PS,
    k_tile=32,
)
TILE_INSTRUCTIONS = (TDPBUSD, TDPBF16PS)
SDOT = DotInstruction("sdot", "dotprod", 4, "int8", (-128, 127))
# smmla: a 2 x 8 block of activations times two weight columns' 8 k, a 2 x 2 int32 tile per
# instruction (`lanes` counts its columns); its kernel is edgecc.schedules.matmul_mmla
SMMLA = DotInstruction("smmla", "i8mm", 2, "int8", (-128, 127), group=8, rows=2, fallback=SDOT)
# Best first: the first one whose feature the target has is used.
INT8_INSTRUCTIONS = (
    TDPBUSD,
    VPDPBUSD,
    DotInstruction("vpmaddubsw", "avx512bw", 16, "uint8", (0, 127), pair_sum_limit=32767, scratch_registers=3),
    DotInstruction("vpmaddubsw", "avx2", 8, "uint8", (0, 127), pair_sum_limit=32767, scratch_registers=3),
    SMMLA,
    SDOT,
)
BF16_INSTRUCTIONS = (TDPBF16PS, VDPBF16PS)
INSTRUCTIONS = INT8_INSTRUCTIONS + BF16_INSTRUCTIONS

# vdpbf16ps for TIR: bf16 bits in, bitcast to LLVM's bfloat inside (see the module docstring)
_DPBF16PS_IR = """
define internal <16 x float> @edgecc_dpbf16ps(<16 x float> %acc, <16 x i32> %a, <16 x i32> %b) #0 {
  %ab = bitcast <16 x i32> %a to <32 x bfloat>
  %bb = bitcast <16 x i32> %b to <32 x bfloat>
  %r = call <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float> %acc, <32 x bfloat> %ab, <32 x bfloat> %bb)
  ret <16 x float> %r
}
declare <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float>, <32 x bfloat>, <32 x bfloat>)
attributes #0 = { alwaysinline nounwind readnone }
"""
LLVM_IR = {"vdpbf16ps": _DPBF16PS_IR}


def dot_instruction(target, precision: str = "int8") -> DotInstruction | None:
    """The dot-product instruction `precision` ("int8" or "bf16") dense layers use on `target`, or
    None when the target has none (no INT8 / BF16 arithmetic)."""
    if target is None or getattr(target, "kind", "llvm") != "llvm":
        return None
    features = target_features(target)
    table = BF16_INSTRUCTIONS if precision == "bf16" else INT8_INSTRUCTIONS
    ins = next((ins for ins in table if ins.feature in features and _usable(ins, features)), None)
    if ins is not None and ins.fallback is not None and ins.fallback.feature not in features:
        ins = replace(ins, fallback=None)  # i8mm without dotprod: a layer the tile does not fit stays FP32
    return ins


def _usable(ins: DotInstruction, features: set[str]) -> bool:
    """AMX also needs the tile feature and Linux's leave to use the tile state in this process."""
    if ins not in TILE_INSTRUCTIONS:
        return True
    return "amx-tile" in features and amx_permitted()


@cache
def amx_permitted() -> bool:
    """Whether Linux grants this process the AMX tile data state (asked once, as the kernels do)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(158, 0x1023, 18) == 0  # arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
    except (OSError, AttributeError):
        return False


def one_row_instruction(ins: DotInstruction | None) -> DotInstruction | None:
    """The instruction matmul-dot tiles with: `ins` itself, or a matrix instruction's fallback."""
    return ins.fallback if ins is not None and ins.rows > 1 else ins


@cache
def register_intrinsic(ins: DotInstruction) -> str:
    """Register (once per process) the tensor intrinsic for `ins`; returns its name."""
    from tvm.script import tirx as T

    lanes, group, a_dtype, w_dtype, acc = ins.lanes, ins.group, ins.activation_dtype, ins.weight_dtype, ins.accumulator
    vec = lanes * group  # elements of one operand vector

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (group,), a_dtype, offset_factor=1)
        B = T.match_buffer(b, (lanes, group), w_dtype, offset_factor=1)
        C = T.match_buffer(c, (lanes,), acc, offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:group], B[0:lanes, 0:group])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, group):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], acc) * T.cast(B[vi, vk], acc)

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (group,), a_dtype, offset_factor=1)
        B = T.match_buffer(b, (lanes, group), w_dtype, offset_factor=1)
        C = T.match_buffer(c, (lanes,), acc, offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:group], B[0:lanes, 0:group])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = _dot(
                ins, C.vload([0], dtype=f"{acc}x{lanes}"), _broadcast(ins, A), B.vload([0, 0], dtype=f"{w_dtype}x{vec}")
            )

    name = ins.intrinsic
    return register_tensor_intrinsic(name, desc, impl)


def _bits(value, dtype: str):
    """bfloat16 values as their raw bits (uint16): TIR's BF16 legalization leaves a reinterpret of a
    bfloat16 buffer load to uint16 alone, where any other bfloat16 expression becomes float32."""
    from tvm.script import tirx as T

    return T.reinterpret(value, dtype=dtype.replace("bfloat16", "uint16")) if "bfloat16" in dtype else value


def _broadcast(ins: DotInstruction, A):
    """The `group` activations of this k step (one 32-bit word), repeated for every lane."""
    from tvm.script import tirx as T

    dtype = f"{ins.activation_dtype}x{ins.group}"
    word = T.reinterpret(_bits(A.vload([0], dtype), dtype), dtype="int32")
    if ins.name == "vdpbf16ps":
        return T.broadcast(word, ins.lanes)
    return T.reinterpret(T.broadcast(word, ins.lanes), dtype=f"{ins.activation_dtype}x{ins.lanes * ins.group}")


def _dot(ins: DotInstruction, acc, a_vec, b_vec):
    from tvm.script import tirx as T

    def llvm(name, dtype, *args):
        return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(name), *args, dtype=dtype)

    lanes = ins.lanes
    if ins.name == "vdpbf16ps":  # through edgecc_dpbf16ps (_DPBF16PS_IR), which takes the bits as int32
        b_words = T.reinterpret(_bits(b_vec, f"bfloat16x{2 * lanes}"), dtype=f"int32x{lanes}")
        return T.call_pure_extern(f"float32x{lanes}", "edgecc_dpbf16ps", acc, a_vec, b_words)
    if ins.name == "vpdpbusd":
        return llvm("llvm.x86.avx512.vpdpbusd.512", f"int32x{lanes}", acc, a_vec, b_vec)
    if ins.name == "sdot":
        return llvm("llvm.aarch64.neon.sdot.v4i32.v16i8", f"int32x{lanes}", acc, a_vec, b_vec)
    # vpmaddubsw: u8 x s8 pairs summed to int16, then vpmaddwd with ones sums pairs to int32
    wide = ins.lanes == 16
    pairs = llvm(
        "llvm.x86.avx512.pmaddubs.w.512" if wide else "llvm.x86.avx2.pmadd.ub.sw", f"int16x{2 * lanes}", a_vec, b_vec
    )
    quads = llvm(
        "llvm.x86.avx512.pmaddw.d.512" if wide else "llvm.x86.avx2.pmadd.wd",
        f"int32x{lanes}",
        pairs,
        T.broadcast(T.int16(1), 2 * lanes),
    )
    return acc + quads


class DotMatmulRule:
    """Register tile + dot-product instruction for INT8 / BF16 dense kernels with a constant weight."""

    name = "matmul-dot"

    def __init__(self, row_tiles=(4, 8, 2, 1), vectors_per_tile=(3, 4, 2, 1)):
        # 4 x 3 vectors measured best here for INT8 (1450-1750 GOP/s vs 1300-1650 at 8 x 3 on Zen 5)
        self.row_tiles = tuple(row_tiles)
        self.vectors_per_tile = tuple(vectors_per_tile)

    def matches(self, kernel: KernelView) -> bool:
        return self._plan(kernel) is not None

    def apply(self, kernel: KernelView) -> list:
        plan = self._plan(kernel)
        if plan is None:
            raise ValueError(f"{kernel.name}: not a dense kernel this rule can tile")
        ins, block, position, n_axis = plan
        sch, blocks = kernel.sch, kernel.blocks
        index = blocks.index(block)
        *_, i_loop, j_loop, _ = sch.get_loops(block)
        n = loop_extent(sch, j_loop)
        rows, vectors = self._register_tile(loop_extent(sch, i_loop), n // ins.lanes, ins, kernel.target)
        tile, group = ins.lanes * vectors, ins.group
        sch.transform_layout(block, ("read", self._weight_read(sch, block, position)), _dot_layout(n_axis, tile, group))
        for inner in blocks[index + 1 : -1]:
            sch.compute_inline(inner)
        for prologue in blocks[:index]:
            sch.compute_inline(prologue)
        *spatial, i, j, k = sch.get_loops(block)
        io, ii = sch.split(i, [None, rows])
        jo, ji = sch.split(j, [None, tile])
        jv, jl = sch.split(ji, [None, ins.lanes])
        ko, kl = sch.split(k, [None, group])
        # weight panel outermost (as in the FP32 rule): a K x T panel stays in cache while the row
        # tiles stream past it
        sch.reorder(*spatial, jo, io, ko, ii, jv, jl, kl)
        if index + 1 < len(blocks):
            last = blocks[-1]
            sch.reverse_compute_at(last, io)
            vectorize_innermost(sch, last, kernel.lanes)
        outer = sch.fuse(*spatial, jo, io)
        sch.parallel(outer)
        if ins.name in LLVM_IR:
            sch.annotate(outer, "pragma_import_llvm", LLVM_IR[ins.name])
        init = sch.decompose_reduction(block, ko)
        sch.tensorize(jl, register_intrinsic(ins))
        sch.unroll(ii)
        sch.unroll(jv)
        sch.vectorize(sch.get_loops(init)[-1])
        return [[position, n_axis, tile, group]]

    def _register_tile(self, m: int, n_vectors: int, ins: DotInstruction, target) -> tuple[int, int]:
        """(rows, vectors): the first of row_tiles and vectors_per_tile dividing the extents when its
        accumulators, weight vectors and the instruction's scratch fit the target's vector registers,
        else the fitting pair with the most accumulators. AVX2 has 16: 4 x 3 with vpmaddubsw needs 18,
        and the spills made the 1536 -> 384 layer with a residual add 1.27 ms where 4 x 2 takes 0.79."""
        rows = [r for r in self.row_tiles if m % r == 0] or [1]
        vectors = [v for v in self.vectors_per_tile if n_vectors % v == 0] or [1]
        registers = vector_registers(target)

        def fits(r, v):
            return r * v + v + ins.scratch_registers <= registers

        if fits(rows[0], vectors[0]):
            return rows[0], vectors[0]
        fitting = [(r, v) for v in vectors for r in rows if fits(r, v)] or [(1, 1)]
        return max(fitting, key=lambda tile: tile[0] * tile[1])

    # -- matching ---------------------------------------------------------------------------
    @staticmethod
    def candidates(target) -> list[DotInstruction]:
        """The instructions this rule may tile for on `target` (matched by operand dtypes)."""
        found = (one_row_instruction(dot_instruction(target, precision)) for precision in ("int8", "bf16"))
        return [ins for ins in found if ins is not None]

    def _plan(self, kernel: KernelView):
        """(instruction, matmul block, weight parameter position, weight's n axis) or None."""
        sch = kernel.sch
        candidates = self.candidates(kernel.target)
        for block in kernel.blocks:
            stmt = sch.get(block)
            types = iter_types(sch, block)
            if types.count("2") != 1 or types[-1] != "2" or len(types) < 3 or len(stmt.reads) != 2:
                continue
            dtypes = sorted(str(r.source.dtype) for r in stmt.reads)
            stored = str(_stored_buffer(stmt).dtype)
            ins = next(
                (
                    c
                    for c in candidates
                    if dtypes == sorted([c.activation_dtype, c.weight_dtype]) and stored == c.accumulator
                ),
                None,
            )
            if ins is None:
                continue
            *_, j_loop, k_loop = sch.get_loops(block)
            n, k = loop_extent(sch, j_loop), loop_extent(sch, k_loop)
            if not n or not k or n % ins.lanes or k % ins.group:
                return None
            found = self._constant_weight(sch, block, kernel.constant_inputs, ins.weight_dtype)
            return None if found is None else (ins, block, *found)
        return None

    @staticmethod
    def _constant_weight(sch, block, constant_inputs, dtype: str):
        params = list(sch.mod["main"].params)
        stmt = sch.get(block)
        j_var, k_var = stmt.iter_vars[-2].var, stmt.iter_vars[-1].var
        for region in stmt.reads:
            if str(region.source.dtype) != dtype or len(region.region) != 2:
                continue
            position = next((p for p, param in enumerate(params) if param.same_as(region.source)), None)
            if position is None or position not in constant_inputs:
                continue
            first, second = (r.min for r in region.region)
            if first.same_as(k_var) and second.same_as(j_var):
                return position, 1
            if first.same_as(j_var) and second.same_as(k_var):
                return position, 0
        return None

    @staticmethod
    def _with_epilogue(sch, blocks: list, block) -> list:
        """`blocks`, with an epilogue block (a copy of the accumulator) after `block` when it is the last."""
        if blocks[-1] != block:
            return blocks
        sch.cache_write(block, 0, "global")
        return [*blocks, sch.get_child_blocks(sch.get_sblock("root"))[-1]]

    @staticmethod
    def _weight_read(sch, block, position) -> int:
        param = list(sch.mod["main"].params)[position]
        return next(i for i, r in enumerate(sch.get(block).reads) if r.source.same_as(param))


def _stored_buffer(stmt):
    return stmt.writes[0].source


def _dot_layout(n_axis: int, tile: int, group: int):
    """Index map of a 2-D weight (n on `n_axis`) to [N / tile, K / group, tile, group]."""
    if n_axis == 1:
        return lambda k, n: (n // tile, k // group, n % tile, k % group)
    return lambda n, k: (n // tile, k // group, n % tile, k % group)
