"""Replace dense attention subgraphs by a kernel that computes only the kept key blocks.

Pattern (what the ONNX importer makes of a transformers self-attention):
    scores = matmul(Q [.., S, D], Kt [.., D, S]);  scores = add(scores, mask_bias)   (add optional)
    probs  = softmax(scores, axis=-1);  probs = where(isnan(probs), 0, probs)          (where optional)
    out    = matmul(probs, V [.., S, D])

Replacement (block-sparse with global tokens): queries are split into blocks of `block` tokens; a
query attends to the keys of its own block and `neighbours` blocks on each side, plus the first
`global_tokens` tokens; those global tokens attend to every key. Scores, softmax and the weighted
sum run over G + (2N + 1) * block keys instead of S, so attention FLOPs drop by about
S / (G + (2N + 1) * block). Keys that fall outside the sequence or duplicate a global token are
masked out. The model's own mask bias still applies to every kept key.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import relax, te, tirx, topi
from tvm.relax.expr_functor import PyExprMutator, mutator

from ._layout_chains import is_op as _is
from ._layout_chains import static_shape as _shape

_MASKED = -1e30


@dataclass(frozen=True)
class SparsePattern:
    block: int
    neighbours: int = 1
    global_tokens: int = 0

    @property
    def keys_per_query(self) -> int:
        return self.global_tokens + (2 * self.neighbours + 1) * self.block

    def attention_flops(self, batch_heads: int, seq: int, head_dim: int) -> dict:
        """Multiply-adds x2 of the two attention matmuls, dense vs this pattern."""
        dense = 4 * batch_heads * seq * seq * head_dim
        kept = min(self.keys_per_query, seq)
        sparse = 4 * batch_heads * (seq * kept + self.global_tokens * seq) * head_dim
        return {"dense": dense, "sparse": sparse}




def sparse_attention_te(q, kt, bias, v, pattern: SparsePattern):
    *_, seq, head_dim = q.shape
    seq, head_dim = int(seq), int(head_dim)
    block, reach, globals_ = pattern.block, pattern.neighbours * pattern.block, pattern.global_tokens
    kept = pattern.keys_per_query

    def key_index(i, slot):
        local = (i // block) * block - reach + (slot - globals_)
        return tirx.if_then_else(slot < globals_, slot, local) if globals_ else local

    def clamp(index):
        return tirx.max(0, tirx.min(seq - 1, index))

    def bias_at(b, h, i, k):
        if bias is None:
            return tirx.const(0.0, "float32")
        dims = [int(d) for d in bias.shape]
        lead = [b, h][-(len(dims) - 2):] if len(dims) > 2 else []
        lead = [0 if dims[n] == 1 else idx for n, idx in enumerate(lead)]
        return bias[(*lead, 0 if dims[-2] == 1 else i, k)]

    # Keys row-major ([.., S, D]) once, so each gathered key is read contiguously.
    keys = te.compute((*q.shape[:-2], seq, head_dim), lambda b, h, k, e: kt[b, h, e, k], name="keys")
    d = te.reduce_axis((0, head_dim), "d")
    scores = te.compute((*q.shape[:-1], kept), lambda b, h, i, s: te.sum(
        q[b, h, i, d] * keys[b, h, clamp(key_index(i, s)), d], axis=d), name="sparse_scores")

    def masked(b, h, i, s):
        k = key_index(i, s)
        valid = tirx.all(k >= 0, k < seq, tirx.Or(s < globals_, k >= globals_)) if globals_ else \
            tirx.all(k >= 0, k < seq)
        return tirx.if_then_else(valid, scores[b, h, i, s] + bias_at(b, h, i, clamp(k)), _MASKED)

    logits = te.compute(scores.shape, masked, name="sparse_logits")
    probs = _guarded(topi.nn.softmax(logits, axis=-1))
    s_axis = te.reduce_axis((0, kept), "s")
    local = te.compute(q.shape, lambda b, h, i, e: te.sum(
        probs[b, h, i, s_axis] * v[b, h, clamp(key_index(i, s_axis)), e], axis=s_axis), name="sparse_out")
    if not globals_:
        return local
    # Global queries see every key: a small dense attention over their G rows.
    d2 = te.reduce_axis((0, head_dim), "d2")
    g_scores = te.compute((*q.shape[:-2], globals_, seq), lambda b, h, g, k: te.sum(
        q[b, h, g, d2] * keys[b, h, k, d2], axis=d2), name="global_scores")
    g_logits = te.compute(g_scores.shape, lambda b, h, g, k: g_scores[b, h, g, k] + bias_at(b, h, g, k),
                          name="global_logits")
    g_probs = _guarded(topi.nn.softmax(g_logits, axis=-1))
    k_axis = te.reduce_axis((0, seq), "k")
    g_out = te.compute((*q.shape[:-2], globals_, head_dim), lambda b, h, g, e: te.sum(
        g_probs[b, h, g, k_axis] * v[b, h, k_axis, e], axis=k_axis), name="global_out")
    return te.compute(q.shape, lambda b, h, i, e: tirx.if_then_else(
        i < globals_, g_out[b, h, tirx.min(i, globals_ - 1), e], local[b, h, i, e]), name="attention_out")


def _guarded(probs):
    """0 instead of NaN for a row whose every kept key is masked with -inf (torch's where(isnan))."""
    return te.compute(probs.shape, lambda *i: tirx.if_then_else(tirx.isnan(probs(*i)), tirx.const(0.0, "float32"),
                                                                probs(*i)), name="guarded_probs")


@mutator
class _AttentionSparsifier(PyExprMutator):
    def __init__(self, mod, pattern: SparsePattern):
        super().__init__(mod)
        self.mod_ = mod
        self.pattern = pattern
        self.rewritten: list[dict] = []  # attention FLOPs, dense and sparse, per rewritten attention
        self.shared: dict = {}  # what every rewritten attention of the model can reuse (see _blocked_attention)

    def producer(self, expr):
        if isinstance(expr, relax.Var):
            bound = self.lookup_binding(expr)
            return bound if bound is not None else expr
        return expr

    def match(self, call):
        """(Q, Kt, bias or None, V) when `call` is the output matmul of an attention, else None."""
        if not _is(call, "relax.matmul"):
            return None
        probs, v = call.args
        probs = self.producer(probs)
        if _is(probs, "relax.where"):
            condition = self.producer(probs.args[0])
            if not _is(condition, "relax.isnan"):
                return None
            probs = self.producer(probs.args[2])
        if not _is(probs, "relax.nn.softmax") or int(probs.attrs.axis) not in (-1, 3):
            return None
        scores, bias = self.producer(probs.args[0]), None
        if _is(scores, "relax.add"):
            bias = scores.args[1]
            scores = self.producer(scores.args[0])
        if not _is(scores, "relax.matmul"):
            return None
        q, kt = scores.args
        shapes = [_shape(x) for x in (q, kt, v)]
        if any(s is None or len(s) != 4 for s in shapes) or any(x.ty.dtype != "float32" for x in (q, kt, v)):
            return None
        (b, h, seq, dim), kt_shape, v_shape = shapes
        if kt_shape != [b, h, dim, seq] or v_shape != [b, h, seq, dim]:
            return None
        if bias is not None and (_shape(bias) is None or len(_shape(bias)) not in (2, 3, 4)):
            return None
        return q, kt, bias, v, seq

    def visit_call_(self, call):
        call = super().visit_call_(call)
        found = self.match(call)
        if found is None:
            return call
        q, kt, bias, v, seq = found
        if self.pattern.keys_per_query >= seq:
            return call  # the pattern keeps every key: nothing to save
        self.rewritten.append(self.pattern.attention_flops(int(np_prod(_shape(q)[:2])), seq, _shape(q)[3]))
        from ._blocked_attention import can_block, emit_blocked_attention

        if can_block(seq, self.pattern, _shape(bias) if bias is not None else None):
            return emit_blocked_attention(self.builder_, q, kt, bias, v, _shape(q), self.pattern, self.shared)
        if bias is None:
            return self.builder_.call_te(lambda q_, k_, v_: sparse_attention_te(q_, k_, None, v_, self.pattern),
                                         q, kt, v, primfunc_name_hint="sparse_attention")
        return self.builder_.call_te(lambda q_, k_, b_, v_: sparse_attention_te(q_, k_, b_, v_, self.pattern),
                                     q, kt, bias, v, primfunc_name_hint="sparse_attention")

    def transform(self):
        for gv, func in self.mod_.functions_items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gv, self.visit_expr(func))
        return self.builder_.get()


def np_prod(values) -> int:
    total = 1
    for v in values:
        total *= int(v)
    return total


def rewrite_attention_sparse(mod: tvm.IRModule, pattern: SparsePattern, summary: dict | None = None) -> tvm.IRModule:
    """Rewrite every matching attention; `summary` (if given) receives counts and attention FLOPs."""
    sparsifier = _AttentionSparsifier(mod, pattern)
    result = relax.transform.DeadCodeElimination()(sparsifier.transform())
    if summary is not None:
        summary.update({"pattern": {"block": pattern.block, "neighbours": pattern.neighbours,
                                    "global_tokens": pattern.global_tokens},
                        "keys_per_query": pattern.keys_per_query,
                        "attentions_rewritten": len(sparsifier.rewritten),
                        "attention_flops_dense": sum(f["dense"] for f in sparsifier.rewritten),
                        "attention_flops_sparse": sum(f["sparse"] for f in sparsifier.rewritten)})
    return result


def count_attentions(mod: tvm.IRModule) -> int:
    """How many attention subgraphs the rewrite would recognise (whatever their length)."""
    sparsifier = _AttentionSparsifier(mod, SparsePattern(block=1 << 30))
    count = [0]
    original = sparsifier.match

    def counting(call):
        found = original(call)
        count[0] += found is not None
        return found

    sparsifier.match = counting
    sparsifier.transform()
    return count[0]
