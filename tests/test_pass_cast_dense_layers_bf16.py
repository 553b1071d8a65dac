"""BF16 dense layers (edgecc/passes/cast_dense_layers_bf16.py) on AVX512-BF16, built for this machine."""

import shutil
import subprocess

import ml_dtypes
import numpy as np
import pytest
import tvm

from edgecc.options import CompileOptions
from edgecc.passes import pass_description
from edgecc.passes.precision import precision_passes
from edgecc.passes.precision.cast_dense_layers_bf16 import CastDenseLayersBf16, cast_dense_layers_bf16
from edgecc.schedules import vector_lanes
from edgecc.schedules.matmul_dot import dot_instruction
from edgecc.schedules.weight_packing import PACKED_ATTR
from edgecc.targets import load_target

from fixtures_precision import build_for_host as _build
from fixtures_precision import cosine as _cosine
from fixtures_precision import dense_module, reference_dense

HOST = load_target("host")
BF16 = dot_instruction(HOST, "bf16")
needs_bf16 = pytest.mark.skipif(BF16 is None, reason="this CPU has no AVX512-BF16 (vdpbf16ps)")


def _bf16(array):
    return array.astype(ml_dtypes.bfloat16).astype(np.float32)


@needs_bf16
def test_dense_layers_run_on_vdpbf16ps_and_match_the_bf16_rounded_model(rng, tmp_path):
    mod, weights = dense_module(rng, tokens=16, hidden=64, out=128)
    after, stats = cast_dense_layers_bf16(mod, BF16, vector_lanes(HOST))
    assert stats.bf16_layers == ("dense_1", "dense_2") and stats.embedding_tables == 1 and stats.rounded_inputs == 2
    scheduled, run = _build(after)
    packed = [
        tuple(int(v) for v in f.attrs[PACKED_ATTR][0])
        for _, f in scheduled.functions_items()
        if isinstance(f, tvm.tirx.PrimFunc) and f.attrs and PACKED_ATTR in f.attrs
    ]
    assert len(packed) == 2 and all(entry[3] == 2 for entry in packed)  # [N/T, K/2, T, 2] bf16 panels
    ids = rng.integers(0, 200, (1, 16)).astype("int64")
    rounded = reference_dense(ids, weights, transform=lambda name, w: _bf16(w))  # weights rounded only
    actual = run(ids)
    assert _cosine(actual, reference_dense(ids, weights)) > 0.9999
    np.testing.assert_allclose(actual, rounded, atol=0.01 * np.abs(rounded).max())


@needs_bf16
def test_the_host_build_holds_its_bf16_instruction(rng, tmp_path):
    """vdpbf16ps, inlined; or on a CPU with AMX the tiles' tdpbf16ps (this layer fits them)."""
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    from edgecc.backends import backend_for

    mod, _ = dense_module(rng, tokens=16, hidden=64, out=128)
    after, _ = cast_dense_layers_bf16(mod, BF16, vector_lanes(HOST))
    scheduled, _ = _build(after)
    executable = backend_for(HOST).build(scheduled, HOST).executable
    executable.export_library(str(tmp_path / "m.so"))
    listing = subprocess.run(["objdump", "-d", str(tmp_path / "m.so")], capture_output=True, text=True).stdout
    if BF16.name == "tdpbf16ps":
        assert "tdpbf16ps" in listing and "ldtilecfg" in listing
    else:
        assert "vdpbf16ps" in listing and "edgecc_dpbf16ps" not in listing  # inlined, not called


def test_a_target_without_bf16_arithmetic_says_so_and_stays_fp32(rng):
    pi5 = load_target("raspberry-pi-5")
    (step,) = precision_passes(CompileOptions(precision="bf16", target="raspberry-pi-5"), pi5)
    assert pass_description(step) == "cast_dense_layers_bf16 (no bf16 arithmetic on target: compiled as fp32)"
    mod, _ = dense_module(rng)
    assert step(mod).same_as(mod)
    assert step.stats.instruction is None and "no BF16 arithmetic" in step.stats.summary()
    assert step.stats.bf16_math_layers == 0


@needs_bf16
def test_step_times_bf16_against_fp32_and_lists_what_it_kept(rng):
    mod, _ = dense_module(rng, tokens=16, hidden=64, out=128)
    step = CastDenseLayersBf16(BF16, vector_lanes(HOST), HOST, timed=True)
    step(mod)
    stats = step.stats
    assert len(stats.timings) == 2 and all(t["fp32_us"] > 0 and t["bf16_us"] > 0 for t in stats.timings)
    slower = {name for t in stats.timings if t["kept"] == "fp32" for name in t["layers"]}
    assert slower == {f.layer for f in stats.fallbacks}
    assert set(stats.bf16_layers) | slower == {"dense_1", "dense_2"}
