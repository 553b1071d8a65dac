import numpy as np
import pytest

from edgecc.errors import EdgeccError
from edgecc.passes.attention.pattern import count_attentions
from edgecc.passes.attention.rewrite_attention_sparse import RewriteAttentionSparse
from edgecc.passes.attention.sparse_pattern import SparsePattern, parse_sparse_attention
from edgecc.passes.precision.calibration import build_on_host

from fixtures_precision import attention_module, sparse_reference


def _inputs(rng, seq=32):
    q = rng.standard_normal((1, 2, seq, 8)).astype("float32")
    kt = rng.standard_normal((1, 2, 8, seq)).astype("float32")
    v = rng.standard_normal((1, 2, seq, 8)).astype("float32")
    bias = np.zeros((1, 1, 1, seq), dtype="float32")
    bias[..., -5:] = -1e4  # padding, like an attention mask
    return q, kt, v, bias


@pytest.mark.parametrize("block,neighbours,global_tokens", [(4, 1, 0), (4, 1, 2), (8, 0, 3), (5, 1, 2), (4, 1, 6)])
def test_sparse_kernel_matches_masked_attention(rng, block, neighbours, global_tokens):
    mod = attention_module()
    assert count_attentions(mod) == 1
    assert "(1, 2, 32, 32)" in mod.script(show_meta=False)  # the dense [S, S] scores
    after = RewriteAttentionSparse(SparsePattern(block, neighbours, global_tokens))(mod)
    text = after.script(show_meta=False)
    assert "(1, 2, 32, 32)" not in text  # no tensor of all query-key pairs is left
    if 32 % block == 0 and global_tokens < block:  # blocks tile the sequence: dense ops on blocks
        slots = (2 * neighbours + 1) * block + global_tokens
        slots += -slots % 16  # rows of slots padded to whole vectors
        assert f"(1, 2, {32 // block}, {block}, {slots})" in text and "sparse_attention" not in text
    else:  # otherwise the gather kernel
        assert "sparse_attention" in text and "R.nn.softmax" not in text and "R.matmul" not in text
    q, kt, v, bias = _inputs(rng)
    out = build_on_host(after)([q, kt, v, bias])[0]
    np.testing.assert_allclose(
        out, sparse_reference(q, kt, v, bias, block, neighbours, global_tokens), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("global_tokens", [0, 2])
def test_blocked_attention_applies_a_per_query_mask(rng, global_tokens):
    mod = attention_module(bias_rows=32)
    after = RewriteAttentionSparse(SparsePattern(4, 1, global_tokens))(mod)
    assert "(1, 2, 32, 32)" not in after.script(show_meta=False)
    q, kt, v, _ = _inputs(rng)
    bias = np.where(rng.random((1, 1, 32, 32)) < 0.2, -1e4, 0.0).astype("float32")
    bias[..., np.arange(32), np.arange(32)] = 0.0  # every query keeps itself
    out = build_on_host(after)([q, kt, v, bias])[0]
    np.testing.assert_allclose(out, sparse_reference(q, kt, v, bias, 4, 1, global_tokens), rtol=1e-4, atol=1e-5)


def test_summary_counts_rewrites_and_flops():
    rewrite = RewriteAttentionSparse(SparsePattern(block=8, neighbours=1))
    rewrite(attention_module(seq=64))
    assert rewrite.stats.attentions_rewritten == 1 and rewrite.stats.keys_per_query == 24
    assert rewrite.stats.attention_flops_dense == 4 * 2 * 64 * 64 * 8
    assert rewrite.stats.attention_flops_sparse == 4 * 2 * 64 * 24 * 8


def test_pattern_keeping_every_key_leaves_the_graph_alone():
    mod = attention_module(seq=16)
    rewrite = RewriteAttentionSparse(SparsePattern(block=8, neighbours=1))
    after = rewrite(mod)
    assert "sparse_attention" not in after.script(show_meta=False)
    assert rewrite.stats.attentions_rewritten == 0 and rewrite.stats.attentions_kept_dense == 1


def test_attention_flops_drop_with_sequence_length():
    pattern = parse_sparse_attention("window=64,global=2")
    assert pattern == SparsePattern(block=64, neighbours=1, global_tokens=2)
    ratios = [f["dense"] / f["sparse"] for f in (pattern.attention_flops(12, s, 64) for s in (512, 1024))]
    assert 2.5 < ratios[0] < ratios[1] and ratios[1] > 5


@pytest.mark.parametrize(
    "text,message",
    [
        ("window=0", "positive"),
        ("window=64,block=8", "exactly one"),
        ("stride=4", "unknown key"),
        ("window=sixty", "integer"),
        ("window=64,neighbours=2", "goes with block="),
        ("global=2", "exactly one"),
        ("window", "key=value"),
        ("window=8,window=9", "twice"),
    ],
)
def test_bad_specs_say_what_is_wrong(text, message):
    with pytest.raises(EdgeccError, match=message):
        parse_sparse_attention(text)


def test_passes_follow_options():
    from edgecc.options import CompileOptions
    from edgecc.passes import graph_passes, pass_name
    from edgecc.targets import load_target

    passes = graph_passes(
        CompileOptions(sparse_attention="block=32,neighbours=2,global=1", fusion=False, fast_math=False),
        load_target("host"),
    )
    sparse = [p for p in passes if pass_name(p) == "rewrite_attention_sparse"]
    assert len(sparse) == 1 and sparse[0].pattern == SparsePattern(32, 2, 1)
    # without the option only the layout passes (no-ops on a model without convolutions or odd widths) and
    # clamp_gather_indices, which every compile ends with, remain
    without = graph_passes(CompileOptions(fusion=False, fast_math=False), load_target("host"))
    assert [pass_name(p) for p in without] == [
        "convert_convs_to_nhwc",
        "pad_channels_to_vectors",
        "pad_matmul_columns",
        "clamp_gather_indices",
    ]


@pytest.mark.parametrize("block,global_tokens", [(4, 0), (4, 2), (5, 0)])
def test_a_query_whose_window_is_all_padding_gives_zeros_not_nan(rng, block, global_tokens):
    """transformers masks padding with -inf and guards softmax with where(isnan): so must we."""
    after = RewriteAttentionSparse(SparsePattern(block, 1, global_tokens))(attention_module())
    q, kt, v, _ = _inputs(rng)
    bias = np.zeros((1, 1, 1, 32), "float32")
    bias[..., 12:] = -np.inf  # 20 padding tokens: the last blocks see only padding
    out = build_on_host(after)([q, kt, v, bias])[0]
    assert np.isfinite(out).all()  # padding queries get a finite value nobody reads; real ones below
    keep = sparse_reference(q, kt, v, np.where(np.isinf(bias), -1e30, bias), block, 1, global_tokens)
    np.testing.assert_allclose(out[:, :, :12], keep[:, :, :12], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("global_tokens", [0, 2])
def test_fused_block_attention_reads_keys_through_the_slot_index(rng, global_tokens):
    from edgecc.passes.attention.fuse_attention import FuseAttention

    sparse = RewriteAttentionSparse(SparsePattern(4, 1, global_tokens))(attention_module())
    assert sparse.script(show_meta=False).count("R.take(") == 3  # K, V and the mask bias
    fused = FuseAttention()(sparse)
    text = fused.script(show_meta=False)
    # the key/value gathers are inside the fused kernel now (an index-table argument), not copies
    assert "R.take(" in text and text.count("R.take(") == 1  # only the mask bias is still gathered
    assert "kt_index0" in text and "v_index0" in text
    q, kt, v, bias = _inputs(rng)
    out = build_on_host(fused)([q, kt, v, bias])[0]
    np.testing.assert_allclose(out, sparse_reference(q, kt, v, bias, 4, 1, global_tokens), rtol=1e-4, atol=1e-5)
