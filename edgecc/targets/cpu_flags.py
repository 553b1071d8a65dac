"""The host CPU's instruction-set features as the kernel reports them, in LLVM's names.

LLVM names the host CPU from its family and model number (`llvm_get_system_cpu`), and a CPU name
implies a fixed feature list. A virtual machine may report a model number that is not the chip it
runs on: a Xeon with AMX, AVX512-BF16 and AVX512-FP16 seen here reports model 167, which LLVM calls
`rocketlake`, a CPU with none of the three. Compiling for the name alone would then leave
the BF16 and FP16 instructions unused and, the other way round, a name could promise an instruction
that the hypervisor hides. So the host target adds what /proc/cpuinfo's flags have and the name
lacks, and removes what the name claims and the flags lack (for the features edgecc's kernels pick
their instructions by).

EDGECC_HOST_CPU=<LLVM CPU name> pins the host target to that CPU instead: its name and exactly LLVM's
feature list for it, with no corrections, so `host` compiles, picks precisions and schedules as that
CPU would. An older class's code runs on a newer CPU, which is how CI proves the AVX2 kernels on an
AVX-512 or AMX machine; a name LLVM does not know, or a CPU whose instructions this one lacks (AVX-512
code on an AVX2 CPU would stop with an illegal instruction), is refused.
"""

from __future__ import annotations

import difflib
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from edgecc.errors import TargetError

PIN_VARIABLE = "EDGECC_HOST_CPU"


class PinnedCpuNotRunnable(TargetError):
    """EDGECC_HOST_CPU names a CPU whose instructions this one lacks: a class this machine cannot
    prove (tests pinned to it are skipped), unlike a name LLVM does not know (a mistake)."""


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

# LLVM feature -> /proc/cpuinfo flag of the instruction-set extensions code generation may use: a
# pinned CPU's features are checked against the flags through this table (LLVM's tuning features,
# "fast-gather" and the like, are not instructions and are not checked)
X86_INSTRUCTION_FLAGS = {
    "sse3": "pni",
    "ssse3": "ssse3",
    "sse4.1": "sse4_1",
    "sse4.2": "sse4_2",
    "sse4a": "sse4a",
    "popcnt": "popcnt",
    "cx16": "cx16",
    "sahf": "lahf_lm",
    "movbe": "movbe",
    "lzcnt": "abm",
    "bmi": "bmi1",
    "bmi2": "bmi2",
    "adx": "adx",
    "aes": "aes",
    "pclmul": "pclmulqdq",
    "sha": "sha_ni",
    "rdrnd": "rdrand",
    "rdseed": "rdseed",
    "xsave": "xsave",
    "xsaveopt": "xsaveopt",
    "xsavec": "xsavec",
    "xsaves": "xsaves",
    "clflushopt": "clflushopt",
    "clwb": "clwb",
    "avx": "avx",
    "gfni": "gfni",
    "vaes": "vaes",
    "vpclmulqdq": "vpclmulqdq",
    "avx512cd": "avx512cd",
    "avx512ifma": "avx512ifma",
    "avx512vbmi": "avx512vbmi",
    "avx512vbmi2": "avx512_vbmi2",
    "avx512bitalg": "avx512_bitalg",
    "avx512vpopcntdq": "avx512_vpopcntdq",
    "amx-fp16": "amx_fp16",
    "avxifma": "avx_ifma",
    "avxvnniint8": "avx_vnni_int8",
    "avxneconvert": "avx_ne_convert",
    **{feature: flag for flag, feature in X86_FLAGS.items()},
}
AARCH64_INSTRUCTION_FLAGS = {
    "neon": "asimd",
    "fp-armv8": "fp",
    "crc": "crc32",
    "aes": "aes",
    "sha2": "sha2",
    "lse": "atomics",
    "rdm": "asimdrdm",
    "rcpc": "lrcpc",
    "sve2": "sve2",
    **{feature: flag for flag, feature in AARCH64_FLAGS.items()},
}


@dataclass(frozen=True)
class HostCpu:
    name: str  # the LLVM CPU name the host target compiles for
    corrections: tuple[str, ...]  # `mattr` entries that make the name's features match this CPU's flags
    pinned: bool  # named by EDGECC_HOST_CPU rather than read from this machine


def host_cpu(machine: str | None = None) -> HostCpu:
    """The CPU the `host` target compiles for: EDGECC_HOST_CPU when set (checked: known to LLVM and
    runnable here, else TargetError), else this machine's, corrected to its flags."""
    from tvm.target import codegen

    machine = machine or platform.machine()
    pinned = os.environ.get(PIN_VARIABLE, "").strip()
    if pinned:
        check_pinned_cpu(pinned, _read_cpuinfo(), machine)
        return HostCpu(pinned, (), True)
    cpu = codegen.llvm_get_system_cpu()
    return HostCpu(cpu, tuple(host_feature_corrections(cpu, machine)), False)


def check_pinned_cpu(cpu: str, cpuinfo: str, machine: str) -> None:
    """TargetError unless LLVM knows `cpu` for this machine's architecture and this CPU (the flags of
    `cpuinfo`, the text of /proc/cpuinfo) has every instruction-set extension LLVM's `cpu` has."""
    from tvm.target import codegen

    triple = _triple(machine)
    if not codegen.llvm_is_valid_cpu(cpu, triple):
        import tvm

        known = [str(n) for n in codegen.llvm_get_cpu_archlist(tvm.target.Target({"kind": "llvm", "mtriple": triple}))]
        close = difflib.get_close_matches(cpu, known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "e.g. haswell, znver3, skylake-avx512, sapphirerapids"
        raise TargetError(
            f"{PIN_VARIABLE}={cpu}: LLVM {codegen.llvm_version_major()} knows no {machine} CPU of that name ({hint})"
        )
    flags = cpu_flags(cpuinfo)
    if not flags:
        return  # no readable flags (not Linux): the name is taken on trust
    table = AARCH64_INSTRUCTION_FLAGS if _is_aarch64(machine) else X86_INSTRUCTION_FLAGS
    named = _llvm_features(codegen, cpu, machine) or set()
    missing = sorted(feature for feature in named if feature in table and table[feature] not in flags)
    if missing:
        raise PinnedCpuNotRunnable(
            f"{PIN_VARIABLE}={cpu}: this CPU's /proc/cpuinfo flags lack {', '.join(missing)}, so code "
            f"compiled for {cpu} would stop with an illegal instruction here; pin an older class (haswell runs "
            f"on any x86 CPU with AVX2) or unset {PIN_VARIABLE}"
        )


def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _is_aarch64(machine: str) -> bool:
    return machine in ("aarch64", "arm64")


def _triple(machine: str) -> str:
    return "aarch64-linux-gnu" if _is_aarch64(machine) else "x86_64-linux-gnu"


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
    table = AARCH64_FLAGS if _is_aarch64(machine) else X86_FLAGS
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
    cpuinfo = _read_cpuinfo()
    return feature_corrections(cpu, cpuinfo, machine) if cpuinfo else []


def _llvm_features(codegen, cpu: str, machine: str) -> set[str] | None:
    import tvm

    try:
        target = tvm.target.Target({"kind": "llvm", "mcpu": cpu, "mtriple": _triple(machine)})
        return {str(f) for f in codegen.llvm_get_cpu_features(target)}
    except Exception:  # noqa: BLE001 - tvm raises its own types for a CPU name this LLVM does not know
        return None
