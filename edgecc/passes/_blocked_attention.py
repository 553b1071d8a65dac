"""Block-sparse attention built from dense Relax ops on blocks, for `rewrite_attention_sparse`.

Queries are reshaped into blocks of B tokens; each block's keys (its own block and N on each side)
are gathered once into a window of W = (2N + 1) * B contiguous keys. Scores, softmax and the
weighted sum are then ordinary batched matmuls and a softmax over [blocks, B, G + W], so they get
the same schedules (and tuning) as every other matmul instead of a gather kernel that computes one
key at a time. Semantics are those of `sparse_attention_te`: slots outside the sequence or on a
global token are masked out; the first G queries attend to every key.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from .rewrite_attention_sparse import _MASKED

SLOT_MULTIPLE = 16


def can_block(seq: int, pattern, bias_shape: list[int] | None) -> bool:
    """Blocks must tile the sequence and the global tokens fit in the first block."""
    return seq % pattern.block == 0 and pattern.global_tokens < pattern.block


def emit_blocked_attention(bb: relax.BlockBuilder, q, kt, bias, v, shape, pattern):
    """Emit the block-sparse attention for q [b,h,S,d], kt [b,h,d,S], v [b,h,S,d]; returns [b,h,S,d]."""
    b, h, seq, dim = shape
    block, reach, globals_ = pattern.block, pattern.neighbours * pattern.block, pattern.global_tokens
    blocks, views = seq // block, 2 * pattern.neighbours + 1
    op = relax.op
    emit = bb.emit

    def windows(padded, axis, split_shape, window_axis):
        """(2N+1) shifted views of a tensor padded by `reach` on `axis`, concatenated per block."""
        parts = [emit(op.reshape(emit(op.strided_slice(padded, [axis], [o * block], [o * block + seq])),
                                 split_shape)) for o in range(views)]
        return emit(op.concat(parts, axis=window_axis))

    def pad(x, axis, fill_shape):
        zeros = relax.const(np.zeros(fill_shape, "float32"))
        return emit(op.concat([zeros, x, zeros], axis=axis))

    q_blocks = emit(op.reshape(q, [b, h, blocks, block, dim]))
    kt_padded = pad(kt, 3, [b, h, dim, reach])
    kt_windows = windows(kt_padded, 3, [b, h, dim, blocks, block], 4)  # [b,h,d,blocks,W] after permute
    kt_windows = emit(op.permute_dims(kt_windows, [0, 1, 3, 2, 4]))
    scores = emit(op.matmul(q_blocks, kt_windows))  # [b,h,blocks,B,W]
    scores = emit(op.add(scores, relax.const(_window_validity(seq, pattern))))
    flat_bias = None
    if bias is not None:
        # The mask bias as [bb, bh, rows, S] (rows 1 or S), flattened so one `take` gathers the
        # bias of every (query, window slot) pair; masked-out slots gather a clamped, unused value.
        dims = [int(d) for d in bias.ty.shape]
        dims = [1] * (4 - len(dims)) + dims if len(dims) < 4 else dims
        bias_b, bias_h, rows = dims[0], dims[1], dims[2]
        flat_bias = emit(op.reshape(bias, [bias_b, bias_h, rows * seq]))
        index = relax.const(_bias_index(seq, rows, pattern))
        scores = emit(op.add(scores, emit(op.take(flat_bias, index, axis=2))))
    v_windows = windows(pad(v, 2, [b, h, reach, dim]), 2, [b, h, blocks, block, dim], 3)  # [b,h,blocks,W,d]
    if not globals_:
        probs = _softmax(emit, scores)
        out = emit(op.matmul(probs, v_windows))
        return emit(op.reshape(out, [b, h, seq, dim]))

    global_kt = emit(op.reshape(emit(op.strided_slice(kt, [3], [0], [globals_])), [b, h, 1, dim, globals_]))
    global_scores = emit(op.matmul(q_blocks, global_kt))  # [b,h,blocks,B,G]
    if flat_bias is not None:
        index = relax.const(_bias_index(seq, rows, pattern, global_keys=True))
        global_scores = emit(op.add(global_scores, emit(op.take(flat_bias, index, axis=2))))
    # Window slots first, then the global keys, then masked slots up to a multiple of 16: a
    # softmax row that is whole vectors runs ~4x faster than one of G + W = 194 slots.
    width = views * block
    padding = -(width + globals_) % SLOT_MULTIPLE
    parts = [scores, global_scores]
    if padding:
        parts.append(relax.const(np.full((1, 1, 1, 1, padding), _MASKED, "float32")))
        parts[-1] = emit(op.broadcast_to(parts[-1], [b, h, blocks, block, padding]))
    probs = _softmax(emit, emit(op.concat(parts, axis=4)))
    global_v = emit(op.reshape(emit(op.strided_slice(v, [2], [0], [globals_])), [b, h, 1, globals_, dim]))
    out = emit(op.add(
        emit(op.matmul(emit(op.strided_slice(probs, [4], [0], [width])), v_windows)),
        emit(op.matmul(emit(op.strided_slice(probs, [4], [width], [width + globals_])), global_v))))
    out = emit(op.reshape(out, [b, h, seq, dim]))
    # The global queries see every key: a small dense attention over their G rows.
    dense_scores = emit(op.matmul(emit(op.strided_slice(q, [2], [0], [globals_])), kt))  # [b,h,G,S]
    if flat_bias is not None:
        rows_bias = emit(op.reshape(flat_bias, [bias_b, bias_h, rows, seq]))
        if rows > 1:
            rows_bias = emit(op.strided_slice(rows_bias, [2], [0], [globals_]))
        dense_scores = emit(op.add(dense_scores, rows_bias))
    global_out = emit(op.matmul(_softmax(emit, dense_scores), v))
    return emit(op.concat([global_out, emit(op.strided_slice(out, [2], [globals_], [seq]))], axis=2))


def _softmax(emit, scores):
    """Softmax with the exporter's guard: a row whose every kept key is masked (-inf, e.g. a padding
    query whose window holds only padding) gives 0 instead of NaN, as torch's where(isnan) does."""
    probs = emit(relax.op.nn.softmax(scores, axis=-1))
    return emit(relax.op.where(relax.op.isnan(probs), relax.const(0.0, "float32"), probs))


def _window_validity(seq: int, pattern) -> np.ndarray:
    """Additive mask [1,1,blocks,1,W]: 0 where window slot s of block j is a real, non-global key."""
    block, reach = pattern.block, pattern.neighbours * pattern.block
    width = (2 * pattern.neighbours + 1) * block
    blocks = np.arange(seq // block)[:, None]
    position = blocks * block - reach + np.arange(width)[None, :]
    valid = (position >= 0) & (position < seq) & (position >= pattern.global_tokens)
    return np.where(valid, 0.0, _MASKED).astype("float32").reshape(1, 1, seq // block, 1, width)


def _bias_index(seq: int, rows: int, pattern, global_keys: bool = False) -> np.ndarray:
    """Flat bias positions [blocks, B, slots] for each query of each block and each window slot
    (or each global key)."""
    block, reach = pattern.block, pattern.neighbours * pattern.block
    query = np.arange(seq).reshape(seq // block, block, 1)
    if global_keys:
        key = np.arange(pattern.global_tokens).reshape(1, 1, -1)
    else:
        width = (2 * pattern.neighbours + 1) * block
        key = np.clip((query // block) * block - reach + np.arange(width).reshape(1, 1, -1), 0, seq - 1)
    row = query if rows > 1 else np.zeros_like(query)
    return (row * seq + key).astype("int64")
