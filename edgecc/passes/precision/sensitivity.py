"""Mixed precision: measure each layer's sensitivity and keep the most sensitive ones in FP32.

Sensitivity of a layer = accuracy drop (1 - mean cosine similarity of the model's output vs FP32;
mean-pooled over real tokens when the model takes an attention mask) on calibration samples when
only that layer's weight is quantized to per-channel INT8. The model is built once for this
machine with its dense weights lifted to parameters, so each trial only swaps weight arrays.

Then layers are quantized from the least to the most sensitive; a binary search over that order
finds the largest set whose combined drop stays within the budget (with a safety margin, because
the final check runs on different, held-out inputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm

# Fraction of --max-accuracy-drop the search may spend on calibration inputs.
SEARCH_MARGIN = 0.5
DEFAULT_BUDGET = 0.01


@dataclass
class LayerChoice:
    key: str
    name: str
    kind: str
    shape: list
    sensitivity: float
    precision: str

    def to_dict(self) -> dict:
        return {
            "layer": self.name,
            "key": self.key,
            "kind": self.kind,
            "shape": self.shape,
            "sensitivity": self.sensitivity,
            "precision": self.precision,
        }


def lift_weights(mod, keys: set[str]):
    """`main` taking the chosen constant weights as extra trailing parameters; returns (module, keys in order)."""
    import tvm
    from tvm import relax

    from edgecc.passes.precision.dense_weights import dense_weight, embedding_table, weight_key

    func = mod["main"]
    new_params, order, by_key, blocks = list(func.params), [], {}, []
    for block in func.body.blocks:
        bindings = []
        for binding in block.bindings:
            value = binding.value
            for finder, index in ((dense_weight, 1), (embedding_table, 0)):
                array = finder(value) if isinstance(value, relax.Call) else None
                if array is None or weight_key(array) not in keys:
                    continue
                key = weight_key(array)
                if key not in by_key:
                    by_key[key] = relax.Var(f"w_{len(order)}", relax.TensorType(array.shape, "float32"))
                    new_params.append(by_key[key])
                    order.append(key)
                args = list(value.args)
                args[index] = by_key[key]
                value = relax.Call(value.op, args, value.attrs, value.ty_args)
                binding = relax.VarBinding(binding.var, value)
            bindings.append(binding)
        blocks.append(
            relax.DataflowBlock(bindings) if isinstance(block, relax.DataflowBlock) else relax.BindingBlock(bindings)
        )
    body = relax.BlockBuilder().normalize(relax.SeqExpr(blocks, func.body.body))
    lifted = relax.Function(new_params, body, attrs=func.attrs)
    # other functions keep their GlobalVars: `main` may call PrimFuncs a graph pass added
    return tvm.IRModule({gv: (lifted if gv.name_hint == "main" else f) for gv, f in mod.functions_items()}), order


def output_drop(candidate: list[np.ndarray], reference: list[np.ndarray], masks: list | None) -> float:
    from edgecc.measure.accuracy import cosine_rows, mean_pool

    cosines = []
    for index, (c, r) in enumerate(zip(candidate, reference)):
        if masks is not None and c.ndim == 3:
            c, r = mean_pool(c, masks[index]), mean_pool(r, masks[index])
        cosines.extend(cosine_rows(c.reshape(len(c), -1), r.reshape(len(r), -1)))
    return float(1.0 - np.mean(cosines))


def choose_layer_precisions(mod, samples: list[dict], budget: float | None, log=print) -> list[LayerChoice]:
    from edgecc.passes.precision.calibration import build_on_host, input_specs
    from edgecc.passes.precision.dense_weights import list_dense_layers
    from edgecc.passes.precision.quantize_dense_weights_int8 import fake_quantize

    budget = DEFAULT_BUDGET if budget is None else budget
    layers = list_dense_layers(mod)
    if not layers:
        return []
    lifted, order = lift_weights(mod, {layer["key"] for layer in layers})
    info = {layer["key"]: layer for layer in layers}
    fp32 = _weights_by_key(mod, set(order))
    int8 = {key: fake_quantize(w, axis=0 if info[key]["kind"] == "embedding" else 1) for key, w in fp32.items()}
    log(f"mixed precision: measuring the sensitivity of {len(order)} layers on {len(samples)} samples ...")
    run = build_on_host(lifted)
    names = [s.name for s in input_specs(mod)]
    masks = [s["attention_mask"] for s in samples] if "attention_mask" in names else None

    def evaluate(quantized: set[str]) -> list[np.ndarray]:
        weights = [int8[k] if k in quantized else fp32[k] for k in order]
        return [run([s[n] for n in names] + weights)[0] for s in samples]

    reference = evaluate(set())
    sensitivity = {key: output_drop(evaluate({key}), reference, masks) for key in order}
    ranked = sorted(order, key=lambda k: sensitivity[k])
    allowed = budget * SEARCH_MARGIN

    def drop_for(count: int) -> float:
        return output_drop(evaluate(set(ranked[:count])), reference, masks) if count else 0.0

    low, high = 0, len(ranked)
    if drop_for(high) > allowed:
        high -= 1
        while low < high:  # largest count whose drop fits the budget
            middle = (low + high + 1) // 2
            if drop_for(middle) <= allowed:
                low = middle
            else:
                high = middle - 1
    kept = set(ranked[:high])
    return [
        LayerChoice(
            key,
            f"{info[key]['kind']}_{index}",
            info[key]["kind"],
            info[key]["shape"],
            sensitivity[key],
            "int8" if key in kept else "fp32",
        )
        for index, key in enumerate(order)
    ]


def _weights_by_key(mod, keys: set[str]) -> dict[str, np.ndarray]:
    from tvm import relax

    from edgecc.passes.precision.dense_weights import dense_weight, embedding_table, weight_key

    found = {}

    def visit(expr):
        if isinstance(expr, relax.Call):
            for finder in (dense_weight, embedding_table):
                array = finder(expr)
                if array is not None and weight_key(array) in keys:
                    found[weight_key(array)] = array

    relax.analysis.post_order_visit(mod["main"], visit)
    return found


@dataclass(frozen=True)
class LayerPrecisionStats:
    choices: list = field(default_factory=list)  # LayerChoice.to_dict() per layer, program order


@tvm.transform.module_pass(opt_level=0, name="choose_layer_precisions")
class ChooseLayerPrecisions:
    """Mixed precision: per-layer INT8/FP32 by sensitivity within the accuracy budget, then quantize."""

    def __init__(self, calibration: Path | None = None, max_accuracy_drop: float | None = None):
        self.calibration = calibration
        self.max_accuracy_drop = max_accuracy_drop
        self.stats = LayerPrecisionStats()

    @property
    def description(self) -> str:
        return "int8/fp32 by sensitivity"

    def transform_module(self, mod, _ctx):
        from edgecc.passes.precision.calibration import calibration_samples
        from edgecc.passes.precision.dense_weights import fold_weight_transposes
        from edgecc.passes.precision.quantize_dense_weights_int8 import quantize_dense_weights_int8

        mod = fold_weight_transposes(mod)
        samples = calibration_samples(mod, self.calibration, count=4)
        choices = choose_layer_precisions(mod, samples, self.max_accuracy_drop)
        self.stats = LayerPrecisionStats([c.to_dict() for c in choices])
        return quantize_dense_weights_int8(mod, keys={c.key for c in choices if c.precision == "int8"})
