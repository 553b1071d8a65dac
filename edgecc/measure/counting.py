"""What one call of a kernel (a scheduled PrimFunc) computes, read from its TIR; what it touches is
in traffic.py.

Operations: every arithmetic node in the value of every buffer store, times the extents of the
loops around it (a multiply-add is 2; exp, erf, tanh, sqrt... count 1; a block's init, the zero
fill of a reduction, counts 0). Known dot-product intrinsics count their lanes' products and sums.
Each operation is classed by its data type (fp32, fp16, bf16, int8 for integer data), so a kernel
is compared with the peak of the arithmetic it really does.
"""

from __future__ import annotations

_MATH_CALLS = ("exp", "erf", "tanh", "sqrt", "rsqrt", "log", "sigmoid", "pow", "fabs", "exp2")
# Dot-product instructions a schedule may tensorize into: (useful operations per output lane and call,
# the precision class of their data). vpdpbusd/sdot: 4 int8 products and 4 sums per int32 lane;
# smmla: 8 products and 8 sums per int32 lane of its 2 x 2 tile; vpmaddubsw: 2 products and a sum
# per int16 lane, then vpmaddwd (by ones) one more sum per int32 lane; vdpbf16ps: 2 bf16 products and
# 2 sums per fp32 lane. (AMX's tile instructions: _TILE_INTRINSICS.)
_DOT_INTRINSICS = {
    "vpdpbusd": (8, "int8"),
    "sdot": (8, "int8"),
    "udot": (8, "int8"),
    "smmla": (16, "int8"),
    "pmaddubs": (3, "int8"),
    "pmadd.ub.sw": (3, "int8"),
    "pmaddw.d": (1, "int8"),
    "pmadd.wd": (1, "int8"),
    "dpbf16ps": (4, "bf16"),
    "bfdot": (4, "bf16"),
}
# AMX tile instructions, statements of their own (no value stored): operations per call, precision.
# tdpbf16ps: a 16 x 16 fp32 tile += 16 x 32 bf16 . 32 x 16 bf16; tdpbusd: 16 x 16 int32 += 16 x 64 . 64 x 16.
_TILE_INTRINSICS = {"tdpbf16ps": (2 * 16 * 16 * 32, "bf16"), "tdpbusd": (2 * 16 * 16 * 64, "int8")}
_VALUE_FIELDS = ("a", "b", "value", "condition", "true_value", "false_value", "base", "stride")


def precision_class(dtype: str) -> str | None:
    """The peak table column an operation on `dtype` counts against (None: index/bool arithmetic)."""
    base = dtype.split("x")[0]
    if base.startswith("float16"):
        return "fp16"
    if base.startswith("bfloat16"):
        return "bf16"
    if base.startswith("float"):
        return "fp32"
    if base in ("int8", "uint8", "int16", "uint16", "int32", "uint32"):
        return "int8"  # integer data arithmetic appears in the quantized paths only
    return None  # int64 (indices), bool, handles


def _dtype(node) -> str:
    return str(getattr(node, "dtype", None) or getattr(node, "ty", ""))


def _children(node) -> list:
    import tvm

    out = []
    for name in _VALUE_FIELDS:
        child = getattr(node, name, None)
        if isinstance(child, tvm.ir.expr.Expr):
            out.append(child)
    for name in ("args", "vectors"):
        out.extend(a for a in (getattr(node, name, None) or ()) if isinstance(a, tvm.ir.expr.Expr))
    return out


def _lanes(dtype: str) -> int:
    import tvm

    try:
        return max(1, int(tvm.DataType(dtype).lanes))
    except (ValueError, TypeError, RuntimeError):
        return 1


def _call_name(node) -> str:
    """The called function's name; for an LLVM intrinsic its own name (TIR stores it as an id)."""
    op = str(getattr(getattr(node, "op", None), "name", ""))
    if op.endswith(("call_pure_extern", "call_extern")) and getattr(node, "args", None):
        return str(node.args[0]).strip('"')
    if op.endswith("call_llvm_pure_intrin") or op.endswith("call_llvm_intrin"):
        args = getattr(node, "args", ())
        if args:
            try:
                from tvm.target import codegen

                return codegen.llvm_get_intrinsic_name(int(args[0]))
            except (TypeError, ValueError, RuntimeError):
                return str(args[0]).strip('"')
    return op


def expression_ops(expr) -> dict[str, int]:
    """Arithmetic operations in one expression, by precision class (loads' indices are not data).

    A subexpression that occurs more than once is counted once, as the compiled code computes it:
    TOPI's fast_exp repeats its clamped input through the polynomial, 85 nodes per element as a
    tree, about 20 after LLVM's common-subexpression elimination; counted as a tree, MobileViT's
    SiLU convolutions read 1.2-1.6x the machine's peak."""
    import tvm
    import tvm_ffi
    from tvm import tirx

    arith = (tirx.Add, tirx.Sub, tirx.Mul, tirx.Div, tirx.Max, tirx.Min, tirx.FloorDiv)
    counts: dict[str, int] = {}
    seen: dict[int, list] = {}  # structural hash -> subexpressions already counted
    pending = [expr]
    while pending:
        node = pending.pop()
        key = tvm_ffi.structural_hash(node)
        if any(tvm_ffi.structural_equal(node, other) for other in seen.get(key, ())):
            continue
        seen.setdefault(key, []).append(node)
        dtype = _dtype(node)
        ops = 0
        kind = precision_class(dtype)
        if isinstance(node, arith):
            ops = _lanes(dtype)
        elif isinstance(node, tvm.ir.expr.Call):
            name = _call_name(node)
            dot = next((spec for key, spec in _DOT_INTRINSICS.items() if key in name), None)
            if dot is not None:
                ops, kind = dot[0] * _lanes(dtype), dot[1]
            elif any(name.endswith(n) for n in _MATH_CALLS):
                ops = _lanes(dtype)
        if ops and kind:
            counts[kind] = counts.get(kind, 0) + ops
        pending.extend(_children(node))
    return counts


def _extent(value) -> int:
    try:
        return int(value)
    except TypeError:
        return 1  # a symbolic extent: count one iteration rather than guess


def count_ops(func) -> dict[str, int]:
    """Operations of one call of a PrimFunc by precision class: {"fp32": n, "int8": m, ...}."""
    from tvm import s_tir, tirx

    totals: dict[str, int] = {}

    def walk(stmt, trips: int) -> None:
        if isinstance(stmt, tirx.For):
            walk(stmt.body, trips * _extent(stmt.extent))
        elif isinstance(stmt, tirx.BufferStore):
            for kind, n in expression_ops(stmt.value).items():
                totals[kind] = totals.get(kind, 0) + trips * n
        elif isinstance(stmt, tirx.Evaluate):
            name = _call_name(stmt.value)
            tile = next((spec for key, spec in _TILE_INTRINSICS.items() if name.endswith(key)), None)
            if tile is not None:
                totals[tile[1]] = totals.get(tile[1], 0) + trips * tile[0]
        elif isinstance(stmt, tirx.SeqStmt):
            for s in stmt.seq:
                walk(s, trips)
        elif isinstance(stmt, s_tir.SBlockRealize):
            walk(stmt.block, trips)
        elif isinstance(stmt, s_tir.SBlock):
            walk(stmt.body, trips)  # the init (zero fill) is not arithmetic
        elif isinstance(stmt, tirx.IfThenElse):
            walk(stmt.then_case, trips)
            if stmt.else_case is not None:
                walk(stmt.else_case, trips)
        elif getattr(stmt, "body", None) is not None:
            walk(stmt.body, trips)

    walk(func.body, 1)
    return totals


def count_flops(func) -> int:
    """All arithmetic operations of one call of a PrimFunc (a multiply-add counts 2)."""
    return sum(count_ops(func).values())


def dominant_precision(ops: dict[str, int]) -> str:
    return max(ops, key=ops.get) if ops else "fp32"


COUNTING_METHOD = (
    "Operations are read from each kernel's TIR: every arithmetic node in every buffer store times the "
    "extents of its loops (a multiply-add is 2, exp/erf/tanh/sqrt 1, a reduction's zero fill 0), classed by "
    "data type and compared with that precision's peak. Bytes are each argument buffer's footprint, each "
    "element once: the bounding box of the indices its loads and stores reach over their loop ranges; a "
    "gather counts the rows it reads indices for, a broadcast operand and a packed weight count once, "
    "buffers a kernel allocates for itself are not counted. That is the least traffic a kernel causes; "
    "data still in cache from the previous kernel can arrive faster than DRAM bandwidth."
)
