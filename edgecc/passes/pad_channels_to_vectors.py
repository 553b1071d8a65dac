"""Pad channel counts that are not whole vectors, so NHWC kernels vectorise over full vectors.

In NHWC the channel axis is the one every convolution, matmul and elementwise kernel vectorises.
SwiftFormer-XS's 220 channels (and 56, 24) are no multiple of AVX-512's 16 lanes: its last stage
ran on 4-lane vectors at a quarter of the speed. Like oneDNN's blocked layouts (channels padded to
the block), the graph here carries C' = C rounded up to the lanes for such tensors:

- a convolution or constant-weight matmul whose output has C channels gets C' - C zero output
  channels (zero weights, zero bias); one whose input is padded gets zero weights on the padded
  input channels, so padded lanes never reach a real output;
- each padded tensor carries the value its padded lanes hold (0 after a convolution, GELU(0) = 0
  after GELU, ...), computed by evaluating each elementwise op on those values; per-channel
  constants are padded with a value that keeps the result defined (1 for a divisor, else 0), and
  an unpadded operand of the same shape is padded at run time (FuseOps puts that into its kernel);
- an op that mixes channels (a matmul over them, a reduction over the last axis) only reads a
  padded tensor whose padded lanes hold a known finite value it can account for (0 for a sum;
  a mean becomes sum / C); any other op, and the function's outputs, read a slice back to C.

The result is exact: padded lanes only ever meet zero weights, and adding those zeros changes no
real output. Assumes activations are finite (a padded 0 times a real value is 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant
from tvm.relax.expr_functor import PyExprMutator, mutator

from edgecc.passes._bindings import rewrite_relax_functions
from edgecc.passes._layout_chains import static_shape
from edgecc.schedules.common import round_up

# Pad a channel count only if the padded tensors are at most this much larger. 56 -> 64 (1.14)
# pays; 24 -> 32 (1.33) did not: SwiftFormer-XS's stem (3 -> 24 -> 48 channels) then computes a
# third more in both convolutions, and the model ran 3% slower than on 24 channels' three 8-lane
# vectors (side by side on the 2-core AMX Xeon).
MAX_GROWTH = 1.2
_UNARY = {
    "relax.erf": "erf",
    "relax.tanh": np.tanh,
    "relax.exp": np.exp,
    "relax.sqrt": np.sqrt,
    "relax.negative": np.negative,
    "relax.nn.relu": lambda x: np.maximum(x, 0),
    "relax.sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "relax.nn.silu": lambda x: x / (1 + np.exp(-x)),
}
_BINARY = {
    "relax.add": np.add,
    "relax.subtract": np.subtract,
    "relax.multiply": np.multiply,
    "relax.divide": np.divide,
    "relax.maximum": np.maximum,
    "relax.minimum": np.minimum,
}


@dataclass(frozen=True)
class Padded:
    channels: int  # C, the real channels; the tensor's last axis has padded_to
    padded_to: int
    value: float | None  # what the padded lanes hold; None: unknown


def _erf(x):
    import math

    return np.float32(math.erf(float(x)))


def _apply(fn, *values):
    if any(v is None for v in values):
        return None
    with np.errstate(all="ignore"):
        result = _erf(*values) if fn == "erf" else fn(*(np.float32(v) for v in values))
    result = float(np.float32(result))
    return result if np.isfinite(result) else None


def padded_channels(channels: int, lanes: int, max_growth: float = MAX_GROWTH) -> int | None:
    """C' for a channel count worth padding, or None."""
    if lanes <= 1 or channels <= lanes or channels % lanes == 0:
        return None
    padded = round_up(channels, lanes)
    return padded if padded / channels <= max_growth else None


def _pad_axis(array: np.ndarray, axis: int, size: int, value: float = 0.0) -> np.ndarray:
    widths = [(0, 0)] * array.ndim
    widths[axis] = (0, size - array.shape[axis])
    return np.pad(array, widths, constant_values=value)


@mutator
class _ChannelPadder(PyExprMutator):
    def __init__(self, mod, lanes: int):
        super().__init__(mod)
        self.mod_ = mod
        self.lanes = lanes
        self.padded: dict = {}  # new var -> Padded
        self.sliced: dict = {}  # new var -> its slice back to C
        self.rewritten = 0
        self.runtime_pads = 0

    # -- helpers ---------------------------------------------------------------------------------
    def _state(self, expr):
        return self.padded.get(expr) if isinstance(expr, relax.Var) else None

    def _plain(self, expr):
        """`expr` (a new-graph expression) with its real channels only."""
        if isinstance(expr, relax.Tuple):
            return relax.Tuple([self._plain(field) for field in expr.fields])
        state = self._state(expr)
        if state is None:
            return expr
        if expr not in self.sliced:
            rank = len(static_shape(expr))
            self.sliced[expr] = self.builder_.emit(
                relax.op.strided_slice(expr, axes=[rank - 1], begin=[0], end=[state.channels])
            )
        return self.sliced[expr]

    def _args(self, call):
        return [self.visit_expr(arg) for arg in call.args]

    def _plain_call(self, call):
        args = [self._plain(a) if isinstance(a, relax.Expr) else a for a in self._args(call)]
        return relax.Call(call.op, args, call.attrs, call.ty_args), None

    # -- the rewrite of one bound value: (new value, Padded or None) -----------------------------
    def _rewrite(self, value):
        if not (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)):
            if isinstance(value, relax.Var):
                new = self.visit_expr(value)
                return new, self._state(new)
            return self._plain(self.visit_expr(value)), None  # tuples, constants...: real channels only
        name = value.op.name
        try:
            if name == "relax.nn.conv2d":
                return self._conv2d(value)
            if name == "relax.matmul":
                return self._matmul(value)
            if name in _BINARY:
                return self._binary(value)
            if name in _UNARY:
                return self._unary(value)
            if name == "relax.reshape":
                return self._reshape(value)
            if name in ("relax.sum", "relax.mean", "relax.max", "relax.min"):
                return self._reduce(value)
        except _Unsupported:
            pass
        return self._plain_call(value)

    def _conv2d(self, call):
        data, weight = self._args(call)
        attrs = call.attrs
        if not isinstance(weight, Constant) or attrs.data_layout != "NHWC" or attrs.kernel_layout != "HWIO":
            raise _Unsupported
        w = weight.value.numpy()
        kh, kw, per_group, out_c = w.shape
        state = self._state(data)
        groups = int(attrs.groups)
        depthwise = groups > 1 and per_group == 1 and groups == out_c
        if depthwise:
            if state is None:
                raise _Unsupported  # padding the input at run time would cost a copy
            w = _pad_axis(w, 3, state.padded_to)
            groups = state.padded_to
            value = 0.0 if state.value is not None else None
            out = Padded(out_c, state.padded_to, value)
        elif groups == 1:
            if state is not None:
                if state.value is None:
                    data, state = self._plain(data), None
                else:
                    w = _pad_axis(w, 2, state.padded_to)
            target = padded_channels(out_c, self.lanes)
            if target is None and state is None:
                raise _Unsupported
            if target is not None:
                w = _pad_axis(w, 3, target)
            out = Padded(out_c, target, 0.0) if target is not None else None
        else:
            raise _Unsupported
        self.rewritten += 1
        new = relax.op.nn.conv2d(
            data,
            relax.const(np.ascontiguousarray(w)),
            strides=attrs.strides,
            padding=attrs.padding,
            dilation=attrs.dilation,
            groups=groups,
            data_layout=attrs.data_layout,
            kernel_layout=attrs.kernel_layout,
            out_layout=attrs.out_layout,
            out_dtype=attrs.out_dtype,
        )
        return new, out

    def _matmul(self, call):
        data, weight = self._args(call)
        if not isinstance(weight, Constant) or len(weight.value.shape) != 2:
            raise _Unsupported
        w = weight.value.numpy()
        state = self._state(data)
        if state is not None and state.value is None:
            data, state = self._plain(data), None
        if state is not None:
            w = _pad_axis(w, 0, state.padded_to)
        target = padded_channels(w.shape[1], self.lanes)
        if target is None and state is None:
            raise _Unsupported
        out = None
        if target is not None:
            out = Padded(w.shape[1], target, 0.0)
            w = _pad_axis(w, 1, target)
        self.rewritten += 1
        return relax.op.matmul(data, relax.const(np.ascontiguousarray(w)), out_dtype=call.attrs.out_dtype), out

    def _binary(self, call):
        args = self._args(call)
        states = [self._state(a) for a in args]
        if not any(states):
            raise _Unsupported
        channels = {s.channels for s in states if s}
        padded_to = {s.padded_to for s in states if s}
        if len(channels) != 1 or len(padded_to) != 1:
            raise _Unsupported
        channels, padded_to = channels.pop(), padded_to.pop()
        fn = _BINARY[call.op.name]
        operands, values = [], []
        for index, (arg, state) in enumerate(zip(args, states)):
            neutral = 1.0 if (call.op.name == "relax.divide" and index == 1) else 0.0
            shape = static_shape(arg)
            if state is not None:
                operands.append(arg)
                values.append(state.value)
            elif isinstance(arg, Constant) and arg.value.numpy().size == 1:
                operands.append(arg)
                values.append(float(arg.value.numpy().reshape(())))
            elif shape and shape[-1] == channels:  # per-channel: pad it
                if isinstance(arg, Constant):
                    operands.append(relax.const(_pad_axis(arg.value.numpy(), len(shape) - 1, padded_to, neutral)))
                else:
                    rank = len(shape)
                    pad_width = [0, 0] * (rank - 1) + [0, padded_to - channels]
                    operands.append(self.builder_.emit(relax.op.nn.pad(arg, pad_width, pad_value=neutral)))
                    self.runtime_pads += 1
                values.append(neutral)
            elif shape is not None and (not shape or shape[-1] == 1):  # broadcast over channels
                operands.append(arg)
                values.append(self._broadcast_value(arg))
            else:
                raise _Unsupported
        value = _combine(fn, call.op.name, values)
        return relax.Call(call.op, operands, call.attrs, call.ty_args), Padded(channels, padded_to, value)

    def _broadcast_value(self, arg):
        """What a tensor broadcast over channels holds, as far as a padded result is concerned:
        "finite" (any real activation); a single-valued constant is its value."""
        if isinstance(arg, Constant):
            array = arg.value.numpy()
            unique = np.unique(array)
            return float(unique[0]) if unique.size == 1 else _FINITE
        return _FINITE

    def _unary(self, call):
        (data,) = self._args(call)
        state = self._state(data)
        if state is None:
            raise _Unsupported
        return relax.Call(call.op, [data], call.attrs, call.ty_args), Padded(
            state.channels, state.padded_to, _apply(_UNARY[call.op.name], state.value)
        )

    def _reshape(self, call):
        data = self.visit_expr(call.args[0])
        state = self._state(data)
        new_shape = static_shape(call)
        old_shape = static_shape(call.args[0])
        if state is None or not new_shape or new_shape[-1] != state.channels or old_shape[-1] != state.channels:
            raise _Unsupported
        return relax.op.reshape(data, [*new_shape[:-1], state.padded_to]), state

    def _reduce(self, call):
        (data,) = self._args(call)
        state = self._state(data)
        if state is None:
            raise _Unsupported
        rank = len(static_shape(call.args[0]))
        axes = list(range(rank)) if call.attrs.axis is None else [int(a) % rank for a in call.attrs.axis]
        keep = bool(call.attrs.keepdims)
        op = call.op.name
        if rank - 1 not in axes:  # channels kept: a padded result
            count = int(np.prod([static_shape(call.args[0])[a] for a in axes]))
            value = None if state.value is None else (state.value * count if op == "relax.sum" else state.value)
            return relax.Call(call.op, [data], call.attrs, call.ty_args), Padded(state.channels, state.padded_to, value)
        if axes != [rank - 1] or state.value != 0.0 or op not in ("relax.sum", "relax.mean"):
            raise _Unsupported
        total = self.builder_.emit(relax.op.sum(data, axis=[rank - 1], keepdims=keep))
        if op == "relax.sum":
            return total, None
        return relax.op.divide(total, relax.const(np.float32(state.channels))), None

    # -- bindings ----------------------------------------------------------------------------------
    def visit_var_binding_(self, binding):
        new_value, state = self._rewrite(binding.value)
        is_output = not isinstance(binding.var, relax.DataflowVar)
        if is_output and state is not None:  # the function returns real channels only
            var = new_value if isinstance(new_value, relax.Var) else self.builder_.emit(new_value)
            self.padded[var] = state
            new_value, state = self._plain(var), None
        emit = self.builder_.emit_output if is_output else self.builder_.emit
        new_var = emit(new_value, name_hint=binding.var.name)
        if state is not None and state.padded_to is not None:
            self.padded[new_var] = state
        self.set_var_remap(binding.var, new_var)

    def transform(self):
        return rewrite_relax_functions(self)


class _Unsupported(Exception):
    """This op cannot take padded operands as they are: it reads real channels."""


_FINITE = "finite"


def _combine(fn, name: str, values: list):
    """The padded lanes' value after a binary op, given each operand's: a number, None (unknown) or
    "finite" (a real activation broadcast over the channels)."""
    if any(v is None for v in values):
        return None
    if any(v == _FINITE for v in values):
        others = [v for v in values if v != _FINITE]
        # 0 times (or divided by a nonzero) real value is 0; anything else varies per row
        if name == "relax.multiply" and others == [0.0]:
            return 0.0
        if name == "relax.divide" and values[0] == 0.0 and values[1] == _FINITE:
            return 0.0  # the divisor is a real activation, assumed nonzero where the model divides by it
        return None
    return _apply(fn, *values)


@dataclass(frozen=True)
class PadChannelsStats:
    ops_padded: int = 0  # convolutions and matmuls given zero channels
    slices: int = 0  # reads back to the real channels
    runtime_pads: int = 0  # unpadded operands padded at run time


@tvm.transform.module_pass(opt_level=0, name="pad_channels_to_vectors")
class PadChannelsToVectors:
    """Channel counts that are no whole number of vectors padded with zero channels (module docstring)."""

    def __init__(self, lanes: int = 16):
        self.lanes = lanes
        self.stats = PadChannelsStats()

    @property
    def description(self) -> str:
        return f"to multiples of {self.lanes} lanes"

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        from edgecc.passes.convert_convs_to_nhwc import count_convs

        if not count_convs(mod, "NHWC"):  # channels are the vector axis only in NHWC graphs
            self.stats = PadChannelsStats()
            return mod
        padder = _ChannelPadder(mod, self.lanes)
        result = padder.transform()
        self.stats = PadChannelsStats(padder.rewritten, len(padder.sliced), padder.runtime_pads)
        if not padder.rewritten:
            return mod
        return relax.transform.DeadCodeElimination()(relax.transform.FoldConstant()(result))
