"""The buckets step: every smaller bucket compiled by the pipeline's own steps, all merged under
one dispatching `main` (see edgecc/buckets/__init__.py for the design)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecc.buckets.plan import Bucket, BucketPlan, bucket_plan


@dataclass
class CompiledBucket:
    bucket: Bucket
    function: str  # the bucket's own entry in the library: main_<tag>
    inputs: list  # its static TensorSpecs
    outputs: list
    schedules: object  # edgecc.schedules.common.ScheduleSummary of its kernels
    seconds: float  # compile time of its import .. schedule
    passes: dict = field(default_factory=dict)  # graph pass name -> its stats, at this bucket's shape
    tuning: dict = field(default_factory=dict)  # records applied to this bucket's kernels
    latency: dict = field(default_factory=dict)  # {"edgecc": stats, "onnxruntime": stats} at its full shape

    def to_dict(self) -> dict:
        entry = {
            "batch": self.bucket.batch,
            "seq_len": self.bucket.seq_len,
            "function": self.function,
            "inputs": [s.to_dict() for s in self.inputs],
            "kernels": self.schedules.kernels,
            "schedules": dict(sorted(self.schedules.by_source.items())),
            "compile_seconds": self.seconds,
            "passes": {name: asdict(stats) for name, stats in self.passes.items()},
            "tuning": self.tuning,
        }
        if self.latency:
            entry["latency"] = self.latency
        return entry


@dataclass
class BucketedModel:
    """What a dynamic-shape compile made: ctx.buckets."""

    plan: BucketPlan
    input_axes: dict  # input name -> ((axis, dim name), ...)
    inputs: list = field(default_factory=list)  # TensorSpecs at the largest shape, with dynamic_axes
    outputs: list = field(default_factory=list)
    compiled: list[CompiledBucket] = field(default_factory=list)  # smallest first
    constant_bytes: int = 0  # every bucket's constants, summed
    stored_constant_bytes: int = 0  # the same, with equal constants counted once (what the library holds)
    verification: list = field(default_factory=list)  # one row per (batch, length) verified
    profiled: object = None  # the largest bucket's functions as named in the library, for the kernel profile

    def manifest_entry(self) -> dict:
        return {
            **self.plan.to_dict(),
            "pad_value": 0,
            "buckets": [
                {
                    "batch": c.bucket.batch,
                    "seq_len": c.bucket.seq_len,
                    "function": c.function,
                    **({"median_ms": c.latency["edgecc"]["median_ms"]} if c.latency.get("edgecc") else {}),
                }
                for c in self.compiled
            ],
        }

    def to_dict(self) -> dict:
        return {
            **self.plan.to_dict(),
            "buckets": [c.to_dict() for c in self.compiled],
            "constant_bytes": self.constant_bytes,
            "stored_constant_bytes": self.stored_constant_bytes,
            "verification": self.verification,
        }


def check_bucketable(ctx) -> BucketedModel:
    """Before any bucket is compiled: the model has the dynamic axes the options bucket (else one
    clear ModelError); ctx.buckets starts here."""
    from edgecc.buckets.shapes import input_dynamic_axes
    from edgecc.frontend.onnx_import import graph_inputs, load_onnx

    plan = bucket_plan(ctx.options)
    axes = input_dynamic_axes(graph_inputs(load_onnx(ctx.source.onnx_path)), plan, ctx.source.name)
    ctx.buckets = BucketedModel(plan, axes)
    return ctx.buckets


def compile_buckets(ctx, steps) -> BucketedModel | None:
    """steps: the pipeline's import, graph passes, lower and schedule, run for each bucket but the
    largest (which the pipeline itself just compiled into ctx)."""
    from edgecc.buckets.dispatch import add_dispatch_main
    from edgecc.buckets.kernels import guard_sizes
    from edgecc.buckets.merge import constant_bytes, merged_module
    from edgecc.buckets.shapes import output_dynamic_axes, with_dynamic_axes
    from edgecc.schedules.common import schedule_summary

    if ctx.buckets is None:
        return None
    model, largest = ctx.buckets, ctx.buckets.plan.largest
    built = {}  # bucket -> (CompiledBucket, its scheduled module); the rest of a child context is let go
    for bucket in model.plan.buckets[:-1]:
        started = time.perf_counter()
        ctx.log(f"      bucket {bucket}: import, graph passes, lower, schedule")
        child = _bucket_context(ctx, bucket)
        for step in steps:
            step(child)
        built[bucket] = (_compiled_bucket(bucket, child, time.perf_counter() - started), child.scheduled)
    seconds = sum(s for name, s in ctx.step_seconds if name in ("import", "graph passes", "lower", "schedule"))
    built[largest] = (_compiled_bucket(largest, ctx, seconds), ctx.scheduled)
    order = model.plan.buckets
    model.compiled = [built[b][0] for b in order]
    shapes = [(c.bucket, c.outputs) for c in model.compiled]
    model.inputs = with_dynamic_axes(ctx.imported.inputs, model.input_axes)
    model.outputs = with_dynamic_axes(ctx.imported.outputs, output_dynamic_axes(shapes + _probes(ctx, model.plan)))
    _check_bucket_shapes(model)
    modules = {f"_{b.tag}": built[b][1] for b in order}
    model.constant_bytes, model.stored_constant_bytes = constant_bytes(modules.values())
    model.profiled = merged_module({f"_{largest.tag}": ctx.scheduled})
    merged = add_dispatch_main(merged_module(modules), [(b, b.tag) for b in order], model.inputs, model.outputs)
    ctx.scheduled = guard_sizes(ctx.backend.default_schedule(merged, ctx.target))  # the pad and cut kernels
    ctx.schedules = schedule_summary(ctx.scheduled)
    ctx.imported.inputs, ctx.imported.outputs = model.inputs, model.outputs  # what the artifact takes
    ctx.log(
        f"      {len(order)} buckets ({', '.join(str(b) for b in order)}); constants "
        f"{model.constant_bytes / 1e6:.1f} MB over all buckets, {model.stored_constant_bytes / 1e6:.1f} MB "
        f"stored once shared; schedules: {ctx.schedules.line()}"
    )
    return model


def _check_bucket_shapes(model: BucketedModel) -> None:
    """Each bucket's static inputs are the dynamic ones at its size (so padding to it is right)."""
    from edgecc.buckets.kernels import BATCH, SEQUENCE
    from edgecc.buckets.shapes import at_size
    from edgecc.errors import ModelError

    for compiled in model.compiled:
        size = {BATCH: compiled.bucket.batch, SEQUENCE: compiled.bucket.seq_len}
        for dynamic, static in zip(model.inputs, compiled.inputs):
            if at_size(dynamic, size) != tuple(static.shape):
                raise ModelError(
                    f"bucket {compiled.bucket}: input '{static.name}' was imported as "
                    f"{'x'.join(map(str, static.shape))}, not {'x'.join(map(str, at_size(dynamic, size)))}"
                )


def _compiled_bucket(bucket: Bucket, ctx, seconds: float) -> CompiledBucket:
    return CompiledBucket(
        bucket,
        f"main_{bucket.tag}",
        ctx.imported.inputs,
        ctx.imported.outputs,
        ctx.schedules,
        seconds,
        dict(ctx.pass_stats),
        dict(ctx.tuning),
    )


def _bucket_context(ctx, bucket: Bucket):
    from edgecc.context import CompileContext

    options = ctx.options
    if options.dump_ir is not None:  # each bucket's IR in its own folder, not over the largest's
        options = options.with_changes(dump_ir=Path(options.dump_ir) / f"bucket_{bucket.tag}")
    return CompileContext(
        model=ctx.model,
        options=options,
        log=lambda line: ctx.log(f"      [{bucket}] {line.strip()}"),
        target=ctx.target,
        backend=ctx.backend,
        source=ctx.source,
        stage_dir=ctx.stage_dir,
        bucket=bucket,
    )


def _probes(ctx, plan: BucketPlan) -> list:
    """Output shapes at one more size for a dimension with a single bucket, so the outputs' dynamic
    axes can be told from fixed ones (an import only: no passes, no kernels)."""
    from edgecc.frontend.onnx_import import import_onnx

    batch, seq_len = ctx.input_shape()
    probes = []
    if plan.batches is not None and len(plan.batches) == 1:
        probes.append(Bucket(batch + 1, plan.largest.seq_len))
    if plan.seq_lens is not None and len(plan.seq_lens) == 1:
        probes.append(Bucket(plan.largest.batch, seq_len - 1 if seq_len > 1 else 2))
    return [
        (probe, import_onnx(ctx.source.onnx_path, [], probe.batch or batch, probe.seq_len or seq_len).outputs)
        for probe in probes
    ]
