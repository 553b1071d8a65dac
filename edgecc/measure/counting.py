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
# LLVM dot-product intrinsics a schedule may tensorize into: operations per output lane and call.
_DOT_INTRINSICS = {"vpdpbusd": 8, "vpdpwssd": 4, "dpbf16ps": 4, "sdot": 8, "udot": 8}
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
    op = str(getattr(getattr(node, "op", None), "name", ""))
    if op.endswith("call_llvm_pure_intrin") or op.endswith("call_llvm_intrin"):
        args = getattr(node, "args", ())
        if args:
            return str(args[0]).strip('"')
    return op


def expression_ops(expr) -> dict[str, int]:
    """Arithmetic operations in one expression, by precision class (loads' indices are not data)."""
    import tvm
    from tvm import tirx

    arith = (tirx.Add, tirx.Sub, tirx.Mul, tirx.Div, tirx.Max, tirx.Min, tirx.FloorDiv)
    counts: dict[str, int] = {}
    pending = [expr]
    while pending:
        node = pending.pop()
        dtype = _dtype(node)
        ops = 0
        if isinstance(node, arith):
            ops = _lanes(dtype)
        elif isinstance(node, tvm.ir.expr.Call):
            name = _call_name(node)
            dot = next((per for key, per in _DOT_INTRINSICS.items() if key in name), None)
            if dot is not None:
                ops = dot * _lanes(dtype)
            elif any(name.endswith(n) for n in _MATH_CALLS):
                ops = _lanes(dtype)
        kind = precision_class(dtype)
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
    "data still in cache from the previous kernel can arrive faster than DRAM bandwidth.")
