"""The two small kernels around each bucket: pad the caller's inputs up to the bucket's shape, and
cut the bucket's outputs back to the caller's.

Padding along a sequence axis is 0 for every input: token id 0, token type 0 and, what makes the
padded run equal the unpadded one, attention mask 0, so no real token attends to a padded key
(padded positions sit after the real ones, so position ids of the real tokens do not move).
Padding along the batch axis repeats the caller's last row: the model runs on real-looking rows
(no row of all-masked keys) whose results are then dropped.
Both are left unscheduled here: the backend's default schedules take them like any other kernel
(on CPUs the elementwise rule: parallel rows, vectorised last axis; dlight on GPUs). After that,
`guard_sizes` puts an assert at the top of every pad kernel: a size of 0, or past the largest
bucket, stops the run with one line from the library itself (a TIR assert needs only the TVM
runtime) before anything reads outside a buffer.
"""

from __future__ import annotations

BATCH, SEQUENCE = "batch", "sequence"
SIZE_LIMITS = "edgecc.size_limits"  # pad kernel attr: [(axis, bucket size, largest size, dim name)]


def _symbolic_shape(shape, dynamic_axes, sizes) -> list:
    by_axis = dict(dynamic_axes)
    return [sizes[by_axis[axis]] if axis in by_axis else dim for axis, dim in enumerate(shape)]


def pad_kernel(dtype: str, bucket_shape, dynamic_axes):
    """PrimFunc (x: caller's shape, y: bucket_shape): x padded, as the module docstring says."""
    from tvm import te, tirx

    sizes = {name: tirx.Var(name[0], "int64") for _, name in dynamic_axes}
    x = te.placeholder(_symbolic_shape(bucket_shape, dynamic_axes, sizes), dtype, name="x")
    by_axis = dict(dynamic_axes)

    def value(*index):
        inside = [index[a] < sizes[SEQUENCE] for a, name in by_axis.items() if name == SEQUENCE]
        # clamped, so the load stays inside x even where the value is not used
        source = [tirx.min(i, sizes[by_axis[a]] - 1) if a in by_axis else i for a, i in enumerate(index)]
        loaded = x[tuple(source)]
        return tirx.if_then_else(tirx.all(*inside), loaded, tirx.const(0, dtype)) if inside else loaded

    y = te.compute(list(bucket_shape), value, name="pad")
    return te.create_prim_func([x, y])


def with_size_limits(func, dynamic_axes, bucket_shape, largest: dict):
    """`func` (a pad kernel) noting which sizes `guard_sizes` must check."""
    return func.with_attr(
        SIZE_LIMITS, [[axis, int(bucket_shape[axis]), int(largest[dim]), dim] for axis, dim in dynamic_axes]
    )


def guard_sizes(mod):
    """Every pad kernel starts with `assert 1 <= size <= bucket` for its dynamic axes (run after
    scheduling: TVM's schedule primitives want the root block to be the whole body)."""
    import tvm
    from tvm import tirx

    updates = {}
    for gvar, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc) or not func.attrs or SIZE_LIMITS not in func.attrs:
            continue
        checks, body = [], func.body
        for axis, bucket, largest, dim in func.attrs[SIZE_LIMITS]:
            size = func.params[0].shape[int(axis)]  # TVM 0.27: a buffer parameter is the buffer itself
            message = tvm.ir.expr.StringImm(f"edgecc: input {dim} size must be 1..{int(largest)}")
            # The Python wrapper hands its first two arguments to the constructor in the other order.
            checks.append(
                tirx.AssertStmt(
                    tirx.all(1 <= size, size <= int(bucket)), tvm.ir.expr.StringImm("ValueError"), [message]
                )
            )
        updates[gvar] = func.with_body(tirx.SeqStmt([*checks, body])).without_attr(SIZE_LIMITS)
    for gvar, func in updates.items():
        mod[gvar] = func
    return mod


def cut_kernel(dtype: str, bucket_shape, dynamic_axes):
    """PrimFunc (x: bucket_shape, y: the caller's shape): the leading part of x along the dynamic axes."""
    from tvm import te, tirx

    sizes = {name: tirx.Var(name[0], "int64") for _, name in dynamic_axes}
    x = te.placeholder(list(bucket_shape), dtype, name="x")
    y = te.compute(_symbolic_shape(bucket_shape, dynamic_axes, sizes), lambda *index: x[index], name="cut")
    return te.create_prim_func([x, y])
