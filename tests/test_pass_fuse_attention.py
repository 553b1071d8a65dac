import numpy as np
import pytest
import tvm

from edgecc.passes.attention.fuse_attention import FuseAttention
from edgecc.passes.precision.calibration import build_on_host

from fixtures_precision import attention_module, dense_module


def _attention_inputs(rng, seq=32, heads=2, dim=8):
    q = rng.standard_normal((1, heads, seq, dim)).astype("float32")
    kt = rng.standard_normal((1, heads, dim, seq)).astype("float32")
    v = rng.standard_normal((1, heads, seq, dim)).astype("float32")
    bias = np.zeros((1, 1, 1, seq), dtype="float32")
    bias[..., -5:] = np.finfo(np.float32).min  # padding, as torch masks it
    return [q, kt, v, bias]


def head_split_module(seq=16, heads=3, dim=5, scale_where="qk"):
    """Projections [1, S, H*D] split into heads (reshape, permute, * scale), attention, heads merged."""
    from tvm import relax

    hidden = heads * dim
    bb = relax.BlockBuilder()
    xq, xk, xv = (relax.Var(n, relax.TensorType((1, seq, hidden), "float32")) for n in ("xq", "xk", "xv"))
    bias = relax.Var("bias", relax.TensorType((1, 1, seq, seq), "float32"))
    op, c = relax.op, relax.const
    with bb.function("main", [xq, xk, xv, bias]):
        with bb.dataflow():
            q = bb.emit(op.permute_dims(op.reshape(xq, (1, seq, heads, dim)), [0, 2, 1, 3]))
            kt = bb.emit(op.permute_dims(op.reshape(xk, (1, seq, heads, dim)), [0, 2, 3, 1]))
            if scale_where == "qk":  # torch's SDPA export: sqrt(scale) on each of q and k
                q = bb.emit(op.multiply(q, c(dim**-0.25, "float32")))
                kt = bb.emit(op.multiply(kt, c(dim**-0.25, "float32")))
            scores = bb.emit(op.matmul(q, kt))
            if scale_where == "scores":  # the classic BERT export: scores / sqrt(d), then the mask
                scores = bb.emit(op.divide(scores, c(dim**0.5, "float32")))
            logits = bb.emit(op.add(scores, bias))
            probs = bb.emit(op.nn.softmax(logits, axis=-1))
            safe = bb.emit(op.where(op.isnan(probs), c(0.0, "float32"), probs))
            v = bb.emit(op.permute_dims(op.reshape(xv, (1, seq, heads, dim)), [0, 2, 1, 3]))
            out = bb.emit(op.permute_dims(op.matmul(safe, v), [0, 2, 1, 3]))
            y = bb.emit_output(op.reshape(out, (1, seq, hidden)))
        bb.emit_func_output(y)
    return bb.get()


def _ops(mod) -> str:
    return mod["main"].script(show_meta=False)


@pytest.mark.parametrize("fast_math", [True, False])
def test_attention_becomes_one_kernel_with_the_same_outputs(rng, fast_math):
    mod = attention_module()
    fuse = FuseAttention(fast_math=fast_math)
    after = fuse(mod)
    text = _ops(after)
    assert fuse.stats.attentions_fused == 1
    assert text.count("R.call_tir") == 1 and "fused_attention" in text
    for gone in ("R.matmul", "R.nn.softmax", "R.isnan", "R.where", "R.add"):
        assert gone not in text
    kernel = next(f for gv, f in after.functions_items() if gv.name_hint == "fused_attention")
    assert kernel.attrs["tirx.is_scheduled"]  # carries its own CPU schedule
    inputs = _attention_inputs(rng)
    expected = build_on_host(mod)(inputs)[0]
    np.testing.assert_allclose(build_on_host(after)(inputs)[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale_where", ["qk", "scores"])
def test_head_split_and_merge_transposes_are_absorbed(rng, scale_where):
    mod = head_split_module(scale_where=scale_where)
    before = _ops(mod)
    assert before.count("R.permute_dims") == 4 and before.count("R.matmul") == 2
    after = FuseAttention()(mod)
    text = _ops(after)
    # the kernel reads the [1, S, H*D] projections and writes [1, S, H, D]: only the free reshape is left
    assert "R.permute_dims" not in text and "R.multiply" not in text and "R.divide" not in text
    assert text.count("R.call_tir") == 1 and text.count("R.reshape") == 1
    assert "(xq, xk, xv, bias)" in text
    inputs = [rng.standard_normal((1, 16, 15)).astype("float32") for _ in range(3)]
    bias = np.zeros((1, 1, 16, 16), dtype="float32")
    bias[..., 12:] = np.finfo(np.float32).min
    expected = build_on_host(mod)([*inputs, bias])[0]
    np.testing.assert_allclose(build_on_host(after)([*inputs, bias])[0], expected, rtol=1e-5, atol=1e-5)


def test_fully_masked_rows_give_zero_like_the_isnan_where_wrapper(rng):
    mod = attention_module(seq=16)
    q, kt, v, bias = _attention_inputs(rng, seq=16)
    bias[...] = -np.inf  # every key masked: softmax is NaN, the wrapper turns it into 0
    expected = build_on_host(mod)([q, kt, v, bias])[0]
    assert not expected.any()
    for fast_math in (True, False):
        out = build_on_host(FuseAttention(fast_math=fast_math)(mod))([q, kt, v, bias])[0]
        np.testing.assert_array_equal(out, expected)


def test_fully_masked_rows_give_zero_when_the_keys_are_padded_to_whole_vectors(rng):
    """13 keys run as 16: the padding keys must not turn a row whose real keys are all masked into
    a finite softmax over the padding."""
    mod = attention_module(seq=13, dim=6, bias_rows=13)
    q, kt, v, _ = _attention_inputs(rng, seq=13, dim=6)
    bias = np.full((1, 1, 13, 13), -np.inf, dtype="float32")
    bias[..., :4, :] = 0.0  # the first rows keep every key, the others none
    expected = build_on_host(mod)([q, kt, v, bias])[0]
    for fast_math in (True, False):
        out = build_on_host(FuseAttention(fast_math=fast_math, lanes=16, registers=32)(mod))([q, kt, v, bias])[0]
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_sequence_not_a_multiple_of_the_vector_width(rng):
    mod = attention_module(seq=13, dim=6)
    after = FuseAttention()(mod)
    assert "R.nn.softmax" not in _ops(after)
    inputs = _attention_inputs(rng, seq=13, dim=6)
    np.testing.assert_allclose(build_on_host(after)(inputs)[0], build_on_host(mod)(inputs)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lanes", [8, 16])
@pytest.mark.parametrize("seq, heads, dim", [(197, 3, 64), (77, 6, 24), (65, 2, 48), (25, 2, 80)])
def test_odd_lengths_keep_the_fused_schedule_and_the_numbers(rng, seq, heads, dim, lanes):
    """Lengths with no row block of 4 (ViT's 197 tokens, a CLIP's 77) had broken the kernel's schedule
    ("loops are not in a chain") whenever the head was whole vectors, leaving the naive kernel; their
    rows are now padded to blocks of 8 inside the kernel and the output cut back."""
    from edgecc.schedules.common import FAILURES_ATTR

    mod = attention_module(seq=seq, heads=heads, dim=dim)
    after = FuseAttention(lanes=lanes, registers=2 * lanes)(mod)
    kernel = next(f for gv, f in after.functions_items() if gv.name_hint == "fused_attention")
    assert FAILURES_ATTR not in (kernel.attrs or {}) and kernel.attrs["tirx.is_scheduled"]
    # the keys run as whole vectors too: the scores' and exps' innermost loops are vectors
    for block_name in ("attn_scores_update", "attn_exp"):
        assert _innermost_kind(kernel, block_name) == tvm.tirx.ForKind.VECTORIZED, block_name
    inputs = _attention_inputs(rng, seq=seq, heads=heads, dim=dim)
    np.testing.assert_allclose(build_on_host(after)(inputs)[0], build_on_host(mod)(inputs)[0], rtol=1e-5, atol=1e-5)


def test_padded_rows_read_a_per_row_bias_only_inside_the_sequence(rng):
    """A [S, S] bias (relative positions, LeViT's learned bias) with rows padded inside the kernel."""
    mod = head_split_module(seq=77, heads=6, dim=24, scale_where="scores")
    after = FuseAttention(lanes=8, registers=16)(mod)
    inputs = [rng.standard_normal((1, 77, 144)).astype("float32") for _ in range(3)]
    bias = rng.standard_normal((1, 1, 77, 77)).astype("float32")
    expected = build_on_host(mod)([*inputs, bias])[0]
    np.testing.assert_allclose(build_on_host(after)([*inputs, bias])[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("heads, packed_per_task", [(3, False), (8, True)])
def test_few_heads_pack_keys_and_values_once_per_head_before_the_row_blocks(rng, heads, packed_per_task):
    """With fewer heads than tasks the row blocks are the parallel tasks; each had packed the
    head's whole K^T and V again. The packs now run first, parallel over heads."""
    from tvm import s_tir

    mod = attention_module(seq=197, heads=heads, dim=64)
    after = FuseAttention(lanes=16, registers=32)(mod)
    kernel = next(f for gv, f in after.functions_items() if gv.name_hint == "fused_attention")
    sch = s_tir.Schedule(kernel)
    pack_outer = sch.get_loops(sch.get_sblock("attn_kt_pack"))[0]
    scores_outer = sch.get_loops(sch.get_sblock("attn_scores_update"))[0]
    assert sch.get(pack_outer).kind == tvm.tirx.ForKind.PARALLEL
    assert sch.get(pack_outer).same_as(sch.get(scores_outer)) == packed_per_task
    inputs = _attention_inputs(rng, seq=197, heads=heads, dim=64)
    np.testing.assert_allclose(build_on_host(after)(inputs)[0], build_on_host(mod)(inputs)[0], rtol=1e-5, atol=1e-5)


def _innermost_kind(kernel, block_name: str):
    from tvm import s_tir

    sch = s_tir.Schedule(kernel)
    return sch.get(sch.get_loops(sch.get_sblock(block_name))[-1]).kind


def _unrolled_rows(kernel, block_name: str) -> list[int]:
    from tvm import s_tir, tirx

    sch = s_tir.Schedule(kernel)
    loops = [sch.get(loop) for loop in sch.get_loops(sch.get_sblock(block_name))]
    return [int(loop.extent) for loop in loops if loop.kind == tirx.ForKind.UNROLLED and int(loop.extent) > 1]


def test_register_tiles_grow_with_the_targets_vector_registers(rng):
    """With AVX-512's 32 registers (16 lanes) a 36-wide head (MobileViT-S's) gets 8 rows x 3 value
    vectors and 4 rows x 4 key vectors of accumulators; with AVX2's 16, 4 x 3 and 2 x 4: same numbers."""
    mod = attention_module(heads=4, seq=64, dim=36)
    inputs = _attention_inputs(rng, seq=64, heads=4, dim=36)
    expected = build_on_host(mod)(inputs)[0]
    tiles = {}
    for registers in (16, 32):
        after = FuseAttention(lanes=16, registers=registers)(mod)
        kernel = next(f for gv, f in after.functions_items() if gv.name_hint == "fused_attention")
        tiles[registers] = tuple(_unrolled_rows(kernel, f"attn_{b}_update") for b in ("weighted", "scores"))
        np.testing.assert_allclose(build_on_host(after)(inputs)[0], expected, rtol=1e-5, atol=1e-5)
    assert tiles == {16: ([4, 3], [2, 4]), 32: ([8, 3], [4, 4])}


def test_modules_without_attention_are_left_alone(rng):
    mod, _ = dense_module(rng)
    fuse = FuseAttention()
    after = fuse(mod)
    assert fuse.stats.attentions_fused == 0
    assert after.same_as(mod)


def _amx_bf16():
    from edgecc.schedules.matmul_amx import tile_instruction
    from edgecc.targets import load_target

    return tile_instruction(load_target("host"), "bf16") is not None


@pytest.mark.skipif(not _amx_bf16(), reason="this CPU (or its Linux) has no AMX-BF16 tiles")
def test_bf16_tiles_compute_both_products_on_amx_within_bf16_rounding(rng):
    from edgecc.schedules.attention import uses_tiles
    from edgecc.targets import load_target

    host = load_target("host").tvm()
    heads, seq, dim = 2, 64, 32
    mod = attention_module(heads=heads, seq=seq, dim=dim)
    fuse = FuseAttention(lanes=16, tiles="bf16")
    after = fuse(mod)
    kernel = next(f for gv, f in after.functions_items() if gv.name_hint == "fused_attention")
    assert uses_tiles(kernel) == "bf16" and fuse.stats.on_tiles == {"bf16": 1}
    assert "BF16 on AMX" in fuse.stats.summary()
    inputs = _attention_inputs(rng, seq=seq, heads=heads, dim=dim)
    expected = build_on_host(mod)(inputs)[0]
    got = build_on_host(after, host)(inputs)[0]
    # Q, K, V and the probabilities rounded to bf16 (8 significant bits), sums in FP32
    assert np.abs(got - expected).max() <= 3e-2 * np.abs(expected).max()
    assert np.abs(got - expected).max() > 0  # it did round: not the FP32 kernel
    # a head dim the tiles do not fit (8: not a multiple of 32) keeps the FP32 kernel, and says so
    narrow = FuseAttention(lanes=16, tiles="bf16")
    kernel = next(f for gv, f in narrow(attention_module()).functions_items() if gv.name_hint == "fused_attention")
    assert not uses_tiles(kernel) and not narrow.stats.on_tiles and "1 in FP32" in narrow.stats.summary()


def _amx_int8():
    from edgecc.schedules.matmul_amx import tile_instruction
    from edgecc.targets import load_target

    return tile_instruction(load_target("host"), "int8") is not None


def _vnni():
    from edgecc.schedules.matmul_dot import VPDPBUSD, target_features
    from edgecc.targets import load_target

    return VPDPBUSD.feature in target_features(load_target("host"))


def _int8_attention_reference(q, kt, v, bias):
    def codes(x, axis):
        scale = np.abs(x).max(axis=axis, keepdims=True) / 127
        return np.round(x / scale), scale

    (qi, qs), (ki, ks), (vi, vs) = codes(q, -1), codes(kt, -2), codes(v, -2)
    logits = (qi @ ki) * qs * ks + bias
    exps = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (np.round(exps * 255) @ vi) * vs / 255 / exps.sum(axis=-1, keepdims=True)


INT8_PRODUCTS = [
    pytest.param("int8", marks=pytest.mark.skipif(not _amx_int8(), reason="this CPU (or its Linux) has no AMX-INT8")),
    pytest.param("int8-vnni", marks=pytest.mark.skipif(not _vnni(), reason="this CPU has no AVX-512 VNNI")),
]
INT8_LABELS = {"int8": "INT8 on AMX tdpbssd / tdpbusd", "int8-vnni": "INT8 on vpdpbusd"}


@pytest.mark.parametrize("int8", INT8_PRODUCTS)
@pytest.mark.parametrize("dim", [32, 64])  # 32: the head dim zero-padded to one 64-byte AMX tile row
def test_int8_products_are_that_integer_math_within_int8_rounding(rng, dim, int8):
    from edgecc.schedules.attention import uses_tiles
    from edgecc.targets import load_target

    host = load_target("host").tvm()
    heads, seq = 2, 64
    mod = attention_module(heads=heads, seq=seq, dim=dim)
    q, kt, v, bias = _attention_inputs(rng, seq=seq, heads=heads, dim=dim)
    inputs = [q * dim**-0.25, kt * dim**-0.25, v, bias]  # logits of unit spread, as 1/sqrt(d) gives
    expected = build_on_host(mod)(inputs)[0]
    results = {}
    for precision in (int8, "bf16"):
        fuse = FuseAttention(lanes=16, tiles=precision)  # untimed: INT8 wherever it fits
        after = fuse(mod)
        kernel = next(f for gv, f in after.functions_items() if gv.name_hint == "fused_attention")
        if precision == "bf16" and (dim % 32 or not _amx_bf16()):
            continue
        assert uses_tiles(kernel) == precision and fuse.stats.on_tiles == {precision: 1}
        results[precision] = build_on_host(after, host)(inputs)[0]
        if precision == int8:
            assert INT8_LABELS[int8] in fuse.stats.summary()
    errors = {p: np.linalg.norm(r - expected) / np.linalg.norm(expected) for p, r in results.items()}
    # Q, K, V as 127 steps of their row / key / column maxima, probabilities as 255ths: coarser than
    # bf16's 8 significant bits, and still within 2% (RMS) of the output
    assert errors.get("bf16", 0) < errors[int8] < 2e-2
    # and it is that integer math (bench/int8_attention_accuracy.py's), up to float rounding
    simulated = _int8_attention_reference(*inputs)
    assert np.linalg.norm(results[int8] - simulated) / np.linalg.norm(simulated) < 0.1 * errors[int8]


@pytest.mark.parametrize(
    "int8, rival",
    [
        pytest.param("int8", "bf16", marks=pytest.mark.skipif(not _amx_int8(), reason="this CPU has no AMX-INT8")),
        pytest.param("int8-vnni", "fp32", marks=pytest.mark.skipif(not _vnni(), reason="this CPU has no AVX-512 VNNI")),
    ],
)
def test_int8_attention_is_kept_only_where_it_times_faster_than_its_rival(rng, int8, rival):
    from edgecc.schedules.attention import uses_tiles
    from edgecc.targets import load_target

    host = load_target("host").tvm()
    mod = attention_module(heads=2, seq=64, dim=64)
    fuse = FuseAttention(lanes=16, tiles=int8, timing_target=host)
    after = fuse(mod)
    (timing,) = fuse.stats.tile_timings
    assert timing["int8"] == int8 and timing["attentions"] == 1
    assert timing["int8_us"] > 0 and timing[f"{rival}_us"] > 0
    faster = int8 if timing["int8_us"] < timing[f"{rival}_us"] else rival
    assert timing["kept"] == faster
    kernel = next(f for gv, f in after.functions_items() if gv.name_hint == "fused_attention")
    assert (uses_tiles(kernel) or "fp32") == faster
    assert fuse.stats.on_tiles == ({} if faster == "fp32" else {faster: 1})
    summary = fuse.stats.summary()
    assert f"INT8 against {rival.upper()} timed here" in summary and f"{faster} kept" in summary
    q, kt, v, bias = _attention_inputs(rng, seq=64, heads=2, dim=64)
    # logits of unit spread, as 1/sqrt(d) gives (and as the INT8 accuracy test feeds): with unscaled
    # ones the softmax is far more peaked than a model's, and this check failed whenever INT8 won
    inputs = [q * 64**-0.25, kt * 64**-0.25, v, bias]
    expected = build_on_host(mod)(inputs)[0]
    np.testing.assert_allclose(build_on_host(after, host)(inputs)[0], expected, atol=3e-2 * np.abs(expected).max())


def test_vnni_products_need_whole_vectors_of_keys_and_values():
    from edgecc.schedules.attention import uses_tiles

    for seq, dim, fits in ((64, 32, True), (24, 32, False), (64, 40, False)):  # 24 keys, 40 values: no whole vectors
        fuse = FuseAttention(lanes=16, tiles="int8-vnni")
        kernel = next(
            f
            for gv, f in fuse(attention_module(heads=2, seq=seq, dim=dim)).functions_items()
            if gv.name_hint == "fused_attention"
        )
        assert (uses_tiles(kernel) == "int8-vnni") == fits


def test_attention_goes_on_the_tiles_only_for_bf16_int8_and_mixed_on_an_amx_cpu():
    from edgecc.options import CompileOptions
    from edgecc.passes.attention.fuse_attention import attention_on_tiles
    from edgecc.targets import load_target

    host, pi5 = load_target("host"), load_target("raspberry-pi-5")
    for precision in ("fp32", "fp16"):
        assert not attention_on_tiles(CompileOptions(precision=precision), host)
    for precision in ("bf16", "mixed"):
        assert attention_on_tiles(CompileOptions(precision=precision), host) == ("bf16" if _amx_bf16() else None)
    int8_tiles = "int8" if _amx_int8() else "int8-vnni" if _vnni() else "bf16" if _amx_bf16() else None
    assert attention_on_tiles(CompileOptions(precision="int8"), host) == int8_tiles
    for precision in ("bf16", "int8", "mixed"):
        assert not attention_on_tiles(CompileOptions(precision=precision, target="raspberry-pi-5"), pi5)
        assert not attention_on_tiles(CompileOptions(precision=precision, fusion=False), host)


@pytest.mark.skipif(not _amx_bf16(), reason="this CPU (or its Linux) has no AMX-BF16 tiles")
def test_a_tile_schedule_that_fails_keeps_the_fp32_kernel_and_says_why(rng, monkeypatch):
    from edgecc.schedules import attention_amx
    from edgecc.schedules.attention import uses_tiles
    from edgecc.schedules.common import FAILURES_ATTR

    def broken(*args, **kwargs):
        raise RuntimeError("tensorize: no match")

    monkeypatch.setattr(attention_amx, "schedule_products", broken)
    mod = attention_module(heads=2, seq=64, dim=32)
    fuse = FuseAttention(lanes=16, tiles="bf16")
    after = fuse(mod)
    kernel = next(f for gv, f in after.functions_items() if gv.name_hint == "fused_attention")
    assert not uses_tiles(kernel) and fuse.stats.tile_failures == 1
    assert "1 in FP32 (the tile schedule failed" in fuse.stats.summary()
    assert "tensorize: no match" in str(kernel.attrs[FAILURES_ATTR])
    assert kernel.attrs["tirx.is_scheduled"]  # the FP32 kernel's own schedule, not the naive loops
    inputs = _attention_inputs(rng, seq=64, heads=2, dim=32)
    np.testing.assert_allclose(build_on_host(after)(inputs)[0], build_on_host(mod)(inputs)[0], rtol=1e-5, atol=1e-5)
