"""Every knob of a compile in one dataclass, with named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "int8", "mixed")
# Relative error (max |edgecc - reference| / max |reference|) tolerated before a compile fails.
DEFAULT_TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "int8": None, "mixed": None}


@dataclass
class CompileOptions:
    target: str = "host"
    output: Path = Path("out/model")
    batch: int = 1
    seq_len: int = 128
    input_specs: tuple[str, ...] = ()  # "name:1x128:int64" overrides
    sample_inputs: Path | None = None  # .npz used for verification and timing
    precision: str = "fp32"
    calibration: Path | None = None
    max_accuracy_drop: float | None = None
    sparse_attention: str | None = None
    fast_math: bool = True  # polynomial exp/erf/tanh (see pipeline.lower)
    fusion: bool = True  # the fusion graph passes (edgecc/passes/fusion_steps.py)
    tune: bool = False
    trials: int = 64
    budget_seconds: float | None = None
    tuning_logs: tuple[Path, ...] = ()
    rpc: str | None = None
    tracker: str | None = None
    key: str | None = None
    rpc_timeout: float = 120.0
    verify: bool = True
    tolerance: float | None = None  # None: DEFAULT_TOLERANCE[precision]
    measure: bool = True
    min_seconds: float = 2.0
    dump_ir: Path | None = None
    seed: int = 0
    quiet: bool = False
    extra: dict = field(default_factory=dict)

    def resolved_tolerance(self) -> float | None:
        """Sparse attention changes what the model computes on purpose: its cost is judged by the
        accuracy step (--max-accuracy-drop), not by the FP32 tolerance, unless one is given."""
        if self.tolerance is not None:
            return self.tolerance
        return None if self.sparse_attention else DEFAULT_TOLERANCE.get(self.precision)

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    def with_changes(self, **changes) -> "CompileOptions":
        return replace(self, **changes)


PRESETS = {
    # Quick look: no timing loop worth trusting, but verified.
    "quick": dict(min_seconds=0.3),
    "default": dict(),
    # Spend time to be fast: tune the hot kernels and time longer.
    "tuned": dict(tune=True, trials=512, budget_seconds=30 * 60, min_seconds=5.0),
    "int8": dict(precision="int8"),
}


def options_from_preset(preset: str = "default", **overrides) -> CompileOptions:
    from .errors import EdgeccError

    if preset not in PRESETS:
        raise EdgeccError(f"unknown preset '{preset}'; known presets: {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    if values.get("precision", "fp32") not in PRECISIONS:
        raise EdgeccError(f"unknown precision '{values['precision']}'; choose one of {', '.join(PRECISIONS)}")
    if values.get("sparse_attention"):
        from .passes.sparsity_steps import parse_sparse_attention

        parse_sparse_attention(values["sparse_attention"])  # fail before any model is loaded
    return CompileOptions(**values)
