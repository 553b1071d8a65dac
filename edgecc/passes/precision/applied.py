"""The precision the layers actually got, read from the precision passes' statistics.

--precision asks; the target and the timing decide: a bf16 build on a CPU without BF16 arithmetic
compiles every layer as FP32, and a layer whose reduced-precision kernel timed slower stays FP32. The
manifest, the report (summary, headline, other builds) and the verification tolerance use this, so
nothing calls an FP32 build bf16 or judges it by bf16's looser tolerance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class AppliedPrecision:
    requested: str
    effective: str  # whose tolerance applies: "fp32" when no layer, weight or table was reduced
    layers: dict = field(default_factory=dict)  # dense layers per precision, e.g. {"bf16": 10, "fp32": 2}
    why: str = ""  # why `effective` is not `requested`, or what "requested" did not mean here
    sparse_attention: str = ""  # the pattern, e.g. "block=64, neighbours=1, global=2"; "" when dense

    @property
    def label(self) -> str:
        """'fp32 (bf16 requested: ...)', 'bf16 (10 bf16, 2 fp32 dense layers)', '... + sparse attention (...)'."""
        text = self.effective
        counted = {p: n for p, n in self.layers.items() if n}
        if self.why:
            asked = f"{self.requested} requested: " if self.effective != self.requested else ""
            text += f" ({asked}{self.why})"
        elif len(counted) > 1 or self.requested == "mixed":
            text += " (" + ", ".join(f"{n} {p}" for p, n in counted.items()) + " dense layers)"
        if self.sparse_attention:
            text += f" + sparse attention ({self.sparse_attention})"
        return text

    def to_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


def applied_precision(requested: str, pass_stats: dict, sparse_pattern: str = "") -> AppliedPrecision:
    """From pass name -> stats dataclass (edgecc.context.CompileContext.pass_stats)."""
    effective, layers, why = _from_stats(requested, pass_stats)
    return AppliedPrecision(requested, effective, layers, why, sparse_pattern)


def _from_stats(requested: str, stats: dict) -> tuple[str, dict, str]:
    if "cast_dense_layers_bf16" in stats:
        bf16 = stats["cast_dense_layers_bf16"]
        if bf16.instruction is None:
            return "fp32", {"fp32": bf16.fp32_layers}, "the target has no BF16 arithmetic: every layer compiled as FP32"
        layers = {"bf16": bf16.bf16_math_layers, "fp32": bf16.fp32_layers}
        return _reduced("bf16", layers, bf16.bf16_math_layers + bf16.embedding_tables)
    if "quantize_dense_layers_int8" in stats:
        int8 = stats["quantize_dense_layers_int8"]
        layers = {"int8": int8.int8_math_layers, "fp32": int8.fp32_layers}
        return _reduced("int8", layers, int8.int8_math_layers + int8.embedding_tables)
    if "quantize_dense_weights_int8" in stats:
        int8 = stats["quantize_dense_weights_int8"]
        effective, layers, why = _reduced("int8", {"int8": int8.layers}, int8.layers)
        if effective == "int8" and int8.int8_math_layers == 0:
            why = "int8 weights, dequantized and computed in FP32 (no INT8 arithmetic on this target)"
        return effective, layers, why
    if "cast_matmuls_to_fp16" in stats:
        fp16 = stats["cast_matmuls_to_fp16"]
        if fp16.instruction is None:  # every matmul's weight cast (not counted per layer)
            return "fp16", {}, "" if fp16.fp16_math else f"fp16 weights only, computed in FP32: {fp16.arithmetic}"
        layers = {"fp16": fp16.fp16_math_layers, "fp32": fp16.fp32_layers}
        return _reduced("fp16", layers, fp16.fp16_math_layers + fp16.embedding_tables)
    if "choose_mixed_precisions" in stats:
        counts = dict(stats["choose_mixed_precisions"].counts)
        return _reduced("mixed", counts, counts.get("int8", 0) + counts.get("bf16", 0))
    if "choose_layer_precisions" in stats:
        counts: dict = {}
        for choice in stats["choose_layer_precisions"].choices:
            counts[choice["precision"]] = counts.get(choice["precision"], 0) + 1
        return _reduced("mixed", counts, sum(n for p, n in counts.items() if p != "fp32"))
    return "fp32", {}, "" if requested == "fp32" else "no precision pass ran"


def _reduced(precision: str, layers: dict, reduced: int) -> tuple[str, dict, str]:
    """A pass that left every layer and table FP32 made an FP32 build, whatever was asked."""
    if reduced:
        return precision, layers, ""
    return "fp32", layers, "every dense layer stayed FP32 (see the Precision section for why)"
