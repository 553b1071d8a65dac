"""The one attention pattern: softmax(Q K^T * scale + bias) V, found once for every pass that needs it.

What the ONNX importer makes of a transformers self-attention:
    scores = matmul(Q, Kt)                        Q [.., S, D], Kt [.., D, T]
    logits = scores (* or / scalar)* (+ bias)     bias broadcastable to [.., S, T]; any order
    probs  = softmax(logits, axis=-1);  probs = where(isnan(probs), 0, probs)   (where optional)
    out    = matmul(probs, V)                     V [.., T, Dv]
`AttentionMatcher` finds each one in a Relax function and returns an `AttentionPlan`: the three
operands as bound (`q_expr`, `kt_expr`, `v_expr`), the same followed back through reshape /
permute_dims / scalar multiply to the projections' outputs (`q`, `kt`, `v` chains), the bias and
the order of the scalings. `fuse_attention` reads the chains (its kernel reads the projections
directly); `rewrite_attention_sparse` reads the bound operands (it rewrites [b, h, S, D] blocks).
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import relax

from edgecc.passes._bindings import binding_map, users_map
from edgecc.passes._layout_chains import Chain, dtype, is_op, scalar_constant, static_shape, strip_chain


@dataclass
class AttentionPlan:
    q: Chain
    kt: Chain
    v: Chain
    bias: relax.Expr | None
    logit_steps: list  # [("multiply" | "divide", c) or ("bias",)] applied to the scores, in order
    nan_to_zero: bool
    out_axes: list | None  # permutation of the [.., S, Dv] result absorbed from its consumer
    batch: list  # leading dims
    seq: int
    keys: int
    dim: int
    value_dim: int
    q_expr: relax.Expr = None  # the matmul operands as bound, before the chains are stripped
    kt_expr: relax.Expr = None
    v_expr: relax.Expr = None


class AttentionMatcher:
    def __init__(self, func):
        self.values = binding_map(func)
        self.users = users_map(func)

    def producer(self, expr):
        return self.values.get(expr) if isinstance(expr, relax.Var) else None

    def bound(self, expr):
        value = self.producer(expr)
        return value if value is not None else expr

    def match(self, call) -> AttentionPlan | None:
        """The plan when `call` is the output matmul of a dense float32 attention, else None."""
        if not is_op(call, "relax.matmul") or len(call.args) != 2:
            return None
        probs_expr, v_expr = call.args
        probs = self.bound(probs_expr)
        nan_to_zero = False
        if is_op(probs, "relax.where"):
            condition = self.bound(probs.args[0])
            if not is_op(condition, "relax.isnan") or scalar_constant(probs.args[1]) != 0.0:
                return None
            if not probs.args[2].same_as(condition.args[0]):
                return None
            nan_to_zero, probs = True, self.bound(probs.args[2])
        if not is_op(probs, "relax.nn.softmax"):
            return None
        shape = static_shape(probs)
        if shape is None or int(probs.attrs.axis) not in (-1, len(shape) - 1):
            return None
        logits, bias, walked = self.bound(probs.args[0]), None, []  # steps, softmax side first
        while not is_op(logits, "relax.matmul"):
            if is_op(logits, "relax.multiply", "relax.divide"):
                name = logits.op.name.split(".")[-1]
                a, b = logits.args
                if scalar_constant(b) is not None:
                    walked.append((name, scalar_constant(b)))
                    logits = self.bound(a)
                elif name == "multiply" and scalar_constant(a) is not None:
                    walked.append((name, scalar_constant(a)))
                    logits = self.bound(b)
                else:
                    return None
                continue
            if is_op(logits, "relax.add") and bias is None:
                a, b = logits.args
                # the scores are the operand that leads to the matmul through scalings alone
                if self._leads_to_matmul(a) and static_shape(a) == shape:
                    bias, logits = b, self.bound(a)
                elif self._leads_to_matmul(b) and static_shape(b) == shape:
                    bias, logits = a, self.bound(b)
                else:
                    return None
                walked.append(("bias",))
                continue
            return None
        if len(logits.args) != 2 or dtype(logits) != "float32":
            return None
        q_expr, kt_expr = logits.args
        shapes = [static_shape(x) for x in (q_expr, kt_expr, v_expr, call)]
        if any(s is None or len(s) < 3 for s in shapes) or len({len(s) for s in shapes}) != 1:
            return None
        if any(dtype(x) != "float32" for x in (q_expr, kt_expr, v_expr, call, probs)):
            return None
        q_shape, kt_shape, v_shape, out_shape = shapes
        batch, (seq, dim) = q_shape[:-2], q_shape[-2:]
        keys, value_dim = kt_shape[-1], v_shape[-1]
        if (
            kt_shape != [*batch, dim, keys]
            or v_shape != [*batch, keys, value_dim]
            or out_shape != [*batch, seq, value_dim]
            or shape != [*batch, seq, keys]
        ):
            return None
        if bias is not None:
            bias_shape = static_shape(bias)
            if (
                bias_shape is None
                or dtype(bias) != "float32"
                or len(bias_shape) > len(shape)
                or any(b not in (1, s) for b, s in zip(reversed(bias_shape), reversed(shape)))
            ):
                return None
        chain = dict(producer=self.producer, allow_take=True)
        return AttentionPlan(
            q=strip_chain(q_expr, **chain),
            kt=strip_chain(kt_expr, **chain),
            v=strip_chain(v_expr, **chain),
            bias=bias,
            logit_steps=walked[::-1],
            nan_to_zero=nan_to_zero,
            out_axes=None,
            batch=batch,
            seq=seq,
            keys=keys,
            dim=dim,
            value_dim=value_dim,
            q_expr=q_expr,
            kt_expr=kt_expr,
            v_expr=v_expr,
        )

    def _leads_to_matmul(self, expr) -> bool:
        value = self.bound(expr)
        while is_op(value, "relax.multiply", "relax.divide"):
            a, b = value.args
            if scalar_constant(b) is not None:
                value = self.bound(a)
            elif scalar_constant(a) is not None and value.op.name == "relax.multiply":
                value = self.bound(b)
            else:
                return False
        return is_op(value, "relax.matmul")

    def plans(self, absorb_head_merge: bool = True) -> dict:
        """{var whose binding a rewrite replaces: plan}. With `absorb_head_merge`, a single
        permute_dims consuming the output (the head merge) is part of the match and its var is the key."""
        found = {}
        for var, value in self.values.items():
            plan = self.match(value)
            if plan is None:
                continue
            root = var
            consumers = self.users.get(var, [])
            if absorb_head_merge and len(consumers) == 1 and consumers[0] is not None:
                consumer = self.values[consumers[0]]
                rank = len(plan.batch) + 2
                if (
                    is_op(consumer, "relax.permute_dims")
                    and consumer.attrs.axes is not None
                    and dtype(consumer) == "float32"
                ):
                    plan.out_axes = [int(a) % rank for a in consumer.attrs.axes]
                    root = consumers[0]
            found[root] = plan
        return found


def count_attentions(mod) -> int:
    """How many attention subgraphs the module holds (what fusion or sparsity would rewrite)."""
    return sum(
        len(AttentionMatcher(func).plans(absorb_head_merge=False))
        for _, func in mod.functions_items()
        if isinstance(func, relax.Function)
    )
