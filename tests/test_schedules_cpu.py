"""Default CPU schedules: a hand-built matmul+bias kernel before and after, built and compared."""

from __future__ import annotations

import re

import numpy as np
import tvm
from tvm.script import tirx as T

from edgecc.schedules import schedule_kernel
from edgecc.schedules.weight_packing import PACKED_ATTR, pack_array
from edgecc.targets import load_target


@T.prim_func(private=True, s_tir=True)
def dense_bias(
    x: T.Buffer((T.int64(1), T.int64(32), T.int64(48)), "float32"),
    w: T.Buffer((T.int64(48), T.int64(64)), "float32"),
    b: T.Buffer((T.int64(64),), "float32"),
    y: T.Buffer((T.int64(1), T.int64(32), T.int64(64)), "float32"),
):
    T.func_attr({"tirx.noalias": True})
    acc = T.sblock_alloc_buffer((T.int64(1), T.int64(32), T.int64(64)))
    for i0, i1, i2, k in T.grid(T.int64(1), T.int64(32), T.int64(64), T.int64(48)):
        with T.sblock("matmul"):
            v0, v1, v2, vk = T.axis.remap("SSSR", [i0, i1, i2, k])
            with T.init():
                acc[v0, v1, v2] = T.float32(0.0)
            acc[v0, v1, v2] = acc[v0, v1, v2] + x[v0, v1, vk] * w[vk, v2]
    for a0, a1, a2 in T.grid(T.int64(1), T.int64(32), T.int64(64)):
        with T.sblock("T_add"):
            v0, v1, v2 = T.axis.remap("SSS", [a0, a1, a2])
            y[v0, v1, v2] = acc[v0, v1, v2] + b[v2]


def _run(func, target, arrays):
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    tensors = [tvm.runtime.tensor(a) for a in arrays]
    lib["main"](*tensors)
    return tensors[-1].numpy()


def test_matmul_gets_a_vectorised_parallel_register_tile_and_same_numbers():
    scheduled = schedule_kernel(dense_bias, "dense_bias", lanes=16)
    assert scheduled.attrs["edgecc.schedule"] == "rule:matmul"
    text = scheduled.script()
    assert "T.parallel" in text and "T.vectorized" in text and "T.unroll" in text
    assert "matmul_init" in text  # reduction init split from the update
    assert scheduled.attrs["tirx.is_scheduled"]
    rng = np.random.default_rng(0)
    arrays = [
        rng.standard_normal((1, 32, 48)).astype("float32"),
        rng.standard_normal((48, 64)).astype("float32"),
        rng.standard_normal(64).astype("float32"),
        np.zeros((1, 32, 64), "float32"),
    ]
    target = load_target("host").tvm()
    want = arrays[0] @ arrays[1] + arrays[2]
    np.testing.assert_allclose(_run(dense_bias, target, [a.copy() for a in arrays]), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_run(scheduled, target, [a.copy() for a in arrays]), want, rtol=1e-5, atol=1e-5)


def _lowered_tiny_bert(seq_len: int = 16):
    from edgecc.options import CompileOptions
    from edgecc.pipeline import CompileContext, import_model, load_model, lower, resolve_target

    ctx = CompileContext(model="bert-tiny-test", options=CompileOptions(seq_len=seq_len), log=lambda *_: None)
    for step in (resolve_target, load_model, import_model, lower):
        step(ctx)
    return ctx


def _random_arguments(func, rng):
    arrays = []
    for buffer in func.params:
        shape, dtype = [int(d) for d in buffer.shape], str(buffer.dtype)
        if "float" in dtype:
            arrays.append(rng.standard_normal(shape).astype(dtype))
        elif dtype == "bool":
            arrays.append(rng.random(shape) > 0.5)
        else:
            arrays.append(rng.integers(0, 2, size=shape).astype(dtype))
    return arrays


def test_every_default_scheduled_kernel_of_a_bert_computes_what_its_naive_form_computes():
    """Conformance of the schedules on real kernels: matmuls with GELU epilogues, softmax, LayerNorm."""
    from tvm import tirx

    from edgecc.schedules import apply_cpu_default_schedules

    ctx = _lowered_tiny_bert()
    naive = ctx.lowered
    before = naive.script()
    scheduled = apply_cpu_default_schedules(naive, ctx.target)
    assert naive.script() == before  # the caller's module is left alone
    target, rng, checked, packed = ctx.target.tvm(), np.random.default_rng(0), [], []
    for gvar, func in naive.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        after = scheduled[gvar.name_hint]
        arrays = _random_arguments(func, rng)
        want = _run(func, target, [a.copy() for a in arrays])
        packed_arrays = [a.copy() for a in arrays]
        for position, n_axis, tile in (after.attrs or {}).get(PACKED_ATTR, []):
            packed_arrays[int(position)] = pack_array(arrays[int(position)], int(n_axis), int(tile))
            packed.append(gvar.name_hint)
        got = _run(after, target, packed_arrays)
        np.testing.assert_allclose(
            got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())), err_msg=gvar.name_hint
        )
        checked.append((gvar.name_hint, "tirx.is_scheduled" in (after.attrs or {})))
    names = [name for name, _ in checked]
    assert any("layer_norm" in n for n in names) and any("softmax" in n for n in names)
    assert all(is_scheduled for name, is_scheduled in checked if "matmul" in name or "layer_norm" in name)
    assert len(packed) >= 3  # the dense layers' weights (QKV/output, FFN in, FFN out) are repacked


def test_layer_norm_runs_as_one_parallel_loop_over_rows():
    from tvm import tirx

    from edgecc.schedules import apply_cpu_default_schedules

    ctx = _lowered_tiny_bert()
    scheduled = apply_cpu_default_schedules(ctx.lowered, ctx.target)
    norms = [
        f for gv, f in scheduled.functions.items() if isinstance(f, tirx.PrimFunc) and "layer_norm" in gv.name_hint
    ]
    assert norms
    text = norms[0].script()
    assert text.count("T.parallel") == 1 and "T.vectorized" in text


def test_every_kernel_says_where_its_schedule_came_from():
    from edgecc.schedules import apply_cpu_default_schedules
    from edgecc.schedules.common import schedule_summary

    ctx = _lowered_tiny_bert()
    summary = schedule_summary(apply_cpu_default_schedules(ctx.lowered, ctx.target))
    assert summary.unscheduled == [] and summary.failures == {}
    assert sum(summary.by_source.values()) == summary.kernels
    assert summary.by_source.get("rule:matmul", 0) >= 3 and summary.by_source.get("rule:row-reduction", 0) >= 2
    naive = schedule_summary(ctx.lowered)
    assert naive.unscheduled and len(naive.unscheduled) == naive.by_source["unscheduled"]


class _RaisingRule:
    name = "raises"

    def matches(self, kernel):
        return True

    def apply(self, kernel):
        raise ValueError("this rule cannot schedule anything")


def test_a_rule_that_raises_is_recorded_and_the_next_rule_schedules_the_kernel():
    from edgecc.schedules import CPU_RULES
    from edgecc.schedules.common import schedule_summary

    scheduled = schedule_kernel(dense_bias, "dense_bias", lanes=16, rules=(_RaisingRule(), *CPU_RULES))
    assert scheduled.attrs["edgecc.schedule"] == "rule:matmul"
    assert "rule:raises: ValueError: this rule cannot schedule anything" in list(
        scheduled.attrs["edgecc.schedule_failures"]
    )
    alone = schedule_kernel(dense_bias, "dense_bias", lanes=16, rules=(_RaisingRule(),))
    summary = schedule_summary(tvm.IRModule({"dense_bias": alone}))
    assert summary.unscheduled == ["dense_bias"] and "dense_bias" in summary.failures


def test_layer_norm_over_rows_no_whole_number_of_vectors_wide_runs_on_narrower_vectors():
    """TinyBERT's 312-wide rows are 19.5 AVX-512 vectors: the sums and the output take 8-lane
    vectors (312 = 39 x 8) instead of running as scalar chains."""
    from tvm import te, topi

    data = te.placeholder((1, 128, 312), "float32", name="x")
    gamma = te.placeholder((312,), "float32", name="gamma")
    beta = te.placeholder((312,), "float32", name="beta")
    func = te.create_prim_func([data, gamma, beta, topi.nn.layer_norm(data, gamma, beta, [2], 1e-12)])
    scheduled = schedule_kernel(func, "layer_norm", lanes=16)
    assert scheduled.attrs["edgecc.schedule"] == "rule:row-reduction"
    text = scheduled.script()
    eight_lanes = re.findall(r"T\.vectorized\((?:T\.int64\()?8\)", text)
    assert len(eight_lanes) >= 3  # both sums' partials and the normalized output
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype("float32") for s in ((1, 128, 312), (312,), (312,))]
    arrays.append(np.zeros((1, 128, 312), "float32"))
    target = load_target("host").tvm()
    want = _run(func, target, [a.copy() for a in arrays])
    np.testing.assert_allclose(_run(scheduled, target, [a.copy() for a in arrays]), want, rtol=1e-5, atol=1e-5)


@T.prim_func(private=True, s_tir=True)
def dense_deep(
    x: T.Buffer((T.int64(32), T.int64(256)), "float32"),
    w: T.Buffer((T.int64(256), T.int64(192)), "float32"),
    y: T.Buffer((T.int64(32), T.int64(192)), "float32"),
):
    T.func_attr({"tirx.noalias": True})
    for i, j, k in T.grid(T.int64(32), T.int64(192), T.int64(256)):
        with T.sblock("matmul"):
            vi, vj, vk = T.axis.remap("SSR", [i, j, k])
            with T.init():
                y[vi, vj] = T.float32(0.0)
            y[vi, vj] = y[vi, vj] + x[vi, vk] * w[vk, vj]


def test_a_packed_weight_of_several_panels_is_prefetched_a_panel_ahead_with_the_same_numbers():
    from edgecc.schedules.prefetch import PREFETCH_KEY

    scheduled = schedule_kernel(dense_deep, "dense_deep", lanes=16, constant_inputs=frozenset({1}))
    ((position, n_axis, tile),) = scheduled.attrs[PACKED_ATTR]
    text = scheduled.script()
    # one prefetch loop per K block of 64, inside the parallel loop; the marker is gone
    assert text.count("llvm.prefetch") == 1 and "for k_0 in range(T.int64(4))" in text, text
    assert PREFETCH_KEY not in text
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((32, 256)).astype("float32"), rng.standard_normal((256, 192)).astype("float32")
    target = load_target("host").tvm()
    lib = tvm.compile(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), target=target)
    asm = lib.mod.inspect_source("asm")
    assert "prefetcht1" in asm or "prfm" in asm  # into L2 (x86 / aarch64)
    y = tvm.runtime.tensor(np.zeros((32, 192), "float32"))
    lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(pack_array(w, int(n_axis), int(tile))), y)
    np.testing.assert_allclose(y.numpy(), x @ w, rtol=1e-5, atol=1e-4)


def _dense(rows: int, k: int, n: int):
    from tvm import te

    x = te.placeholder((1, rows, k), "float32", name="x")
    w = te.placeholder((k, n), "float32", name="w")
    r = te.reduce_axis((0, k), "r")
    y = te.compute((1, rows, n), lambda b, i, j: te.sum(x[b, i, r] * w[r, j], axis=r), name="matmul")
    return te.create_prim_func([x, w, y]).without_attr("global_symbol")


def test_a_prime_number_of_rows_keeps_a_full_register_tile_and_the_same_numbers():
    """197 rows (ViT's tokens) are divisible only by 1: the tile had one row, and every weight vector
    loaded served one product. It is 8 rows now, on rows padded to whole tiles: no predicate in the
    tile's loop, only where the real rows are written back."""
    from tvm import s_tir

    for rows in (197, 65, 9):
        scheduled = schedule_kernel(_dense(rows, 32, 48), "dense", lanes=8)
        assert scheduled.attrs["edgecc.schedule"] == "rule:matmul"
        sch = s_tir.Schedule(scheduled)
        update = sch.get_sblock("matmul_update")
        unrolled = [sch.get(loop) for loop in sch.get_loops(update)]
        unrolled = [int(loop.extent) for loop in unrolled if loop.kind == tvm.tirx.ForKind.UNROLLED]
        assert unrolled and unrolled[0] == 8
        assert _predicate(scheduled, "matmul_update") is None
        rng = np.random.default_rng(rows)
        x = rng.standard_normal((1, rows, 32)).astype("float32")
        w = rng.standard_normal((32, 48)).astype("float32")
        out = _run(scheduled, load_target("host").tvm(), [x, w, np.zeros((1, rows, 48), "float32")])
        np.testing.assert_allclose(out, x @ w, rtol=1e-5, atol=1e-5)


def _predicate(func, block_name: str):
    """The block's predicate (its T.where line), or None for an unconditional block."""
    (body,) = [part for part in func.script().split("with T.sblock(")[1:] if part.startswith(f'"{block_name}"')]
    where = [line.strip() for line in body.splitlines() if line.strip().startswith("T.where(")]
    return where[0] if where else None
