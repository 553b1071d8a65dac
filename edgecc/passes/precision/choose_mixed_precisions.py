"""--precision mixed: each layer INT8, BF16 or FP32, from measured latency and measured sensitivity.

1. Sensitivity: the accuracy drop when only that layer runs in INT8 (weights per-channel, inputs
   per row, as the INT8 kernels do) or BF16, simulated on calibration samples
   (edgecc.passes.precision.mixed_sensitivity; one build).
2. Latency: each dense shape timed FP32 / INT8 / BF16 on this machine (edgecc.passes.precision.
   low_precision_timing); for a board that does not run here, estimated from the instruction's
   multiply-adds per cycle (INT8 4x, BF16 2x FP32) and labelled so.
3. Search: every dense layer starts at its fastest precision; moves to a slower, more accurate
   precision are ordered by sensitivity saved per microsecond spent, giving a path of
   configurations from fastest to most accurate. A binary search on that path (each point
   measured, not summed from single-layer estimates) finds the fastest configuration whose drop
   stays within --max-accuracy-drop x SEARCH_MARGIN (the final check runs on held-out inputs).
   The evaluated points that no other point beats on both latency and drop are the Pareto front.
4. Embedding tables (no latency at stake, a third of MiniLM's bytes): INT8 per row when that
   alone costs at most a tenth of the budget, else BF16 under the same test, else FP32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tvm

from edgecc.passes.precision.dense_weights import fold_weight_transposes

SEARCH_MARGIN = 0.5  # share of --max-accuracy-drop the search may spend on calibration inputs
EMBEDDING_SHARE = 0.1  # share of the search budget one embedding table may cost
DEFAULT_BUDGET = 0.01
SPEEDUP_ESTIMATE = {"fp32": 1.0, "bf16": 2.0, "int8": 4.0}  # multiply-adds per cycle vs FP32
BYTES = {"fp32": 4, "bf16": 2, "int8": 1}
FRONT_POINTS = 6  # path points evaluated besides the binary search, for the front


@dataclass
class LayerPlan:
    layer: str
    key: str
    kind: str
    shape: list
    sensitivity: dict = field(default_factory=dict)  # precision -> drop with only this layer in it
    latency_us: dict = field(default_factory=dict)  # precision -> measured (or estimated) microseconds
    precision: str = "fp32"

    def bytes(self, precision: str | None = None) -> int:
        return int(np.prod(self.shape)) * BYTES[precision or self.precision]

    def to_dict(self) -> dict:
        return {**asdict(self), "sensitivity_at_choice": self.sensitivity.get(self.precision, 0.0)}


@dataclass(frozen=True)
class FrontPoint:
    latency_us: float  # dense layers, summed
    weight_bytes: int
    accuracy_drop: float  # on the calibration samples
    counts: dict
    chosen: bool = False


@dataclass(frozen=True)
class MixedPrecisionStats:
    budget: float
    search_budget: float
    latency: str  # "measured here ..." or "estimated ..."
    layers: tuple[dict, ...] = ()  # LayerPlan.to_dict() of every layer, in program order
    pareto_front: tuple[FrontPoint, ...] = ()
    counts: dict = field(default_factory=dict)
    evaluated_configurations: int = 0

    def summary(self) -> str:
        chosen = next((p for p in self.pareto_front if p.chosen), None)
        text = ", ".join(f"{n} {p.upper()}" for p, n in self.counts.items() if n)
        drop = f"; calibration drop {chosen.accuracy_drop:.2e} <= {self.search_budget:.2e}" if chosen else ""
        return f"mixed precision: {text} ({len(self.pareto_front)} configurations on the Pareto front{drop})"


def _counts(layers) -> dict:
    return {p: sum(1 for layer in layers if layer.precision == p) for p in ("int8", "bf16", "fp32")}


@tvm.transform.module_pass(opt_level=0, name="choose_mixed_precisions")
class ChooseMixedPrecisions:
    """--precision mixed on a target with INT8 and/or BF16 dot products (`int8` / `bf16`: the
    instructions, None where the target lacks them; `timed`: the target runs on this machine)."""

    def __init__(
        self,
        int8,
        bf16,
        lanes: int,
        target,
        timed: bool,
        max_accuracy_drop: float | None = None,
        calibration: Path | None = None,
    ):
        self.int8, self.bf16, self.lanes = int8, bf16, lanes
        self.target, self.timed = target, timed
        self.budget = DEFAULT_BUDGET if max_accuracy_drop is None else max_accuracy_drop
        self.calibration = calibration
        self.stats: MixedPrecisionStats | None = None

    @property
    def description(self) -> str:
        found = [p for p, ins in (("int8", self.int8), ("bf16", self.bf16)) if ins]
        return f"{'/'.join(found)}/fp32 per layer by latency and sensitivity"

    def transform_module(self, mod, _ctx):
        from edgecc.passes.precision.calibration import calibration_samples
        from edgecc.passes.precision.mixed_sensitivity import PrecisionSimulator

        mod = fold_weight_transposes(mod)
        plans, latency_note = self._plans(mod)
        samples = calibration_samples(mod, self.calibration, count=4)
        simulator = PrecisionSimulator(
            mod, samples, self.int8.activation_range if self.int8 else (0, 255), log=lambda *_: None
        )
        for plan in plans:
            for precision in plan.latency_us if plan.kind == "dense" else ("int8", "bf16"):
                if precision != "fp32":
                    plan.sensitivity[precision] = simulator.drop({plan.key: precision})
            plan.sensitivity["fp32"] = 0.0
        allowed = self.budget * SEARCH_MARGIN
        front, evaluated = self._search(plans, simulator, allowed)
        self.stats = MixedPrecisionStats(
            self.budget,
            allowed,
            latency_note,
            tuple(p.to_dict() for p in plans),
            tuple(front),
            _counts(plans),
            evaluated,
        )
        return self._apply(mod, plans)

    # -- candidates and their latency -----------------------------------------------------------
    def _plans(self, mod) -> tuple[list[LayerPlan], str]:
        from edgecc.passes.precision.dense_weights import (
            dense_layer_inputs,
            layer_names,
            list_dense_layers,
            unsupported_reason,
        )
        from edgecc.passes.precision.low_precision_timing import dense_shapes, time_layer_shapes

        names = layer_names(mod)
        inputs = {key: (x, w) for key, x, w in dense_layer_inputs(mod)}
        plans = []
        for layer in list_dense_layers(mod):
            plan = LayerPlan(names[layer["key"]], layer["key"], layer["kind"], layer["shape"])
            if layer["kind"] == "dense" and layer["key"] in inputs:
                x, weight = inputs[layer["key"]]
                macs = int(np.prod([int(d) for d in x.ty.shape])) * weight.shape[1]
                plan.latency_us = {"fp32": macs}  # replaced by measurements below when they can be made
                for precision, ins in (("int8", self.int8), ("bf16", self.bf16)):
                    if ins is not None and unsupported_reason(x, weight, ins) is None:
                        plan.latency_us[precision] = macs
            plans.append(plan)
        rewrites = self._rewrites()
        ins = self.int8 or self.bf16
        if self.timed and rewrites:
            timings = time_layer_shapes(dense_shapes(mod, ins), self.target, rewrites)
            by_layer = {name: t for t in timings for name in t.layers}
            for plan in plans:
                if plan.layer in by_layer:
                    measured = by_layer[plan.layer].us
                    plan.latency_us = {p: measured[p] for p in plan.latency_us if p in measured}
            note = "measured here: each dense shape timed FP32 / INT8 / BF16 in alternating rounds"
        else:
            for plan in plans:  # multiply-adds per cycle of each instruction, relative to FP32 FMA
                plan.latency_us = {p: macs / SPEEDUP_ESTIMATE[p] / 1e4 for p, macs in plan.latency_us.items()}
            note = f"estimated (INT8 4x, BF16 2x FP32 throughput): '{self.target.name}' does not run on this machine"
        return plans, note

    def _rewrites(self) -> dict:
        from edgecc.passes.precision.cast_dense_layers_bf16 import cast_dense_layers_bf16
        from edgecc.passes.precision.quantize_dense_layers_int8 import quantize_dense_layers_int8

        rewrites = {}
        if self.int8:
            rewrites["int8"] = lambda m: quantize_dense_layers_int8(m, self.int8, self.lanes)[0]
        if self.bf16:
            rewrites["bf16"] = lambda m: cast_dense_layers_bf16(m, self.bf16, self.lanes)[0]
        return rewrites

    # -- search -------------------------------------------------------------------------------
    def _search(self, plans, simulator, allowed: float) -> tuple[list[FrontPoint], int]:
        storage = ("int8", "bf16") if self.bf16 else ("int8",)  # bf16 tables go through the BF16 pass
        for plan in plans:
            if plan.kind == "embedding":
                plan.precision = next((p for p in storage if plan.sensitivity[p] <= EMBEDDING_SHARE * allowed), "fp32")
        dense = [p for p in plans if p.kind == "dense" and p.latency_us]
        for plan in dense:
            plan.precision = min(plan.latency_us, key=lambda p: (plan.latency_us[p], p != "fp32"))
        path = [self._config(plans)]
        current = {p.key: p.precision for p in dense}
        while True:  # greedy: the move saving the most sensitivity per microsecond spent, one at a time
            best = None
            for plan in dense:
                now = current[plan.key]
                for target in plan.latency_us:
                    cost = plan.latency_us[target] - plan.latency_us[now]
                    gain = plan.sensitivity.get(now, 0.0) - plan.sensitivity.get(target, 0.0)
                    if gain > 0 and cost >= 0:
                        score = gain / max(cost, 1e-3)
                        if best is None or score > best[0]:
                            best = (score, plan.key, target)
            if best is None:
                break
            current[best[1]] = best[2]
            path.append({**path[-1], best[1]: best[2]})
        drops: dict[int, float] = {}

        def drop(index: int) -> float:
            if index not in drops:
                drops[index] = simulator.drop(path[index])
            return drops[index]

        low, high = 0, len(path) - 1  # first (fastest) point within the budget; the last is the most accurate
        if drop(low) > allowed:
            while low < high:
                middle = (low + high) // 2
                if drop(middle) <= allowed:
                    high = middle
                else:
                    low = middle + 1
        for index in np.linspace(0, len(path) - 1, min(FRONT_POINTS, len(path))).astype(int):
            drop(int(index))
        chosen = path[low]
        for plan in plans:
            plan.precision = chosen.get(plan.key, plan.precision)
        points = [self._point(plans, path[i], drops[i], i == low) for i in sorted(drops)]
        front = [
            p
            for p in points
            if p.chosen
            or not any(
                q.latency_us <= p.latency_us
                and q.accuracy_drop <= p.accuracy_drop
                and (q.latency_us, q.accuracy_drop) != (p.latency_us, p.accuracy_drop)
                for q in points
            )
        ]
        return front, len(drops)

    @staticmethod
    def _config(plans) -> dict:
        return {p.key: p.precision for p in plans}

    @staticmethod
    def _point(plans, config, drop, chosen) -> FrontPoint:
        latency = sum(p.latency_us.get(config.get(p.key, "fp32"), 0.0) for p in plans if p.kind == "dense")
        size = sum(p.bytes(config.get(p.key, "fp32")) for p in plans)
        counts = {q: sum(1 for p in plans if config.get(p.key, "fp32") == q) for q in ("int8", "bf16", "fp32")}
        return FrontPoint(round(latency, 2), size, drop, counts, chosen)

    # -- rewrite ------------------------------------------------------------------------------
    def _apply(self, mod, plans):
        from edgecc.passes.precision.cast_dense_layers_bf16 import cast_dense_layers_bf16
        from edgecc.passes.precision.quantize_dense_layers_int8 import quantize_dense_layers_int8
        from edgecc.passes.precision.quantize_dense_weights_int8 import quantize_dense_weights_int8

        chosen = {p: {layer.key for layer in plans if layer.precision == p} for p in ("int8", "bf16")}
        dense_int8 = {layer.key for layer in plans if layer.precision == "int8" and layer.kind == "dense"}
        tables_int8 = chosen["int8"] - dense_int8
        if dense_int8:
            mod, _ = quantize_dense_layers_int8(mod, self.int8, self.lanes, keys=dense_int8)
        if chosen["bf16"]:
            mod, _ = cast_dense_layers_bf16(mod, self.bf16, self.lanes, keys=chosen["bf16"])
        if tables_int8:
            mod = quantize_dense_weights_int8(mod, keys=tables_int8)
        return mod
