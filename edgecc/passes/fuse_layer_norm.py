"""Recognise a LayerNorm written out op by op and replace it with `R.nn.layer_norm`.

Older ONNX opsets (and exporters other than torch's opset >= 17) spell LayerNorm as
    mean = ReduceMean(x, axes, keepdims=1);  d = Sub(x, mean)
    var  = ReduceMean(Pow(d, 2) or Mul(d, d), axes, keepdims=1)
    y    = Div(d, Sqrt(Add(var, eps)))   or   Mul(d, Rsqrt(Add(var, eps)))   or   Mul(d, 1 / Sqrt(...))
    y    = Add(Mul(y, gamma), beta)      (gamma and beta optional)
which legalizes to ~8 kernels and as many passes over the activations; `R.nn.layer_norm` is one
kernel (one row-parallel loop under the default CPU schedules). A module whose LayerNorms are
already `R.nn.layer_norm` is returned unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from edgecc.passes._bindings import binding_map, replace_bindings, users_map
from edgecc.passes._layout_chains import dtype, is_op, scalar_constant, static_shape


class _Matcher:
    def __init__(self, func):
        self.values = binding_map(func)
        self.users = users_map(func)

    def bound(self, expr):
        value = self.values.get(expr) if isinstance(expr, relax.Var) else None
        return value if value is not None else expr

    def single_consumer(self, var):
        users = self.users.get(var, [])
        if len(users) == 1 and users[0] is not None:
            return users[0], self.values[users[0]]
        return None, None

    def normalized(self, value):
        """(x, axes, eps) when `value` is (x - mean(x)) / sqrt(mean((x - mean)^2) + eps), else None."""
        if is_op(value, "relax.divide"):
            d, denominator = value.args
            root = self.bound(denominator)
            if not is_op(root, "relax.sqrt"):
                return None
        elif is_op(value, "relax.multiply"):
            for d, other in (value.args, value.args[::-1]):  # noqa: B007 - d, the shifted input, is read after the loop
                other = self.bound(other)
                if is_op(other, "relax.rsqrt"):
                    root = other
                    break
                if (
                    is_op(other, "relax.divide")
                    and scalar_constant(other.args[0]) == 1.0
                    and is_op(self.bound(other.args[1]), "relax.sqrt")
                ):
                    root = self.bound(other.args[1])
                    break
            else:
                return None
        else:
            return None
        shifted = self.bound(d)
        variance_eps = self.bound(root.args[0])
        if not is_op(variance_eps, "relax.add"):
            return None
        variance, eps = variance_eps.args
        if scalar_constant(eps) is None:
            variance, eps = eps, variance
        if scalar_constant(eps) is None:
            return None
        variance = self.bound(variance)
        if not is_op(shifted, "relax.subtract") or not self._is_mean(variance):
            return None
        x, mean = shifted.args
        mean = self.bound(mean)
        if not self._is_mean(mean) or not mean.args[0].same_as(x):
            return None
        axes = self._axes(mean)
        if axes is None or self._axes(variance) != axes:
            return None
        square = self.bound(variance.args[0])
        if is_op(square, "relax.power"):
            if scalar_constant(square.args[1]) != 2.0 or not square.args[0].same_as(d):
                return None
        elif is_op(square, "relax.multiply"):
            if not (square.args[0].same_as(d) and square.args[1].same_as(d)):
                return None
        else:
            return None
        return x, axes, scalar_constant(eps)

    @staticmethod
    def _is_mean(value) -> bool:
        return is_op(value, "relax.mean") and bool(value.attrs.keepdims)

    @staticmethod
    def _axes(mean) -> list[int] | None:
        shape = static_shape(mean.args[0])
        if shape is None or mean.attrs.axis is None:
            return None
        axes = sorted(int(a) % len(shape) for a in mean.attrs.axis)
        # layer_norm normalises trailing axes
        return axes if axes == list(range(len(shape) - len(axes), len(shape))) else None

    def affine(self, var, kind: str, norm_shape: list[int], out_shape: list[int]):
        """(consumer var, parameter) when `var`'s only consumer multiplies (kind) / adds it by a
        parameter that broadcasts over the normalised axes alone."""
        consumer_var, consumer = self.single_consumer(var)
        if consumer is None or not is_op(consumer, f"relax.{kind}"):
            return None, None
        a, b = consumer.args
        param = b if a.same_as(var) else a if b.same_as(var) else None
        if param is None or dtype(param) != "float32" or static_shape(consumer) != out_shape:
            return None, None
        shape = static_shape(param)
        if shape is None:
            return None, None
        while shape and shape[0] == 1 and len(shape) > len(norm_shape):
            shape = shape[1:]
        if shape != norm_shape:
            return None, None
        return consumer_var, param

    def plans(self) -> dict:
        found = {}
        for var, value in self.values.items():
            matched = self.normalized(value)
            if matched is None:
                continue
            x, axes, eps = matched
            shape = static_shape(x)
            if shape is None or dtype(x) != "float32" or static_shape(value) != shape:
                continue
            norm_shape = [shape[a] for a in axes]
            root, gamma, beta = var, None, None
            scaled_var, gamma = self.affine(root, "multiply", norm_shape, shape)
            if gamma is not None:
                root = scaled_var
            shifted_var, beta = self.affine(root, "add", norm_shape, shape)
            if beta is not None:
                root = shifted_var
            found[root] = (x, gamma, beta, axes, eps, norm_shape)
        return found


def _parameter(mutator, expr, norm_shape, fill: float):
    if expr is None:
        return relax.const(np.full(norm_shape, fill, dtype="float32"))
    expr = mutator.visit_expr(expr)
    if static_shape(expr) != norm_shape:
        expr = mutator.builder_.emit(relax.op.reshape(expr, norm_shape))
    return expr


@dataclass(frozen=True)
class FuseLayerNormStats:
    layer_norms_fused: int = 0


@tvm.transform.module_pass(opt_level=0, name="fuse_layer_norm")
class FuseLayerNorm:
    """Every decomposed LayerNorm (with or without gamma / beta) becomes one `R.nn.layer_norm`."""

    def __init__(self):
        self.stats = FuseLayerNormStats()

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        fused = [0]

        def make(x, gamma, beta, axes, eps, norm_shape):
            def build(mutator):
                return relax.op.nn.layer_norm(
                    mutator.visit_expr(x),
                    _parameter(mutator, gamma, norm_shape, 1.0),
                    _parameter(mutator, beta, norm_shape, 0.0),
                    axes=axes,
                    epsilon=eps,
                )

            return build

        def find(func):
            plans = _Matcher(func).plans()
            fused[0] += len(plans)
            return {var: make(*plan) for var, plan in plans.items()}

        result = replace_bindings(mod, find)
        self.stats = FuseLayerNormStats(fused[0])
        return result
