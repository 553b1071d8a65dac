"""Block-sparse attention built from dense Relax ops on blocks, for `rewrite_attention_sparse`.

Queries are reshaped into blocks of B tokens; each block's keys (its own block and N on each side,
W = (2N + 1) * B, then the G global keys) are gathered once, by one `take` per tensor. Scores, softmax and the
weighted sum are then ordinary batched matmuls and a softmax over [blocks, B, G + W], so they get
the same schedules (and tuning) as every other matmul instead of a gather kernel that computes one
key at a time. Semantics are those of `sparse_attention_te`: slots outside the sequence or on a
global token are masked out; the first G queries attend to every key.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from edgecc.passes.attention.sparse_pattern import MASKED as _MASKED

SLOT_MULTIPLE = 16


def can_block(seq: int, pattern, bias_shape: list[int] | None) -> bool:
    """Blocks must tile the sequence and the global tokens fit in the first block."""
    return seq % pattern.block == 0 and pattern.global_tokens < pattern.block


def emit_blocked_attention(bb: relax.BlockBuilder, q, kt, bias, v, shape, pattern, cache: dict | None = None):
    """Emit the block-sparse attention for q [b,h,S,d], kt [b,h,d,S], v [b,h,S,d]; returns [b,h,S,d].

    Each block's keys are [its window | the G global keys | masked padding up to a multiple of
    16], so the block's attention is one plain attention (matmul, + bias, softmax, matmul) over
    G + W slots: `fuse_attention` then turns it into its fused kernel like any dense one, reading
    the gathered keys and values through their index table instead of gathered copies.
    `cache`: shared by the attentions of one model, so the slot index and the per-slot mask bias
    (the same for every layer) are made once.
    """
    cache = {} if cache is None else cache
    b, h, seq, dim = shape
    blocks, globals_ = seq // pattern.block, pattern.global_tokens
    padding = -pattern.keys_per_query % SLOT_MULTIPLE
    op = relax.op
    emit = bb.emit
    # One gather per tensor: every (block, slot) pair's key position, window and globals alike.
    # Padding and out-of-sequence slots read a clamped real key that the slot bias masks out.
    # (Concatenating shifted views instead fused into one kernel whose select chains ran ~30x
    # slower than this gather: 19 ms vs <1 ms for MiniLM's keys at seq 1024.)
    slots = pattern.keys_per_query + padding
    if ("index", seq) not in cache:
        cache["index", seq] = relax.const(_slot_positions(seq, pattern, padding)[0].reshape(-1).astype("int64"))
    index = cache["index", seq]
    q_blocks = emit(op.reshape(q, [b, h, blocks, pattern.block, dim]))
    kt_slots = emit(op.reshape(emit(op.take(kt, index, axis=3)), [b, h, dim, blocks, slots]))
    kt_slots = emit(op.permute_dims(kt_slots, [0, 1, 3, 2, 4]))  # [b,h,blocks,d,slots]
    v_slots = emit(op.reshape(emit(op.take(v, index, axis=2)), [b, h, blocks, slots, dim]))
    key = ("bias", seq, bias)
    if key not in cache:
        cache[key] = _emit_biases(bb, bias, seq, pattern, padding)
    slot_bias, global_rows_bias = cache[key]
    scores = emit(op.matmul(q_blocks, kt_slots))  # [b,h,blocks,B,G+W+pad]
    out = emit(op.matmul(_softmax(emit, emit(op.add(scores, slot_bias))), v_slots))
    out = emit(op.reshape(out, [b, h, seq, dim]))
    if not globals_:
        return out
    # The global queries see every key: a small dense attention over their G rows.
    dense_scores = emit(op.matmul(emit(op.strided_slice(q, [2], [0], [globals_])), kt))  # [b,h,G,S]
    if global_rows_bias is not None:
        dense_scores = emit(op.add(dense_scores, global_rows_bias))
    global_out = emit(op.matmul(_softmax(emit, dense_scores), v))
    return emit(op.concat([global_out, emit(op.strided_slice(out, [2], [globals_], [seq]))], axis=2))


def _emit_biases(bb, bias, seq: int, pattern, padding: int):
    """(the additive bias of every block's slots, that of the global query rows or None)."""
    op, emit = relax.op, bb.emit
    slot_bias = relax.const(_slot_validity(seq, pattern, padding))
    if bias is None:
        return slot_bias, None
    # The mask bias as [bb, bh, rows, S] (rows 1 or S), flattened so one `take` gathers the
    # bias of every (query, slot) pair; masked-out slots gather a clamped, unused value.
    dims = [int(d) for d in bias.ty.shape]
    dims = [1] * (4 - len(dims)) + dims if len(dims) < 4 else dims
    bias_b, bias_h, rows = dims[0], dims[1], dims[2]
    flat_bias = emit(op.reshape(bias, [bias_b, bias_h, rows * seq]))
    index = relax.const(_bias_index(seq, rows, pattern, padding))
    slot_bias = emit(op.add(slot_bias, emit(op.take(flat_bias, index, axis=2))))
    rows_bias = emit(op.reshape(flat_bias, [bias_b, bias_h, rows, seq]))
    if rows > 1 and pattern.global_tokens:
        rows_bias = emit(op.strided_slice(rows_bias, [2], [0], [pattern.global_tokens]))
    return slot_bias, rows_bias


def _softmax(emit, scores):
    """Softmax with the exporter's guard: a row whose every kept key is masked (-inf, e.g. a padding
    query whose window holds only padding) gives 0 instead of NaN, as torch's where(isnan) does."""
    probs = emit(relax.op.nn.softmax(scores, axis=-1))
    return emit(relax.op.where(relax.op.isnan(probs), relax.const(0.0, "float32"), probs))


def _slot_positions(seq: int, pattern, padding: int) -> tuple[np.ndarray, np.ndarray]:
    """Key position of each slot of each block [blocks, slots], and whether the slot is a real key."""
    block, reach = pattern.block, pattern.neighbours * pattern.block
    width = (2 * pattern.neighbours + 1) * block
    window = np.arange(seq // block)[:, None] * block - reach + np.arange(width)[None, :]
    window_valid = (window >= 0) & (window < seq) & (window >= pattern.global_tokens)
    blocks = seq // block
    globals_ = np.broadcast_to(np.arange(pattern.global_tokens), (blocks, pattern.global_tokens))
    positions = np.concatenate([window, globals_, np.zeros((blocks, padding), int)], axis=1)
    valid = np.concatenate([window_valid, np.ones_like(globals_, bool), np.zeros((blocks, padding), bool)], axis=1)
    return np.clip(positions, 0, seq - 1), valid


def _slot_validity(seq: int, pattern, padding: int) -> np.ndarray:
    """Additive mask [1,1,blocks,1,slots]: 0 for a real key, masked for the rest."""
    _, valid = _slot_positions(seq, pattern, padding)
    return np.where(valid, 0.0, _MASKED).astype("float32")[None, None, :, None, :]


def _bias_index(seq: int, rows: int, pattern, padding: int) -> np.ndarray:
    """Flat bias positions [blocks, B, slots] for each query of each block and each slot."""
    positions, _ = _slot_positions(seq, pattern, padding)
    query = np.arange(seq).reshape(seq // pattern.block, pattern.block, 1)
    row = query if rows > 1 else np.zeros_like(query)
    return (row * seq + positions[:, None, :]).astype("int64")
