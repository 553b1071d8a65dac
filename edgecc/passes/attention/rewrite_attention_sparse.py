"""Replace dense attention subgraphs by attention over the kept key blocks only.

The pattern is `pattern.AttentionMatcher`'s, taken where it is a plain [b, h, S, D] self-attention
(scores straight into softmax, or through one additive mask bias). Queries are split into blocks
of `block` tokens; a query attends to the keys of its own block and `neighbours` blocks on each
side, plus the first `global_tokens` tokens; those global tokens attend to every key. Scores,
softmax and the weighted sum run over G + (2N + 1) * block keys instead of S, so attention FLOPs
drop by about S / (G + (2N + 1) * block). Keys that fall outside the sequence or duplicate a
global token are masked out. The model's own mask bias still applies to every kept key.

Where blocks tile the sequence this emits plain attentions over blocks (`blocked.py`), which
`fuse_attention` then fuses; otherwise one gathering TE kernel (`sparse_attention_te`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm
from tvm import te, tirx, topi

from edgecc.passes._bindings import replace_bindings
from edgecc.passes._layout_chains import static_shape
from edgecc.passes.attention.blocked import can_block, emit_blocked_attention
from edgecc.passes.attention.pattern import AttentionMatcher, AttentionPlan
from edgecc.passes.attention.sparse_pattern import MASKED as _MASKED
from edgecc.passes.attention.sparse_pattern import SparsePattern


@dataclass(frozen=True)
class SparseAttentionStats:
    pattern: dict = field(default_factory=dict)
    keys_per_query: int = 0
    attentions_rewritten: int = 0
    attentions_kept_dense: int = 0  # matched, but the pattern keeps every key or the form differs
    attention_flops_dense: int = 0
    attention_flops_sparse: int = 0
    kept_dense_sequence_lengths: tuple = ()  # of those kept dense because the pattern reaches every key

    def explain(self, log, refuse: bool = True) -> None:
        """Say what did not become sparse; refuse a sparse compile in which nothing did (it would be a
        dense compile reported as sparse). refuse=False: a smaller sequence bucket, which may
        legitimately keep every key while the largest one (checked with refuse=True) is sparse."""
        from edgecc.errors import EdgeccError

        reach = self.kept_dense_sequence_lengths
        why = (
            f"the pattern keeps {self.keys_per_query} keys per query, and the sequence is only "
            f"{max(reach)} tokens long: every key is kept (use a smaller window, or no --sparse-attention)"
            if reach
            else "its form is not a plain [batch, heads, seq, dim] self-attention"
        )
        if self.attentions_rewritten == 0 and refuse:
            if self.attentions_kept_dense == 0:
                raise EdgeccError("--sparse-attention found no attention to rewrite in this model")
            raise EdgeccError(
                f"--sparse-attention rewrote none of the model's {self.attentions_kept_dense} attention(s): {why}"
            )
        if self.attentions_kept_dense:
            log(f"      sparse attention: {self.attentions_kept_dense} attention(s) kept dense: {why}")


@tvm.transform.module_pass(opt_level=0, name="rewrite_attention_sparse")
class RewriteAttentionSparse:
    """Every plain self-attention longer than the pattern's reach attends to the kept keys only."""

    def __init__(self, pattern: SparsePattern):
        self.pattern = pattern
        self.stats = SparseAttentionStats()

    @property
    def description(self) -> str:
        p = self.pattern
        return f"block={p.block}, neighbours={p.neighbours}, global={p.global_tokens}"

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        pattern, shared, flops, kept_dense, short = self.pattern, {}, [], [0], []

        def make(plan: AttentionPlan):
            q, kt, v = plan.q_expr, plan.kt_expr, plan.v_expr
            b, h, seq, dim = static_shape(q)
            flops.append(pattern.attention_flops(b * h, seq, dim))

            def build(mutator):
                q_, kt_, v_ = (mutator.visit_expr(x) for x in (q, kt, v))
                bias = mutator.visit_expr(plan.bias) if plan.bias is not None else None
                bb = mutator.builder_
                if can_block(seq, pattern, static_shape(bias) if bias is not None else None):
                    return emit_blocked_attention(bb, q_, kt_, bias, v_, [b, h, seq, dim], pattern, shared)
                if bias is None:
                    return bb.call_te(
                        lambda a, k, c: sparse_attention_te(a, k, None, c, pattern),
                        q_,
                        kt_,
                        v_,
                        primfunc_name_hint="sparse_attention",
                    )
                return bb.call_te(
                    lambda a, k, m, c: sparse_attention_te(a, k, m, c, pattern),
                    q_,
                    kt_,
                    bias,
                    v_,
                    primfunc_name_hint="sparse_attention",
                )

            return build

        def find(func):
            found = {}
            for var, plan in AttentionMatcher(func).plans(absorb_head_merge=False).items():
                if _rewritable(plan, pattern):
                    found[var] = make(plan)
                else:
                    kept_dense[0] += 1
                    seq = _sequence_if_only_too_short(plan, pattern)
                    if seq is not None:
                        short.append(seq)
            return found

        result = replace_bindings(mod, find)
        self.stats = SparseAttentionStats(
            pattern={"block": pattern.block, "neighbours": pattern.neighbours, "global_tokens": pattern.global_tokens},
            keys_per_query=pattern.keys_per_query,
            attentions_rewritten=len(flops),
            attentions_kept_dense=kept_dense[0],
            kept_dense_sequence_lengths=tuple(short),
            attention_flops_dense=sum(f["dense"] for f in flops),
            attention_flops_sparse=sum(f["sparse"] for f in flops),
        )
        return result


def _sequence_if_only_too_short(plan: AttentionPlan, pattern: SparsePattern) -> int | None:
    """The sequence length of an attention that is rewritable in form but shorter than the pattern's reach."""
    shape = static_shape(plan.q_expr)
    if shape is None or len(shape) != 4 or pattern.keys_per_query < shape[2]:
        return None
    narrowest = SparsePattern(block=1, neighbours=0, global_tokens=0)  # keeps 1 key: rewritable whenever the form is
    return shape[2] if _rewritable(plan, narrowest) else None


def _rewritable(plan: AttentionPlan, pattern: SparsePattern) -> bool:
    """A [b, h, S, D] self-attention whose scores reach the softmax unscaled (or through the mask
    bias alone), longer than the pattern's reach."""
    shapes = [static_shape(x) for x in (plan.q_expr, plan.kt_expr, plan.v_expr)]
    if any(s is None or len(s) != 4 for s in shapes):
        return False
    (b, h, seq, dim), kt_shape, v_shape = shapes
    if kt_shape != [b, h, dim, seq] or v_shape != [b, h, seq, dim]:
        return False
    if plan.logit_steps not in ([], [("bias",)]):
        return False
    if plan.bias is not None and len(static_shape(plan.bias) or []) not in (2, 3, 4):
        return False
    return pattern.keys_per_query < seq


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
        lead = [b, h][-(len(dims) - 2) :] if len(dims) > 2 else []
        lead = [0 if dims[n] == 1 else idx for n, idx in enumerate(lead)]
        return bias[(*lead, 0 if dims[-2] == 1 else i, k)]

    # Keys row-major ([.., S, D]) once, so each gathered key is read contiguously.
    keys = te.compute((*q.shape[:-2], seq, head_dim), lambda b, h, k, e: kt[b, h, e, k], name="keys")
    d = te.reduce_axis((0, head_dim), "d")
    scores = te.compute(
        (*q.shape[:-1], kept),
        lambda b, h, i, s: te.sum(q[b, h, i, d] * keys[b, h, clamp(key_index(i, s)), d], axis=d),
        name="sparse_scores",
    )

    def masked(b, h, i, s):
        k = key_index(i, s)
        valid = (
            tirx.all(k >= 0, k < seq, tirx.Or(s < globals_, k >= globals_)) if globals_ else tirx.all(k >= 0, k < seq)
        )
        return tirx.if_then_else(valid, scores[b, h, i, s] + bias_at(b, h, i, clamp(k)), _MASKED)

    logits = te.compute(scores.shape, masked, name="sparse_logits")
    probs = _guarded(topi.nn.softmax(logits, axis=-1))
    s_axis = te.reduce_axis((0, kept), "s")
    local = te.compute(
        q.shape,
        lambda b, h, i, e: te.sum(probs[b, h, i, s_axis] * v[b, h, clamp(key_index(i, s_axis)), e], axis=s_axis),
        name="sparse_out",
    )
    if not globals_:
        return local
    # Global queries see every key: a small dense attention over their G rows.
    d2 = te.reduce_axis((0, head_dim), "d2")
    g_scores = te.compute(
        (*q.shape[:-2], globals_, seq),
        lambda b, h, g, k: te.sum(q[b, h, g, d2] * keys[b, h, k, d2], axis=d2),
        name="global_scores",
    )
    g_logits = te.compute(
        g_scores.shape, lambda b, h, g, k: g_scores[b, h, g, k] + bias_at(b, h, g, k), name="global_logits"
    )
    g_probs = _guarded(topi.nn.softmax(g_logits, axis=-1))
    k_axis = te.reduce_axis((0, seq), "k")
    g_out = te.compute(
        (*q.shape[:-2], globals_, head_dim),
        lambda b, h, g, e: te.sum(g_probs[b, h, g, k_axis] * v[b, h, k_axis, e], axis=k_axis),
        name="global_out",
    )
    return te.compute(
        q.shape,
        lambda b, h, i, e: tirx.if_then_else(
            i < globals_, g_out[b, h, tirx.min(i, globals_ - 1), e], local[b, h, i, e]
        ),
        name="attention_out",
    )


def _guarded(probs):
    """0 instead of NaN for a row whose every kept key is masked with -inf (torch's where(isnan))."""
    return te.compute(
        probs.shape,
        lambda *i: tirx.if_then_else(tirx.isnan(probs(*i)), tirx.const(0.0, "float32"), probs(*i)),
        name="guarded_probs",
    )
