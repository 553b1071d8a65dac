"""Every knob of a compile in one frozen dataclass, with named presets; validated when made."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from edgecc.errors import EdgeccError

# What --precision accepts. The one list: passes, targets and the CLI read it from here.
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "mixed")
# Number formats a board file may give a peak throughput for.
ARITHMETIC_PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# Relative error (max |edgecc - reference| / max |reference|) tolerated before a compile fails.
DEFAULT_TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2, "int8": None, "mixed": None}
# A model stored in another float type is verified against what that type can hold: an FP16 model
# differs from ONNX Runtime's FP16 arithmetic by ~1e-3 relative (rounding of every intermediate),
# which FP32's 1e-4 would call a failure; an FP64 model is held to far less than FP32.
MODEL_DTYPE_TOLERANCE = {"float16": 2e-2, "bfloat16": 5e-2, "float64": 1e-8}


MAX_ELEMENTS = 2**31 - 1
DEFAULT_TRIALS = 64
TRIALS_UNDER_A_BUDGET = 100_000  # `tune` with a time budget and no trial count: the budget decides


@dataclass(frozen=True)
class CompileOptions:
    target: str = "host"
    output: Path = Path("out/model")
    batch: int = 1
    seq_len: int = 128
    input_specs: tuple[str, ...] = ()  # "name:1x128:int64" overrides
    # Dynamic shapes (edgecc/buckets/): one artifact for every length up to max_seq_len (buckets:
    # seq_buckets, default powers of two from 16) and every batch up to max_batch.
    max_seq_len: int | None = None
    seq_buckets: tuple[int, ...] = ()
    max_batch: int | None = None
    sample_inputs: Path | None = None  # .npz used for verification and timing
    precision: str = "fp32"
    calibration: Path | None = None
    max_accuracy_drop: float | None = None
    sparse_attention: str | None = None
    fast_math: bool = True  # polynomial exp/erf/tanh (see pipeline.lower)
    fusion: bool = True  # the fusion graph passes (edgecc/passes/__init__.py)
    tune: bool = False
    trials: int | None = None  # None: DEFAULT_TRIALS, or with a time budget TRIALS_UNDER_A_BUDGET
    budget_seconds: float | None = None
    tuning_logs: tuple[Path, ...] = ()
    rpc: str | None = None
    tracker: str | None = None
    key: str | None = None
    rpc_timeout: float | None = None  # None: sized to the board (edgecc.remote.session.open_session)
    verify: bool = True
    tolerance: float | None = None  # None: DEFAULT_TOLERANCE[precision]
    measure: bool = True
    min_seconds: float = 2.0
    dump_ir: Path | None = None
    seed: int = 0
    quiet: bool = False
    cuda: str | None = None  # CUDA targets: "12" (JetPack 6) or "13" (JetPack 7); see backends/cuda_toolkits.py

    def __post_init__(self):
        if self.trials is None:  # a time budget alone decides how long tuning runs
            trials = DEFAULT_TRIALS if self.budget_seconds is None else TRIALS_UNDER_A_BUDGET
            object.__setattr__(self, "trials", trials)
        if self.seq_buckets:  # "16,32,64" from the command line, or any sequence of lengths
            from edgecc.buckets.plan import parse_seq_buckets

            object.__setattr__(self, "seq_buckets", parse_seq_buckets(self.seq_buckets))
        _validate(self)

    def resolved_tolerance(self, model_dtype: str = "float32") -> float | None:
        """Sparse attention changes what the model computes on purpose: its cost is judged by the
        accuracy step (--max-accuracy-drop), not by the FP32 tolerance, unless one is given.
        `model_dtype` is the float type the model computes in (its outputs'): with the default
        precision (fp32: no precision pass) an FP16 or FP64 model gets the tolerance of its type."""
        if self.tolerance is not None:
            return self.tolerance
        if self.sparse_attention:
            return None
        if self.precision == "fp32" and model_dtype in MODEL_DTYPE_TOLERANCE:
            return MODEL_DTYPE_TOLERANCE[model_dtype]
        return DEFAULT_TOLERANCE.get(self.precision)

    @property
    def dynamic_shapes(self) -> bool:
        """True when the artifact takes several shapes (--max-seq-len, --seq-buckets, --max-batch)."""
        return self.max_seq_len is not None or bool(self.seq_buckets) or self.max_batch is not None

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    def with_changes(self, **changes) -> CompileOptions:
        return replace(self, **changes)


def _validate(opts: CompileOptions) -> None:
    """Numbers and names checked before any work, so a bad value is one line, not a failed step."""
    if opts.precision not in PRECISIONS:
        raise EdgeccError(f"unknown precision '{opts.precision}'; choose one of {', '.join(PRECISIONS)}")
    for name in ("batch", "seq_len", "trials"):
        value = getattr(opts, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EdgeccError(f"--{name.replace('_', '-')} must be a whole number >= 1, not {value!r}")
    if opts.batch * opts.seq_len > MAX_ELEMENTS:  # TVM indexes tensors with 32-bit integers by default
        raise EdgeccError(
            f"--batch {opts.batch} x --seq-len {opts.seq_len} is too large (at most {MAX_ELEMENTS} tokens per call)"
        )
    if isinstance(opts.seed, bool) or not isinstance(opts.seed, int) or not 0 <= opts.seed < 2**63:
        raise EdgeccError(f"--seed must be a whole number >= 0, not {opts.seed!r}")
    for name, lowest, optional in (
        ("tolerance", 0.0, True),
        ("max_accuracy_drop", 0.0, True),
        ("min_seconds", 0.0, False),
        ("rpc_timeout", 1e-3, True),
        ("budget_seconds", 1e-3, True),
    ):
        value = getattr(opts, name)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < lowest:
            flag = "--budget" if name == "budget_seconds" else f"--{name.replace('_', '-')}"
            raise EdgeccError(f"{flag} must be a finite number >= {lowest:g}, not {value!r}")
    from edgecc.buckets.plan import bucket_plan

    bucket_plan(opts)  # raises for bucket options that do not fit together
    if opts.sparse_attention:
        from edgecc.passes.attention.sparse_pattern import parse_sparse_attention

        parse_sparse_attention(opts.sparse_attention)


PRESETS = {
    # Quick look: no timing loop worth trusting, but verified.
    "quick": dict(min_seconds=0.3),
    "default": dict(),
    # Spend time to be fast: tune the hot kernels and time longer.
    "tuned": dict(tune=True, trials=512, budget_seconds=30 * 60, min_seconds=5.0),
    "int8": dict(precision="int8"),
}
OPTION_NAMES = tuple(f.name for f in fields(CompileOptions))


def options_from_preset(preset: str = "default", **overrides) -> CompileOptions:
    if preset not in PRESETS:
        raise EdgeccError(f"unknown preset '{preset}'; known presets: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(OPTION_NAMES))
    if unknown:
        raise EdgeccError(f"unknown compile option(s): {', '.join(unknown)}; known: {', '.join(OPTION_NAMES)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    if isinstance(values.get("tuning_logs"), (str, Path)):
        values["tuning_logs"] = (values["tuning_logs"],)
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()}
    return CompileOptions(**values)
