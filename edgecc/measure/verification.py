"""Does the artifact compute what the model computes? Compared with ONNX Runtime on the same inputs."""

from __future__ import annotations

import numpy as np


def output_errors(actual: dict, reference: dict) -> list[dict]:
    """Per output: max absolute error, and relative error = max |a - r| / max |r|.

    Normalising by the output's largest magnitude (not element by element) keeps near-zero
    elements from turning rounding noise into huge relative errors.
    """
    rows = []
    for name, ref in reference.items():
        got = np.asarray(actual[name], dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if got.shape != ref.shape:
            rows.append(
                {
                    "name": name,
                    "shape": list(ref.shape),
                    "max_abs_error": float("inf"),
                    "max_rel_error": float("inf"),
                    "note": f"shape {list(got.shape)} != {list(ref.shape)}",
                }
            )
            continue
        abs_err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        finite = bool(np.all(np.isfinite(got)))
        rows.append(
            {
                "name": name,
                "shape": list(ref.shape),
                "max_abs_error": abs_err if finite else float("inf"),
                "max_rel_error": (abs_err / scale if scale > 0 else abs_err) if finite else float("inf"),
                "reference_max_abs": scale,
            }
        )
    return rows


DEGENERATE_SCALE = 1e-12  # reference outputs this close to zero cannot tell right from wrong


def verdict(rows: list[dict], tolerance: float | None) -> tuple[str, str]:
    if rows and all(r.get("reference_max_abs", 1.0) < DEGENERATE_SCALE for r in rows):
        return "inconclusive", (
            "every reference output is ~0 (max |value| < 1e-12), so the comparison proves "
            "nothing; use real weights or --inputs that exercise the model"
        )
    wrong_shape = [r for r in rows if r.get("note", "").startswith("shape")]
    if wrong_shape:
        row = wrong_shape[0]
        return "failed", f"output '{row['name']}' has the wrong shape: {row['note']} (edgecc != reference)"
    worst = max((r["max_rel_error"] for r in rows), default=0.0)
    if tolerance is None:
        return "reported", f"worst relative error {worst:.3g} (no tolerance set for this precision)"
    if worst <= tolerance:
        return "passed", f"worst relative error {worst:.3g} <= tolerance {tolerance:g}"
    name = max(rows, key=lambda r: r["max_rel_error"])["name"]
    return "failed", f"output '{name}' relative error {worst:.3g} exceeds tolerance {tolerance:g}"


def model_float_dtype(outputs) -> str:
    """The float type a model computes in, read from its outputs' types (TensorSpec): float16 or
    bfloat16 when any output is, else float64 when any is, else float32."""
    dtypes = {spec.dtype for spec in outputs}
    for dtype in ("float16", "bfloat16", "float64"):
        if dtype in dtypes:
            return dtype
    return "float32"
