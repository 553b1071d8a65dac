"""Shared by the fusion passes: use-def facts about a Relax function and a binding-replacing mutator."""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator


def binding_map(func: relax.Function) -> dict:
    """{var: bound value} of every binding in `func`."""
    return dict(relax.analysis.get_var2val(func).items())


def users_map(func: relax.Function) -> dict:
    """{var: [vars whose bound value reads it]}; a var the function returns also gets None."""
    users: dict = {}
    for var, value in binding_map(func).items():
        seen = []

        def note(expr, seen=seen):
            if isinstance(expr, relax.Var) and not any(expr.same_as(s) for s in seen):
                seen.append(expr)

        relax.analysis.post_order_visit(value, note)
        for used in seen:
            users.setdefault(used, []).append(var)

    def returned(expr):
        if isinstance(expr, relax.Var):
            users.setdefault(expr, []).append(None)

    relax.analysis.post_order_visit(func.body.body, returned)
    return users


@mutator
class _BindingReplacer(PyExprMutator):
    def __init__(self, mod):
        super().__init__(mod)
        self.mod_ = mod
        self.replacements: dict = {}

    def visit_var_binding_(self, binding):
        make = self.replacements.get(binding.var)
        if make is None:
            return super().visit_var_binding_(binding)
        value = self.builder_.normalize(make(self))
        self.builder_.emit_normalized(relax.VarBinding(binding.var, value))

    def run(self, find) -> int:
        count = 0
        for gv, func in self.mod_.functions_items():
            if isinstance(func, relax.Function):
                self.replacements = find(func)
                if self.replacements:
                    count += len(self.replacements)
                    self.builder_.update_func(gv, self.visit_expr(func))
        return count


def replace_bindings(mod: tvm.IRModule, find) -> tvm.IRModule:
    """`find(func)` -> {var: make}; each such binding's value becomes `make(mutator)`, an expression
    over the new function (map an original expression with `mutator.visit_expr`; add PrimFuncs with
    `mutator.builder_.add_func`). The var keeps its name and type; unused bindings are then removed."""
    replacer = _BindingReplacer(mod)
    if not replacer.run(find):
        return mod
    return relax.transform.DeadCodeElimination()(replacer.builder_.get())


def rewrite_relax_functions(mutator):
    """The module with every Relax function of `mutator.mod_` visited by `mutator` (a PyExprMutator
    built on that module): how a graph pass's mutator rewrites a whole module."""
    for gv, func in mutator.mod_.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return mutator.builder_.get()
