"""What a compile carries from step to step: every stage's object, declared, so it can be inspected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgecc.options import CompileOptions


@dataclass
class ModelSource:
    name: str  # what the user asked for (built-in name or path)
    onnx_path: Path
    weights: str
    parameters: int | None
    kind: str  # "builtin", "onnx" or "hf-folder"


@dataclass
class CompileContext:
    model: str
    options: CompileOptions
    log: Callable[[str], None] = print
    target: object = None  # edgecc.targets.Target
    backend: object = None  # edgecc.backends.Backend
    source: ModelSource | None = None
    imported: object = None  # edgecc.frontend.onnx_import.ImportedModel
    relax_module: object = None  # after graph passes
    pass_stats: dict = field(default_factory=dict)  # graph pass name -> its stats dataclass
    applied_precision: object = None  # edgecc.passes.precision.applied.AppliedPrecision: what the layers got
    lowered: object = None  # after legalize + fuse, kernels unscheduled
    scheduled: object = None
    schedules: object = None  # edgecc.schedules.common.ScheduleSummary
    tuning: dict = field(default_factory=dict)
    built: object = None  # edgecc.backends.Built
    stage_dir: Path | None = None
    packaged: object = None  # edgecc.backends.PackagedLibrary
    manifest: dict = field(default_factory=dict)
    sample_inputs: dict = field(default_factory=dict)
    reference_outputs: dict = field(default_factory=dict)
    artifact: object = None  # edgecc.artifact.loader.LoadedArtifact when the artifact can run
    verification: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    energy: dict | None = None
    profile: dict | None = None
    environment: dict | None = None
    accuracy: dict = field(default_factory=dict)
    measurement_failure: str = ""  # a board that failed while measuring a verified artifact (the artifact is kept)
    weights_bytes: int = 0  # the model's weights as the ONNX model stores them
    step_seconds: list = field(default_factory=list)
    report: dict = field(default_factory=dict)
    # Dynamic shapes (edgecc/buckets/): the bucket this context compiles (None: the options' shape,
    # or the largest bucket's), and what the buckets step made (edgecc.buckets.compile.BucketedModel).
    bucket: object = None
    buckets: object = None

    def input_shape(self) -> tuple[int, int]:
        """(batch, seq_len) the import fixes the model's symbolic dimensions to."""
        from edgecc.buckets.plan import bucket_plan

        plan = bucket_plan(self.options)
        bucket = self.bucket or (plan.largest if plan is not None else None)
        batch = bucket.batch if bucket is not None and bucket.batch is not None else self.options.batch
        seq_len = bucket.seq_len if bucket is not None and bucket.seq_len is not None else self.options.seq_len
        return batch, seq_len


@dataclass
class CompileResult:
    artifact_dir: Path
    manifest: dict
    report: dict
    context: CompileContext

    def __repr__(self) -> str:
        return f"CompileResult({self.artifact_dir}, verification={self.report['verification']['status']})"
