"""Many static-shape modules into one: every function of a bucket renamed with the bucket's tag.

Each bucket was compiled on its own (the pipeline's import, graph passes, lower and schedule at that
shape), so its kernels and `main` carry the same names as every other bucket's. Renaming them all
(`fused_matmul_add` -> `fused_matmul_add_s64`, `main` -> `main_s64`) lets them live in one IRModule.
The weights need nothing: the Relax VM stores identical constants once however many functions use
them, so buckets share the weights as long as their constants have equal contents (the default
schedule's packed weight panels depend on the weight's N only, never on the sequence length).
"""

from __future__ import annotations


def renamed_functions(mod, suffix: str) -> dict:
    """{new GlobalVar: function} for every function of `mod`, named name + suffix; calls between
    them (call_tir of a kernel, the bucket's main) follow the new names."""
    import tvm
    from tvm import relax
    from tvm.relax.expr import _update_type

    new_vars = {}
    for gvar, func in mod.functions_items():
        new_vars[gvar.name_hint] = tvm.ir.GlobalVar(gvar.name_hint + suffix)
        if isinstance(func, tvm.tirx.PrimFunc):
            _update_type(new_vars[gvar.name_hint], func.ty)

    @relax.expr_functor.mutator
    class _Renamer(relax.PyExprMutator):
        def visit_global_var_(self, op):
            return new_vars.get(op.name_hint, op)

    functions = {}
    for gvar, func in mod.functions_items():
        new_var = new_vars[gvar.name_hint]
        if isinstance(func, relax.Function):
            func = _Renamer(mod).visit_expr(func)
            if func.attrs and "global_symbol" in func.attrs:
                func = func.with_attr("global_symbol", new_var.name_hint)
            _update_type(new_var, func.ty)
        functions[new_var] = func
    return functions


def merged_module(modules: dict[str, object]):
    """One IRModule of every bucket's renamed functions; `modules` maps a suffix to its module."""
    import tvm

    functions = {}
    for suffix, mod in modules.items():
        functions.update(renamed_functions(mod, suffix))
    return tvm.IRModule(functions)


def constant_bytes(modules) -> tuple[int, int]:
    """(bytes of constants summed over the modules, bytes once equal ones are stored once):
    shows that buckets share their weights (equal contents, not just equal shapes)."""
    import hashlib

    import numpy as np
    from tvm import relax
    from tvm.ir.expr import Constant

    total, shared = 0, {}
    for mod in modules:
        own = {}

        def visit(expr, own=own):
            if isinstance(expr, Constant):
                value = expr.value  # a tensor, or a plain number for a scalar constant
                array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
                own[(array.dtype.str, array.shape, hashlib.sha1(array.tobytes()).hexdigest())] = array.nbytes

        for _, func in mod.functions_items():
            if isinstance(func, relax.Function):
                relax.analysis.post_order_visit(func, visit)
        total += sum(own.values())
        shared.update(own)
    return total, sum(shared.values())
