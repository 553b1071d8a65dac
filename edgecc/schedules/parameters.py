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


def _by_vector_feature(target, table: str) -> int:
    from tvm.target import codegen

    values = schedule_parameters()[table]
    try:
        features = {str(f) for f in codegen.llvm_get_cpu_features(target.tvm())}
    except Exception:  # noqa: BLE001 - tvm raises for a CPU its LLVM does not know, or a non-LLVM target
        features = set()
    for feature, value in values.items():  # widest first, as cpu.toml lists them
        if feature in features:
            return value
    return values["neon"] if target.arch in ("aarch64", "arm64") else values["default"]
