"""The sparsity passes the pipeline runs for given options and target."""

from __future__ import annotations


def sparsity_steps(options, target) -> list[tuple[str, object]]:
    return []
