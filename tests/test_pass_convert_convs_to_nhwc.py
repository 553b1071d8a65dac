"""convert_convs_to_nhwc and pad_channels_to_vectors on a small conv net written as PyTorch exports one
(NCHW, BatchNorm, a token-mixing detour through [pixels, channels] and back): the layout changes only
at the model's edges, odd channel counts become whole vectors, and the numbers stay the same."""

import numpy as np
import tvm

from edgecc.passes.convert_convs_to_nhwc import ConvertConvsToNHWC
from edgecc.passes.expand_sigmoid import ExpandSigmoid
from edgecc.passes.pad_channels_to_vectors import PadChannelsToVectors
from edgecc.passes.precision.calibration import build_on_host

CHANNELS, WIDE = 28, 40  # neither a whole number of 16-lane vectors


def small_conv_net(rng):
    from tvm import relax

    op = relax.op

    def c(*shape, scale=0.3):
        return relax.const((rng.standard_normal(shape) * scale).astype("float32"))

    def conv(x, weight, stride=1, padding=0, groups=1):
        return op.nn.conv2d(x, weight, strides=stride, padding=padding, groups=groups)

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 3, 16, 16), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            h = bb.emit(op.add(conv(x, c(CHANNELS, 3, 3, 3), stride=2, padding=1), c(1, CHANNELS, 1, 1)))
            stats = [
                relax.const(v.astype("float32"))
                for v in (
                    rng.uniform(0.5, 1.5, CHANNELS),
                    rng.standard_normal(CHANNELS) * 0.1,
                    rng.standard_normal(CHANNELS) * 0.1,
                    rng.uniform(0.5, 1.5, CHANNELS),
                )
            ]
            h = bb.emit(op.nn.batch_norm(h, *stats, axis=1, epsilon=1e-5, training=False)[0])
            skip = bb.emit(op.nn.relu(h))
            h = bb.emit(op.add(conv(skip, c(CHANNELS, 1, 3, 3), padding=1, groups=CHANNELS), c(1, CHANNELS, 1, 1)))
            h = bb.emit(op.multiply(h, op.sigmoid(h)))  # SiLU
            h = bb.emit(op.add(conv(h, c(CHANNELS, CHANNELS, 1, 1)), skip))
            # tokens: NCHW -> [pixels, channels] -> matmul -> back to NCHW, scaled per channel
            tokens = bb.emit(op.reshape(op.permute_dims(h, [0, 2, 3, 1]), [64, CHANNELS]))
            mixed = bb.emit(op.add(op.matmul(tokens, c(CHANNELS, CHANNELS)), c(CHANNELS)))
            back = bb.emit(op.permute_dims(op.reshape(mixed, [1, 8, 8, CHANNELS]), [0, 3, 1, 2]))
            h = bb.emit(op.add(h, op.multiply(c(CHANNELS, 1, 1), back)))
            h = bb.emit(op.add(conv(h, c(WIDE, CHANNELS, 1, 1)), c(1, WIDE, 1, 1)))
            pooled = bb.emit(op.mean(h, axis=[2, 3]))
            out = bb.emit_output(op.matmul(pooled, c(WIDE, 10)))
        bb.emit_func_output(out)
    return bb.get()


def _calls(mod, name) -> list:
    from tvm import relax

    found = []
    relax.analysis.post_order_visit(
        mod["main"],
        lambda e: (
            found.append(e) if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) and e.op.name == name else None
        ),
    )
    return found


def _kernels(mod) -> list[str]:
    from tvm import relax

    lowered = tvm.transform.Sequential(
        [
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ]
    )(mod)
    return [gv.name_hint for gv, f in lowered.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]


def _run(mod, x):
    (out,) = build_on_host(mod)([x])
    return out


def test_convolutions_become_nhwc_with_transposes_only_at_the_edges_and_same_numbers(rng):
    before = small_conv_net(rng)
    convert = ConvertConvsToNHWC()
    after = convert(before)
    assert convert.stats.convs_converted == 4 and convert.stats.batch_norms_folded == 1
    assert convert.stats.transpose_pairs_cancelled >= 1  # the layer scale between tokens and NCHW
    assert all(
        call.attrs.data_layout == "NHWC" and call.attrs.kernel_layout == "HWIO"
        for call in _calls(after, "relax.nn.conv2d")
    )
    assert not _calls(after, "relax.nn.batch_norm")
    # the only activation transpose left is the model input's; weights were transposed at compile time
    transposes = [
        call for call in _calls(after, "relax.permute_dims") if not isinstance(call.args[0], tvm.ir.expr.Constant)
    ]
    assert len(transposes) == 1, [str(t) for t in transposes]
    assert sum("transpose" in k for k in _kernels(after)) == 1
    x = rng.standard_normal((1, 3, 16, 16)).astype("float32")
    np.testing.assert_allclose(_run(after, x), _run(before, x), rtol=1e-5, atol=1e-5)


def test_odd_channel_counts_are_padded_to_whole_vectors_and_the_result_is_exact(rng):
    nhwc = ConvertConvsToNHWC()(small_conv_net(rng))
    pad = PadChannelsToVectors(lanes=16)
    padded = pad(nhwc)
    assert pad.stats.ops_padded >= 5  # four convolutions and the token matmul
    widths = sorted({int(call.ty.shape[-1]) for call in _calls(padded, "relax.nn.conv2d")})
    assert widths == [32, 48]  # 28 -> 32, 40 -> 48 (16-lane vectors)
    # nothing needs the real channels alone: the pooled vector meets zero rows of the head's weight
    assert pad.stats.slices == 0 and [int(d) for d in padded["main"].ret_ty.shape] == [1, 10]
    x = rng.standard_normal((1, 3, 16, 16)).astype("float32")
    np.testing.assert_allclose(_run(padded, x), _run(nhwc, x), rtol=1e-6, atol=1e-6)
    # with 4 lanes (NEON) 28 and 40 are whole vectors already; only the 10-class head becomes 12
    neon = PadChannelsToVectors(lanes=4)
    neon_padded = neon(nhwc)
    assert sorted({int(call.ty.shape[-1]) for call in _calls(neon_padded, "relax.nn.conv2d")}) == [CHANNELS, WIDE]
    assert neon.stats.ops_padded == 1 and neon.stats.slices == 1


def test_sigmoid_becomes_exp_for_fast_math_with_the_same_numbers(rng):
    from tvm import relax

    mod = ConvertConvsToNHWC()(small_conv_net(rng))
    expand = ExpandSigmoid()
    expanded = expand(mod)
    assert expand.stats.sigmoids_expanded == 1 and not _calls(expanded, "relax.sigmoid")
    fast = relax.transform.FastMathTransform()(expanded)
    assert not _calls(fast, "relax.exp")  # fast_exp now, a polynomial LLVM vectorises
    x = rng.standard_normal((1, 3, 16, 16)).astype("float32")
    np.testing.assert_allclose(_run(fast, x), _run(mod, x), rtol=1e-5, atol=1e-5)
