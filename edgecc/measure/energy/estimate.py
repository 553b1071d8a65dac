"""Energy from the target file's power figures, for machines without a meter. Always labelled estimated."""

from __future__ import annotations

from edgecc.errors import EdgeccError


def estimate_energy(target, latency_s: float, utilisation: float = 1.0) -> dict:
    """Joules per inference assuming the board draws idle + utilisation x (TDP - idle) while running.

    `joules_per_inference` is the energy above idle (what the inference adds), like the measured figure,
    which subtracts a measured idle baseline; `joules_per_inference_total` includes the idle draw.
    """
    if not latency_s or latency_s <= 0:
        raise EdgeccError("cannot estimate energy without a positive latency")
    if not 0 < utilisation <= 1:
        raise EdgeccError(f"utilisation must be in (0, 1], got {utilisation}")
    board = target.board
    if not board.has_power_figures:
        raise EdgeccError(
            f"target '{target.name}' has no power figures (board.tdp_watts, board.idle_watts) to estimate energy from"
        )
    idle, tdp = float(board.idle_watts), float(board.tdp_watts)
    active = idle + utilisation * (tdp - idle)
    return {
        "kind": "estimated",
        "meter": "estimate from target file",
        "basis": f"board.idle_watts={idle:g} W, board.tdp_watts={tdp:g} W, utilisation={utilisation:g} "
        f"(target '{target.name}')",
        "joules_per_inference": (active - idle) * latency_s,
        "joules_per_inference_total": active * latency_s,
        "avg_watts": active,
        "peak_watts": tdp,
        "idle_watts": idle,
        "latency_s": latency_s,
        "sample_rate_hz": None,
        "rails": [],
    }
