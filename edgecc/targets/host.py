"""The `host` target's facts read from this machine: LLVM CPU name, cores, FP32 peak."""

from __future__ import annotations

import platform
from dataclasses import replace
from pathlib import Path

from edgecc.targets import BoardFacts, Target


def detect_host(target: Target) -> Target:
    """Fill in this machine's CPU name, core count and a peak estimate for the `host` target."""
    from tvm.target import codegen

    from edgecc.threads import host_threads

    cpu = codegen.llvm_get_system_cpu()
    cores = host_threads()
    tvm_target = dict(target.tvm_target, mcpu=cpu, **{"num-cores": cores})
    ghz = _cpu_ghz()
    flops_per_cycle = _fp32_flops_per_cycle()
    peak = round(cores * ghz * flops_per_cycle, 1)
    board = _with_board(target.board, cores=cores, peak_gflops={"fp32": peak}, soc=_cpu_model_name())
    return replace(target, tvm_target=tvm_target, board=board, arch=platform.machine())


def _with_board(board: BoardFacts, **changes) -> BoardFacts:
    return replace(board, **changes)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpu_model_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpu_ghz() -> float:
    for line in _cpuinfo().splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":", 1)[1]) / 1000.0
    return 2.0


def _fp32_flops_per_cycle() -> int:
    # Two FMA ports of 8 lanes (AVX2) or 16 lanes (AVX-512), two flops per FMA.
    flags = next((ln for ln in _cpuinfo().splitlines() if ln.startswith("flags")), "")
    if "avx512f" in flags:
        return 64
    if "fma" in flags and "avx2" in flags:
        return 32
    return 8
