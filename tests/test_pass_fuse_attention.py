import numpy as np
import pytest

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


def test_sequence_not_a_multiple_of_the_vector_width(rng):
    mod = attention_module(seq=13, dim=6)
    after = FuseAttention()(mod)
    assert "R.nn.softmax" not in _ops(after)
    inputs = _attention_inputs(rng, seq=13, dim=6)
    np.testing.assert_allclose(build_on_host(after)(inputs)[0], build_on_host(mod)(inputs)[0], rtol=1e-5, atol=1e-5)


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
    fuse = FuseAttention(lanes=16, tiles=True)
    after = fuse(mod)
    kernel = next(f for gv, f in after.functions_items() if gv.name_hint == "fused_attention")
    assert uses_tiles(kernel) and fuse.stats.on_tiles == 1 and "BF16 on AMX" in fuse.stats.summary()
    inputs = _attention_inputs(rng, seq=seq, heads=heads, dim=dim)
    expected = build_on_host(mod)(inputs)[0]
    got = build_on_host(after, host)(inputs)[0]
    # Q, K, V and the probabilities rounded to bf16 (8 significant bits), sums in FP32
    assert np.abs(got - expected).max() <= 3e-2 * np.abs(expected).max()
    assert np.abs(got - expected).max() > 0  # it did round: not the FP32 kernel
    # a head dim the tiles do not fit (8: not a multiple of 32) keeps the FP32 kernel, and says so
    narrow = FuseAttention(lanes=16, tiles=True)
    kernel = next(f for gv, f in narrow(attention_module()).functions_items() if gv.name_hint == "fused_attention")
    assert not uses_tiles(kernel) and narrow.stats.on_tiles == 0 and "1 in FP32" in narrow.stats.summary()


def test_attention_goes_on_the_tiles_only_for_bf16_and_int8_on_an_amx_cpu():
    from edgecc.options import CompileOptions
    from edgecc.passes.attention.fuse_attention import attention_on_tiles
    from edgecc.targets import load_target

    host, pi5 = load_target("host"), load_target("raspberry-pi-5")
    for precision in ("fp32", "fp16", "mixed"):
        assert not attention_on_tiles(CompileOptions(precision=precision), host)
    for precision in ("bf16", "int8"):
        assert attention_on_tiles(CompileOptions(precision=precision), host) == _amx_bf16()
        assert not attention_on_tiles(CompileOptions(precision=precision, target="raspberry-pi-5"), pi5)
        assert not attention_on_tiles(CompileOptions(precision=precision, fusion=False), host)
