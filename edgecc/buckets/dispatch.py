"""The artifact's `main` over buckets: symbolic batch / sequence sizes in its signature, then the
smallest bucket that holds them: pad the inputs, call that bucket's static `main_<tag>`, cut its
outputs back.

    def main(input_ids: R.Tensor((1, s)), attention_mask: R.Tensor((1, s))):
        assert 1 <= s <= 256
        if s <= 16:  return cut(main_s16(pad(input_ids), pad(attention_mask)))
        elif s <= 32: ...
        else:        return cut(main_s256(...))

A size outside 1..maximum fails an assert inside the library (kernels.guard_sizes), so a caller that
bypasses edgecc's own input checks (the deploy C API checks too) gets an error, never a read past
its buffers.
"""

from __future__ import annotations

from edgecc.buckets.kernels import BATCH, SEQUENCE, cut_kernel, pad_kernel, with_size_limits


def add_dispatch_main(mod, buckets, inputs, outputs):
    """`mod` (every bucket's functions, renamed by merge.py) plus pad/cut kernels and `main`.

    buckets: [(Bucket, tag)] smallest first (batch, then length), each with a `main_<tag>`;
    inputs / outputs: TensorSpecs at the largest shape with their dynamic_axes."""
    import tvm
    from tvm import relax, tirx
    from tvm.relax.expr import _update_type

    sizes = {BATCH: tirx.Var("batch", "int64"), SEQUENCE: tirx.Var("seq", "int64")}
    largest = buckets[-1][0]
    limits = {BATCH: largest.batch, SEQUENCE: largest.seq_len}

    def symbolic(spec):
        by_axis = dict(spec.dynamic_axes)
        return relax.TensorType(
            [sizes[by_axis[a]] if a in by_axis else d for a, d in enumerate(spec.shape)], spec.dtype
        )

    def at_bucket(spec, bucket):
        by_axis = dict(spec.dynamic_axes)
        size = {BATCH: bucket.batch, SEQUENCE: bucket.seq_len}
        return [size[by_axis[a]] if a in by_axis else d for a, d in enumerate(spec.shape)]

    def kernel(name, func):
        gvar = tvm.ir.GlobalVar(name)
        _update_type(gvar, func.ty)
        mod[gvar] = func
        return mod.get_global_var(name)

    params = [relax.Var(spec.name, symbolic(spec)) for spec in inputs]

    def branch(bucket, tag):
        bindings, args = [], []
        for spec, param in zip(inputs, params):
            if not spec.dynamic_axes:
                args.append(param)
                continue
            shape = at_bucket(spec, bucket)
            func = with_size_limits(pad_kernel(spec.dtype, shape, spec.dynamic_axes), spec.dynamic_axes, shape, limits)
            pad = kernel(f"pad_{_safe(spec.name)}_{tag}", func)
            padded = relax.Var(f"{_safe(spec.name)}_{tag}", relax.TensorType(shape, spec.dtype))
            bindings.append(relax.VarBinding(padded, relax.call_tir(pad, [param], padded.ty)))
            args.append(padded)
        bucket_main = mod.get_global_var(f"main_{tag}")
        result = relax.Var(f"out_{tag}", mod[bucket_main].ret_ty)
        bindings.append(relax.VarBinding(result, relax.Call(bucket_main, args)))
        values = [result] if len(outputs) == 1 else [relax.TupleGetItem(result, i) for i in range(len(outputs))]
        cut = []
        for index, (spec, value) in enumerate(zip(outputs, values)):
            if not spec.dynamic_axes:
                cut.append(value)
                continue
            shape = at_bucket(spec, bucket)
            func = kernel(f"cut_output{index}_{tag}", cut_kernel(spec.dtype, shape, spec.dynamic_axes))
            var = relax.Var(f"output{index}_{tag}", symbolic(spec))
            bindings.append(relax.VarBinding(var, relax.call_tir(func, [value], var.ty)))
            cut.append(var)
        body = cut[0] if len(cut) == 1 else relax.Tuple(cut)
        return relax.SeqExpr([relax.BindingBlock(bindings)], body)

    def fits(bucket):
        checks = [sizes[BATCH] <= bucket.batch] if bucket.batch is not None else []
        checks += [sizes[SEQUENCE] <= bucket.seq_len] if bucket.seq_len is not None else []
        return tirx.all(*checks) if len(checks) > 1 else checks[0]

    def chain(index):
        bucket, tag = buckets[index]
        if index == len(buckets) - 1:
            return branch(bucket, tag)
        return relax.SeqExpr([], relax.If(fits(bucket), branch(bucket, tag), chain(index + 1)))

    returned = [symbolic(spec) for spec in outputs]
    ret_ty = returned[0] if len(returned) == 1 else relax.TupleType(returned)
    main = relax.Function(params, chain(0), ret_ty).with_attrs({"global_symbol": "main", "num_input": len(params)})
    mod["main"] = main
    return relax.transform.Normalize()(mod)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)
