"""After the artifact is built and verified at its largest shape: verify it at sizes inside every
bucket against ONNX Runtime run at the true (unpadded) size, and time each bucket."""

from __future__ import annotations

from edgecc.buckets.kernels import BATCH, SEQUENCE
from edgecc.errors import VerificationError


def inside_points(sizes) -> list[int]:
    """1, each bucket's own size and one size strictly inside it (between the bucket below and it)."""
    points, below = {1}, 0
    for size in sizes:
        points |= {size, (below + 1 + size) // 2}
        below = size
    return sorted(points)


def verification_points(plan) -> list[dict]:
    batches = inside_points(plan.batches) if plan.batches else [None]
    lengths = inside_points(plan.seq_lens) if plan.seq_lens else [None]
    return [{BATCH: b, SEQUENCE: s} for b in batches for s in lengths]


def check_buckets(ctx) -> dict:
    """Verification rows in ctx.buckets.verification, latency per bucket in ctx.buckets.compiled."""
    model = ctx.buckets
    if model is None or ctx.artifact is None:
        return {}
    if ctx.options.verify:
        model.verification = verify_points(ctx, verification_points(model.plan))
    if ctx.options.measure:
        time_buckets(ctx)
    _record_in_manifest(ctx)
    return model.to_dict()


def _inputs_at(ctx, size: dict, seed: int) -> dict:
    from edgecc.buckets.shapes import specs_at
    from edgecc.frontend.inputs import sample_inputs

    specs = specs_at(ctx.buckets.inputs, batch=size.get(BATCH), seq_len=size.get(SEQUENCE))
    return sample_inputs(specs, ctx.imported.index_bounds, seed=seed)


def verify_points(ctx, points: list[dict]) -> list[dict]:
    from edgecc.measure.latency import onnxruntime_session
    from edgecc.measure.verification import applied_tolerance, output_errors, verdict, worst_error
    from edgecc.threads import host_threads

    session = onnxruntime_session(ctx.source.onnx_path, threads=host_threads())
    names = [spec.name for spec in ctx.buckets.outputs]
    tolerance = applied_tolerance(ctx, ctx.buckets.outputs)
    rows = []
    for index, size in enumerate(points):
        inputs = _inputs_at(ctx, size, seed=ctx.options.seed + 1 + index)
        reference = dict(zip(names, session.run(names, inputs)))
        errors = output_errors(ctx.artifact.run(inputs), reference)
        status, reason = verdict(errors, tolerance)
        rows.append(
            {
                "batch": size[BATCH],
                "seq_len": size[SEQUENCE],
                "status": status,
                "reason": reason,
                "worst_rel_error": worst_error(r["max_rel_error"] for r in errors),
            }
        )
        if status == "failed":
            where = ", ".join(f"{k} {v}" for k, v in size.items() if v is not None)
            raise VerificationError(
                f"verification failed for {ctx.source.name} at {where} (padded inside the "
                f"artifact, compared with ONNX Runtime unpadded): {reason}"
            )
    ctx.log(
        f"      verified at {len(rows)} sizes inside the buckets against ONNX Runtime at the true size: worst "
        f"relative error {worst_error(r['worst_rel_error'] for r in rows):.3g}"
    )
    return rows


def time_buckets(ctx) -> None:
    from edgecc.measure.latency import onnxruntime_session, time_artifact, time_onnxruntime

    model = ctx.buckets
    seconds = max(0.2, ctx.options.min_seconds / (2 * len(model.compiled)))
    session = (
        onnxruntime_session(ctx.source.onnx_path, ctx.target.board.cores) if ctx.artifact.session is None else None
    )
    for compiled in model.compiled:
        bucket = compiled.bucket
        inputs = _inputs_at(ctx, {BATCH: bucket.batch, SEQUENCE: bucket.seq_len}, seed=ctx.options.seed)
        compiled.latency = {"edgecc": time_artifact(ctx.artifact, inputs, seconds)}
        if session is not None:
            compiled.latency["onnxruntime"] = time_onnxruntime(session, inputs, seconds)
        ctx.log(
            f"      bucket {bucket}: edgecc median {compiled.latency['edgecc']['median_ms']:.3f} ms"
            + (f", ONNX Runtime {compiled.latency['onnxruntime']['median_ms']:.3f} ms" if session else "")
        )


def _record_in_manifest(ctx) -> None:
    """The manifest's bucket list gains each bucket's measured latency (the library is unchanged)."""
    from edgecc.artifact.loader import MANIFEST
    from edgecc.atomic import write_json_atomic

    ctx.manifest["buckets"] = ctx.buckets.manifest_entry()
    write_json_atomic(ctx.stage_dir / MANIFEST, ctx.manifest)
