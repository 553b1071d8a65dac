"""A tuning record's kernel in words: the names of its computations, its buffers' shapes and dtypes,
read from the workload's PrimFunc (the 24-character workload key alone tells a reader nothing)."""

from __future__ import annotations

_DTYPES = {
    "float32": "f32",
    "float16": "f16",
    "bfloat16": "bf16",
    "int64": "i64",
    "int32": "i32",
    "int8": "i8",
    "uint8": "u8",
    "bool": "bool",
}


def _buffer(param) -> str:
    ty = param.ty
    shape = "x".join(str(int(d)) if str(d).lstrip("-").isdigit() or hasattr(d, "value") else str(d) for d in ty.shape)
    dtype = str(ty.dtype)
    return f"{shape or 'scalar'} {_DTYPES.get(dtype, dtype)}"


def _walk(stmt, on_stmt) -> None:
    """Every statement of a TIR body, parents first (tvm.tirx has no Python visitor in 0.27)."""
    if stmt is None:
        return
    on_stmt(stmt)
    for name in ("body", "block", "then_case", "else_case", "init"):
        _walk(getattr(stmt, name, None), on_stmt)
    for child in getattr(stmt, "seq", None) or ():
        _walk(child, on_stmt)


def _block_names(func) -> list[str]:
    from tvm import s_tir

    names = []

    def note(stmt):
        if isinstance(stmt, s_tir.SBlockRealize) and stmt.block.name_hint not in ("root", *names):
            names.append(stmt.block.name_hint)

    _walk(func.body, note)
    return names


def _written(func) -> set[str]:
    from tvm import tirx

    written = set()
    _walk(func.body, lambda stmt: written.add(str(stmt.buffer.name)) if isinstance(stmt, tirx.BufferStore) else None)
    return written


def describe_workload(workload_json) -> str:
    """'matmul+T_add: 128x384 f32, 384x384 f32, 384 f32 -> 128x384 f32', or why it cannot be read."""
    try:
        from tvm.s_tir import meta_schedule as ms

        mod = ms.database.Workload.from_json(workload_json).mod
        func = next(f for _, f in mod.functions.items())
        blocks = _block_names(func)
        written = _written(func)
        inputs = [_buffer(p) for p in func.params if str(p.name) not in written]
        outputs = [_buffer(p) for p in func.params if str(p.name) in written]
    except Exception as exc:  # noqa: BLE001 - a workload from another TVM version: say so, keep listing
        return f"(kernel not readable: {type(exc).__name__})"
    name = "+".join(blocks[:4]) + ("+..." if len(blocks) > 4 else "") or "kernel"
    return f"{name}: {', '.join(inputs)} -> {', '.join(outputs)}"
