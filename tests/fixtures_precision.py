"""Small hand-built Relax modules for the precision and sparsity pass tests."""

from __future__ import annotations

import numpy as np
import pytest


def dense_module(rng, tokens=8, hidden=64, out=128, vocab=200):
    """main(ids [1, tokens] int64) = softmax(take(E, ids) @ W1) @ W2, weights as constants."""
    from tvm import relax

    table = rng.standard_normal((vocab, hidden)).astype("float32")
    w1 = (rng.standard_normal((hidden, out)) * 0.2).astype("float32")
    w2 = (rng.standard_normal((out, hidden)) * 0.2).astype("float32")
    bb = relax.BlockBuilder()
    ids = relax.Var("ids", relax.TensorType((1, tokens), "int64"))
    with bb.function("main", [ids]):
        with bb.dataflow():
            x = bb.emit(relax.op.take(relax.const(table), ids, axis=0))
            h = bb.emit(relax.op.matmul(x, relax.const(w1)))
            p = bb.emit(relax.op.nn.softmax(h, axis=-1))
            y = bb.emit_output(relax.op.matmul(p, relax.const(w2)))
        bb.emit_func_output(y)
    return bb.get(), {"table": table, "w1": w1, "w2": w2}


def reference_dense(ids, weights, transform=lambda name, w: w):
    x = transform("table", weights["table"])[ids]
    h = x @ transform("w1", weights["w1"])
    p = np.exp(h - h.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return p @ transform("w2", weights["w2"])


def attention_module(batch=1, heads=2, seq=32, dim=8, bias_rows=1):
    """main(q, kt, v, bias) = matmul(where(isnan(s), 0, s), v), s = softmax(q @ kt + bias).

    bias_rows=seq gives a mask bias per query row, as transformers 5 exports it ([b, 1, S, S])."""
    from tvm import relax

    bb = relax.BlockBuilder()
    q = relax.Var("q", relax.TensorType((batch, heads, seq, dim), "float32"))
    kt = relax.Var("kt", relax.TensorType((batch, heads, dim, seq), "float32"))
    v = relax.Var("v", relax.TensorType((batch, heads, seq, dim), "float32"))
    bias = relax.Var("bias", relax.TensorType((batch, 1, bias_rows, seq), "float32"))
    with bb.function("main", [q, kt, v, bias]):
        with bb.dataflow():
            scores = bb.emit(relax.op.add(relax.op.matmul(q, kt), bias))
            probs = bb.emit(relax.op.nn.softmax(scores, axis=-1))
            safe = bb.emit(relax.op.where(relax.op.isnan(probs), relax.const(0.0, "float32"), probs))
            out = bb.emit_output(relax.op.matmul(safe, v))
        bb.emit_func_output(out)
    return bb.get()


def sparse_reference(q, kt, v, bias, block, neighbours, global_tokens):
    """NumPy attention restricted to the kept keys of the block-sparse pattern."""
    seq = q.shape[-2]
    keep = np.zeros((seq, seq), dtype=bool)
    for i in range(seq):
        start = (i // block) * block - neighbours * block
        keep[i, max(0, start) : min(seq, start + (2 * neighbours + 1) * block)] = True
    keep[:, :global_tokens] = True
    keep[:global_tokens, :] = True
    scores = q @ kt + bias
    scores = np.where(keep, scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return probs @ v


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def build_for_host(mod):
    """(scheduled module, run) for a Relax module built for this machine through edgecc's own
    lowering and default schedules; run(*arrays) -> the first output as NumPy."""
    import tvm
    from tvm import relax

    from edgecc.backends import backend_for
    from edgecc.context import CompileContext
    from edgecc.options import CompileOptions
    from edgecc.pipeline import lower
    from edgecc.targets import load_target

    host = load_target("host")
    ctx = CompileContext(model="test", options=CompileOptions(), log=lambda *_: None)
    ctx.target, ctx.backend, ctx.relax_module = host, backend_for(host), mod
    lower(ctx)
    scheduled = ctx.backend.default_schedule(ctx.lowered, host)
    vm = relax.VirtualMachine(ctx.backend.build(scheduled, host).executable, tvm.cpu())
    return scheduled, lambda *arrays: vm["main"](*[tvm.runtime.tensor(a) for a in arrays]).numpy()


def cosine(a, b) -> float:
    return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))


def fp16_dense_kernel(m, k, n):
    """out = f32(a16) @ f32(w16) + bias: what `matmul(fp16(x), fp16(W), out_dtype=f32) + b` legalizes to."""
    from tvm import te

    a = te.placeholder((1, m, k), "float16", name="a")
    w = te.placeholder((k, n), "float16", name="w")
    bias = te.placeholder((n,), "float32", name="bias")
    r = te.reduce_axis((0, k), name="r")
    acc = te.compute(
        (1, m, n),
        lambda b, i, j: te.sum(a[b, i, r].astype("float32") * w[r, j].astype("float32"), axis=r),
        name="matmul",
    )
    out = te.compute((1, m, n), lambda b, i, j: acc[b, i, j] + bias[j], name="add")
    return te.create_prim_func([a, w, bias, out])


def schedule_fp16(func, target):
    """`func` scheduled by the FP16 rule alone for `target`, or None when the rule does not take it."""
    from edgecc.schedules import schedule_kernel, vector_lanes
    from edgecc.schedules.common import schedule_source
    from edgecc.schedules.matmul_fp16 import Fp16MatmulRule
    from edgecc.schedules.weight_packing import PACKED_ATTR

    scheduled = schedule_kernel(
        func, "main", vector_lanes(target), target, frozenset({1}), rules=(Fp16MatmulRule(),), packed_attr=PACKED_ATTR
    )
    return scheduled if schedule_source(scheduled) == f"rule:{Fp16MatmulRule.name}" else None


def blocked_fp16_reference(a16, w16, bias, k_block):
    """FP16 accumulators, one exact fused multiply-add per k (float64 is exact for an FP16 product
    plus an FP16 sum, then one rounding to FP16), blocks added in FP32, then the FP32 bias."""
    m, n = a16.shape[0], w16.shape[1]
    total = np.zeros((m, n), np.float32)
    for start in range(0, a16.shape[1], k_block):
        acc = np.zeros((m, n), np.float16)
        for k in range(start, start + k_block):
            acc = (acc.astype(np.float64) + a16[:, k : k + 1].astype(np.float64) * w16[k].astype(np.float64)).astype(
                np.float16
            )
        total = total + acc.astype(np.float32)
    return total + bias
