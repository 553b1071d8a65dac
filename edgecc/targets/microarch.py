"""Arithmetic per cycle per core, by LLVM CPU name: what a host's compute peaks are derived from.

peak (GFLOP/s) = operations per cycle per core x cores x clock (GHz). Operations per cycle are
FMA pipes x vector lanes x 2 (a fused multiply-add is two operations); the dot-product
instructions do more per lane: AVX512-BF16 `vdpbf16ps` and Arm `bfdot` two bf16 products and
their sums per fp32 lane (2x fp32), VNNI `vpdpbusd` and Arm `sdot` four int8 products and their
sums per int32 lane (4x fp32), all issued on the same pipes. A precision missing from an entry
has no native instruction on that core (fp16 data is then converted and computed in fp32).
"""

from __future__ import annotations

from dataclasses import dataclass

AMD_ZEN5 = "AMD Software Optimization Guide for the AMD Zen 5 Microarchitecture (pub. 58455)"
AMD_ZEN4 = "AMD Software Optimization Guide for the AMD Zen 4 Microarchitecture (pub. 57647)"
AMD_ZEN3 = "AMD Software Optimization Guide for AMD Family 19h Processors (pub. 56665)"
AMD_ZEN2 = "AMD Software Optimization Guide for AMD Family 17h Models 30h+ (pub. 56305)"
AMD_ZEN1 = "AMD Software Optimization Guide for AMD Family 17h Processors (pub. 55723)"
INTEL = "Intel 64 and IA-32 Architectures Optimization Reference Manual"
ARM = "Arm Cortex/Neoverse Software Optimization Guide for that core"


@dataclass(frozen=True)
class CoreArithmetic:
    fp32: int  # FLOP per cycle per core
    fp16: int | None = None
    bf16: int | None = None
    int8: int | None = None
    datapath: str = ""  # the pipes and widths, in words
    source: str = ""

    def per_cycle(self) -> dict[str, int]:
        out = {"fp32": self.fp32}
        out.update({k: v for k, v in (("fp16", self.fp16), ("bf16", self.bf16), ("int8", self.int8)) if v})
        return out


def _x86(fp32: int, datapath: str, source: str, bf16: bool = False, int8: bool = False, fp16: bool = False):
    return CoreArithmetic(
        fp32,
        fp16=2 * fp32 if fp16 else None,
        bf16=2 * fp32 if bf16 else None,
        int8=4 * fp32 if int8 else None,
        datapath=datapath,
        source=source,
    )


def _arm(fp32: int, datapath: str, fp16: bool = True, dot: bool = True, bf16: bool = False):
    return CoreArithmetic(
        fp32,
        fp16=2 * fp32 if fp16 else None,
        bf16=2 * fp32 if bf16 else None,
        int8=4 * fp32 if dot else None,
        datapath=datapath,
        source=ARM,
    )


_AVX2_2FMA = "2 FMA pipes x 8 fp32 lanes (256-bit)"
_AVX512_2FMA = "2 FMA units x 16 fp32 lanes (512-bit)"
_AVX512_1FMA = "1 512-bit FMA unit (ports 0+1 fused) x 16 fp32 lanes, or 2 x 256-bit"
_NEON_2 = "2 FP/NEON pipes x 4 fp32 lanes (128-bit)"
_NEON_4 = "4 FP/NEON pipes x 4 fp32 lanes (128-bit)"

# Xeons with AMX (Sapphire, Emerald, Granite Rapids): bf16 and int8 peaks are the tiles' (one
# tdpbf16ps, 16 x 16 x 32 multiply-adds, per 16 cycles: 1024 FLOP/cycle; tdpbusd twice that), which
# edgecc.schedules.matmul_amx uses for dense layers
AMX_XEON = CoreArithmetic(
    64,
    fp16=128,
    bf16=1024,
    int8=2048,
    datapath=_AVX512_2FMA + "; AMX: 1 tile multiply (16 x 16 x 32 bf16 or 16 x 16 x 64 int8) per 16 cycles",
    source=INTEL,
)

TABLE: dict[str, CoreArithmetic] = {
    "znver1": _x86(16, "2 FMA pipes x 4 fp32 lanes (128-bit; 256-bit ops split in two)", AMD_ZEN1),
    "znver2": _x86(32, _AVX2_2FMA, AMD_ZEN2),
    "znver3": _x86(32, _AVX2_2FMA, AMD_ZEN3),
    "znver4": _x86(
        32, "2 FMA pipes x 8 fp32 lanes (256-bit; 512-bit ops double-pumped)", AMD_ZEN4, bf16=True, int8=True
    ),
    "znver5": _x86(64, "2 FMA pipes x 16 fp32 lanes (full 512-bit datapath)", AMD_ZEN5, bf16=True, int8=True),
    "haswell": _x86(32, _AVX2_2FMA, INTEL),
    "broadwell": _x86(32, _AVX2_2FMA, INTEL),
    "skylake": _x86(32, _AVX2_2FMA, INTEL),
    "alderlake": _x86(32, _AVX2_2FMA + " (P-core)", INTEL, int8=True),
    "raptorlake": _x86(32, _AVX2_2FMA + " (P-core)", INTEL, int8=True),
    "meteorlake": _x86(32, _AVX2_2FMA + " (P-core)", INTEL, int8=True),
    "arrowlake": _x86(32, _AVX2_2FMA + " (P-core)", INTEL, int8=True),
    "icelake-client": _x86(32, _AVX512_1FMA, INTEL, int8=True),
    "tigerlake": _x86(32, _AVX512_1FMA, INTEL, int8=True),
    "rocketlake": _x86(32, _AVX512_1FMA, INTEL, int8=True),
    "skylake-avx512": _x86(64, _AVX512_2FMA + " (Xeon Gold/Platinum; one-unit parts do half)", INTEL),
    "cascadelake": _x86(64, _AVX512_2FMA + " (Xeon Gold/Platinum; one-unit parts do half)", INTEL, int8=True),
    "cooperlake": _x86(64, _AVX512_2FMA, INTEL, bf16=True, int8=True),
    "icelake-server": _x86(64, _AVX512_2FMA, INTEL, int8=True),
    "sapphirerapids": AMX_XEON,
    "emeraldrapids": AMX_XEON,
    "graniterapids": AMX_XEON,
    "cortex-a53": _arm(8, "1 NEON pipe x 4 fp32 lanes (128-bit)", fp16=False, dot=False),
    "cortex-a55": _arm(8, "1 NEON pipe x 4 fp32 lanes (128-bit)"),
    "cortex-a72": _arm(16, _NEON_2, fp16=False, dot=False),
    "cortex-a73": _arm(16, _NEON_2, fp16=False, dot=False),
    "cortex-a75": _arm(16, _NEON_2),
    "cortex-a76": _arm(16, _NEON_2),
    "cortex-a77": _arm(16, _NEON_2),
    "cortex-a78": _arm(16, _NEON_2),
    "cortex-a78ae": _arm(16, _NEON_2),
    "cortex-a710": _arm(16, _NEON_2, bf16=True),
    "cortex-a715": _arm(16, _NEON_2, bf16=True),
    "cortex-x1": _arm(32, _NEON_4),
    "cortex-x2": _arm(32, _NEON_4, bf16=True),
    "cortex-x3": _arm(32, _NEON_4, bf16=True),
    "neoverse-n1": _arm(16, _NEON_2),
    "neoverse-n2": _arm(16, _NEON_2, bf16=True),
    "neoverse-v1": _arm(32, "2 SVE pipes x 8 fp32 lanes (256-bit) or 4 x 128-bit NEON", bf16=True),
    "neoverse-v2": _arm(32, _NEON_4, bf16=True),
    "apple-m1": _arm(32, _NEON_4),
    "apple-m2": _arm(32, _NEON_4, bf16=True),
}


def core_arithmetic(llvm_cpu: str, model_name: str = "", features=()) -> CoreArithmetic | None:
    """The entry for an LLVM CPU name; Zen 5 mobile parts (Ryzen AI, "Strix") have a 256-bit datapath.
    A CPU whose flags (`features`, LLVM names) have AMX is one of the AMX Xeons whatever it is named
    (a VM's model number can make LLVM call it `rocketlake`)."""
    if "amx-tile" in features:
        return AMX_XEON
    entry = TABLE.get(llvm_cpu)
    if llvm_cpu == "znver5" and "ryzen ai" in model_name.lower():
        return _x86(
            32,
            "2 FMA pipes x 8 fp32 lanes (256-bit datapath of the mobile Zen 5; 512-bit ops double-pumped)",
            AMD_ZEN5,
            bf16=True,
            int8=True,
        )
    return entry
