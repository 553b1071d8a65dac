"""Does the artifact compute what the model computes? Compared with ONNX Runtime on the same inputs."""

from __future__ import annotations

import math

import numpy as np


def special_values(got: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, int]:
    """(where both values are finite, how many elements differ in a NaN or an infinity).

    NaN and inf are values a model can rightly compute (Log of 0, a masked softmax): NaN against NaN
    and an infinity against the same infinity agree; either against anything else is a mismatch,
    however small the finite elements' error is. Finite arithmetic alone gets both wrong: NaN compares
    unequal to itself, and max([0.0, nan]) is 0.0."""
    got_finite, ref_finite = np.isfinite(got), np.isfinite(ref)
    special = ~(got_finite & ref_finite)
    agree = (np.isnan(got) & np.isnan(ref)) | (got == ref)  # == holds for the same infinity
    return ~special, int(np.count_nonzero(special & ~agree))


def max_finite_error(got: np.ndarray, ref: np.ndarray, finite: np.ndarray) -> float:
    """max |got - ref| over the elements finite on both sides (inf - inf is never computed)."""
    difference = np.subtract(got, ref, out=np.zeros(np.broadcast(got, ref).shape), where=finite)
    return float(np.max(np.abs(difference), initial=0.0))


def output_errors(actual: dict, reference: dict) -> list[dict]:
    """Per output: max absolute error, and relative error = max |a - r| / max |r|, over the elements
    finite on both sides; NaN and inf must match exactly (`special_values`), else both errors are inf.

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
        finite, mismatched = special_values(got, ref)
        abs_err = max_finite_error(got, ref, finite)
        scale = float(np.max(np.abs(ref), where=np.isfinite(ref), initial=0.0))
        row = {
            "name": name,
            "shape": list(ref.shape),
            "max_abs_error": abs_err if not mismatched else float("inf"),
            "max_rel_error": (abs_err / scale if scale > 0 else abs_err) if not mismatched else float("inf"),
            "reference_max_abs": scale,
        }
        if not finite.all():
            row["non_finite"] = int(finite.size - np.count_nonzero(finite))
            row["non_finite_mismatched"] = mismatched
        rows.append(row)
    return rows


DEGENERATE_SCALE = 1e-12  # reference outputs this close to zero cannot tell right from wrong


def verdict(rows: list[dict], tolerance: float | None) -> tuple[str, str]:
    if rows and all(r.get("reference_max_abs", 1.0) < DEGENERATE_SCALE and not r.get("non_finite") for r in rows):
        return "inconclusive", (
            "every reference output is ~0 (max |value| < 1e-12), so the comparison proves "
            "nothing; use real weights or --inputs that exercise the model"
        )
    wrong_shape = [r for r in rows if r.get("note", "").startswith("shape")]
    if wrong_shape:
        row = wrong_shape[0]
        return "failed", f"output '{row['name']}' has the wrong shape: {row['note']} (edgecc != reference)"
    mismatched = [r for r in rows if r.get("non_finite_mismatched")]
    if mismatched:
        row = mismatched[0]
        reason = (
            f"output '{row['name']}' has {row['non_finite_mismatched']} element(s) where edgecc and the "
            "reference differ in a NaN or an infinity"
        )
        return ("reported" if tolerance is None else "failed"), reason
    worst_row = max(rows, key=lambda r: _error(r["max_rel_error"]), default=None)
    worst = _error(worst_row["max_rel_error"]) if worst_row is not None else 0.0
    if tolerance is None:
        return "reported", f"worst relative error {worst:.3g} (no tolerance set for this precision)"
    if worst <= tolerance:
        return "passed", f"worst relative error {worst:.3g} <= tolerance {tolerance:g}"
    return "failed", f"output '{worst_row['name']}' relative error {worst:.3g} exceeds tolerance {tolerance:g}"


def worst_error(values) -> float:
    """The largest of some errors, where a NaN is the worst of all (plain max() may drop it)."""
    return max((_error(v) for v in values), default=0.0)


def _error(value: float) -> float:
    return float("inf") if math.isnan(value) else value


def applied_tolerance(ctx, outputs) -> float | None:
    """The tolerance for `outputs` (TensorSpec) of the precision the layers got, not the one asked for:
    a bf16 build compiled as FP32 is held to FP32's tolerance."""
    options = ctx.options.with_changes(precision=ctx.applied_precision.effective)
    return options.resolved_tolerance(model_float_dtype(outputs))


def model_float_dtype(outputs) -> str:
    """The float type a model computes in, read from its outputs' types (TensorSpec): float16 or
    bfloat16 when any output is, else float64 when any is, else float32."""
    dtypes = {spec.dtype for spec in outputs}
    for dtype in ("float16", "bfloat16", "float64"):
        if dtype in dtypes:
            return dtype
    return "float32"
