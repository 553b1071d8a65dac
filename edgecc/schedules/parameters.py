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
    """float32 lanes of the target's widest vector registers, read from LLVM's feature list."""
    from tvm.target import codegen

    lanes = schedule_parameters()["vector_lanes"]
    try:
        features = {str(f) for f in codegen.llvm_get_cpu_features(target.tvm())}
    except Exception:  # noqa: BLE001 - tvm raises for a CPU its LLVM does not know, or a non-LLVM target
        features = set()
    for feature in ("avx512f", "avx2", "neon"):
        if feature in features:
            return lanes[feature]
    return lanes["neon"] if target.arch in ("aarch64", "arm64") else lanes["default"]
