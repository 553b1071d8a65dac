"""Default-schedule parameters (`cpu.toml`, shipped in the package) and the target's vector width."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

PARAMETERS_FILE = Path(__file__).resolve().parent / "cpu.toml"


@lru_cache(maxsize=1)
def schedule_parameters() -> dict:
    return tomllib.loads(PARAMETERS_FILE.read_text())


def vector_lanes(target) -> int:
    """float32 lanes of the target's widest vector registers, read from LLVM's feature list
    (AVX-512 16, AVX2 8, NEON 4, HVX 32 in its 128-byte mode)."""
    return _by_vector_feature(target, "vector_lanes")


def vector_registers(target) -> int:
    """Vector registers a register tile's accumulators and operands share (32 with AVX-512, NEON
    and HVX; 16 with AVX2). None as target: AVX-512's."""
    if target is None:
        return schedule_parameters()["vector_registers"]["avx512f"]
    return _by_vector_feature(target, "vector_registers")


def target_features(target) -> set[str]:
    """LLVM's feature list for the target's CPU; empty where it has none (a CPU LLVM does not know)."""
    from tvm.target import codegen

    try:
        return {str(f) for f in codegen.llvm_get_cpu_features(target.tvm())}
    except Exception:  # noqa: BLE001 - tvm raises for a CPU its LLVM does not know, or a non-LLVM target
        return set()


def _by_vector_feature(target, table: str) -> int:
    values = schedule_parameters()[table]
    features = target_features(target)
    for feature, value in values.items():  # widest first, as cpu.toml lists them
        if feature in features:
            return value
    return values["neon"] if target.arch in ("aarch64", "arm64") else values["default"]
