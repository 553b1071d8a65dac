"""The host CPU's instruction-set features as the kernel reports them, in LLVM's names.

LLVM names the host CPU from its family and model number (`llvm_get_system_cpu`), and a CPU name
implies a fixed feature list. A virtual machine may report a model number that is not the chip it
runs on: a Xeon with AMX, AVX512-BF16 and AVX512-FP16 seen here reports model 167, which LLVM calls
`rocketlake`, a CPU with none of the three. Compiling for the name alone would then leave
the BF16 and FP16 instructions unused and, the other way round, a name could promise an instruction
that the hypervisor hides. So the host target adds what /proc/cpuinfo's flags have and the name
lacks, and removes what the name claims and the flags lack (for the features edgecc's kernels pick
their instructions by).
"""

from __future__ import annotations

from pathlib import Path

# /proc/cpuinfo flag -> LLVM feature, for the features the schedule rules and precision passes read
X86_FLAGS = {
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512dq": "avx512dq",
    "avx512vl": "avx512vl",
    "avx512_vnni": "avx512vnni",
    "avx_vnni": "avxvnni",
    "avx512_bf16": "avx512bf16",
    "avx512_fp16": "avx512fp16",
    "amx_tile": "amx-tile",
    "amx_bf16": "amx-bf16",
    "amx_int8": "amx-int8",
}
AARCH64_FLAGS = {
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "bf16": "bf16",
    "asimdhp": "fullfp16",
    "sve": "sve",
}


def cpu_flags(cpuinfo: str) -> set[str]:
    """The first 'flags' (x86) or 'Features' (aarch64) line's words; empty when there is none."""
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")) and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def feature_corrections(cpu: str, cpuinfo: str, machine: str) -> list[str]:
    """LLVM `mattr` entries (+feature / -feature) that make the target for LLVM CPU `cpu` match the
    flags of `cpuinfo` (the text of /proc/cpuinfo); [] when the flags are unreadable or agree."""
    from tvm.target import codegen

    flags = cpu_flags(cpuinfo)
    table = AARCH64_FLAGS if machine in ("aarch64", "arm64") else X86_FLAGS
    if not flags:
        return []
    named = _llvm_features(codegen, cpu, machine)
    if named is None:
        return []
    corrections = []
    for flag, feature in table.items():
        has = flag in flags
        if has and feature not in named:
            corrections.append(f"+{feature}")
        elif not has and feature in named:
            corrections.append(f"-{feature}")
    return corrections


def host_feature_corrections(cpu: str, machine: str) -> list[str]:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return feature_corrections(cpu, cpuinfo, machine)


def _llvm_features(codegen, cpu: str, machine: str) -> set[str] | None:
    import tvm

    triple = "aarch64-linux-gnu" if machine in ("aarch64", "arm64") else "x86_64-linux-gnu"
    try:
        target = tvm.target.Target({"kind": "llvm", "mcpu": cpu, "mtriple": triple})
        return {str(f) for f in codegen.llvm_get_cpu_features(target)}
    except Exception:  # noqa: BLE001 - tvm raises its own types for a CPU name this LLVM does not know
        return None
