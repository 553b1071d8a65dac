"""EDGECC_HOST_CPU pins the `host` target to an LLVM CPU name (edgecc/targets/cpu_flags.py): the target
compiles, detects features and chooses kernels as that CPU would, and runs here where this CPU has its
instructions; a name LLVM does not know, or a class this CPU cannot run, is refused in one line."""

import os
import platform
import subprocess
import sys

import pytest

from edgecc.errors import TargetError
from edgecc.targets import load_target
from edgecc.targets.cpu_flags import PIN_VARIABLE, PinnedCpuNotRunnable, check_pinned_cpu

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="the pinned classes below are x86 CPUs"
)

# flags of an AVX2-only CPU (a Zen 3 EPYC as /proc/cpuinfo lists them, trimmed to the instruction sets)
AVX2_ONLY = (
    "flags\t\t: fpu sse sse2 pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand "
    "lahf_lm abm sse4a bmi1 avx2 bmi2 rdseed adx clflushopt clwb sha_ni xsaveopt xsavec xsaves vaes vpclmulqdq\n"
)

# class -> (float32 lanes, INT8 instruction, BF16 instruction) the pinned host must choose
CLASSES = {
    "haswell": (8, "vpmaddubsw (avx2)", None),
    "skylake-avx512": (16, "vpmaddubsw (avx512bw)", None),
    "cooperlake": (16, "vpdpbusd (avx512vnni)", "vdpbf16ps (avx512bf16)"),
}


@pytest.mark.parametrize("cpu", list(CLASSES))
def test_a_pinned_host_chooses_lanes_and_instructions_as_that_cpu(pin_host_cpu, cpu):
    from edgecc.schedules import vector_lanes
    from edgecc.schedules.matmul_dot import dot_instruction

    pin_host_cpu(cpu)
    host = load_target("host")
    lanes, int8, bf16 = CLASSES[cpu]
    assert host.tvm_target["mcpu"] == cpu and "mattr" not in host.tvm_target  # LLVM's list, not this CPU's flags
    assert vector_lanes(host) == lanes
    assert dot_instruction(host).label == int8
    assert (dot_instruction(host, "bf16").label if dot_instruction(host, "bf16") else None) == bf16
    assert f"pinned to {cpu}" in host.board.soc and f"{PIN_VARIABLE}={cpu}" in host.board.sources["cpu"]


def test_an_avx2_pinned_int8_model_runs_here_on_vpmaddubsw_and_matches_fp32(pin_host_cpu, rng):
    """The pinned class's code is compiled and executed on this (newer) CPU: the whole INT8 path."""
    from edgecc.passes.precision.quantize_dense_layers_int8 import quantize_dense_layers_int8
    from edgecc.schedules import vector_lanes
    from edgecc.schedules.matmul_dot import dot_instruction

    from fixtures_precision import build_for_host, cosine, dense_module, reference_dense

    pin_host_cpu("haswell")
    host = load_target("host")
    ins = dot_instruction(host)
    mod, weights = dense_module(rng, tokens=16, hidden=64, out=128)
    after, stats = quantize_dense_layers_int8(mod, ins, vector_lanes(host))
    assert stats.instruction == "vpmaddubsw (avx2)" and len(stats.int8_layers) == 2
    _, run = build_for_host(after)
    ids = rng.integers(0, 200, (1, 16)).astype("int64")
    assert cosine(run(ids), reference_dense(ids, weights)) > 0.9995


def test_a_class_whose_instructions_this_cpu_lacks_is_refused():
    with pytest.raises(PinnedCpuNotRunnable, match="lack avx512bw, avx512cd, avx512dq, avx512f, avx512vl") as exc:
        check_pinned_cpu("skylake-avx512", AVX2_ONLY, "x86_64")
    assert "illegal instruction" in str(exc.value) and "haswell" in str(exc.value)
    check_pinned_cpu("haswell", AVX2_ONLY, "x86_64")  # an older class runs
    check_pinned_cpu("znver3", AVX2_ONLY, "x86_64")  # and the same one
    with pytest.raises(PinnedCpuNotRunnable, match="lack .*amx-tile"):
        check_pinned_cpu("sapphirerapids", AVX2_ONLY, "x86_64")
    no_avx2 = AVX2_ONLY.replace(" avx2", "").replace(" fma", "")
    with pytest.raises(PinnedCpuNotRunnable, match="lack avx2, .*fma"):
        check_pinned_cpu("haswell", no_avx2, "x86_64")


def test_a_name_llvm_does_not_know_is_refused_naming_the_close_ones():
    with pytest.raises(TargetError, match="knows no x86_64 CPU of that name \\(did you mean haswell") as exc:
        check_pinned_cpu("haswel", AVX2_ONLY, "x86_64")
    assert not isinstance(exc.value, PinnedCpuNotRunnable)  # a mistake, not a class to skip
    with pytest.raises(TargetError, match="knows no x86_64 CPU"):
        check_pinned_cpu("cortex-a72", AVX2_ONLY, "x86_64")


def test_the_cli_says_it_in_one_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "edgecc", "compile", "bert-tiny-test", "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, PIN_VARIABLE: "haswel"},
    )
    errors = [line for line in run.stderr.splitlines() if "error" in line]
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    assert len(errors) == 1 and "knows no x86_64 CPU of that name (did you mean haswell?)" in errors[0]
    assert not (tmp_path / "out").exists()
