"""The precision passes the pipeline runs for given options and target.

--precision:
  fp32   nothing.
  fp16   matmuls in FP16 with FP32 accumulation where the target has FP16 arithmetic
         (capabilities.fp16_math); elsewhere FP16 weight storage only, computed in FP32.
  int8   per-channel symmetric INT8 weights for dense layers and embedding tables. With
         capabilities.int8_math, dense layers also quantize their input (per-tensor scale calibrated
         from --calibration FILE.npz or built-in samples) and multiply in INT8 with int32
         accumulation; without it the weights are widened inside each matmul (dequantize-on-load).
  mixed  per-layer sensitivity search (edgecc.sensitivity): INT8 weights for the layers the
         --max-accuracy-drop budget allows, FP32 for the most sensitive; choices go to
         options.extra["precision_choices"] and from there into report.json["accuracy"]["layers"].
"""

from __future__ import annotations

from ..errors import EdgeccError

PRECISIONS = ("fp32", "fp16", "int8", "mixed")


class CalibrateAndQuantizeInt8:
    """INT8 weights; INT8 math with calibrated activation scales where the target has it."""

    def __init__(self, options, int8_math: bool):
        self.options = options
        self.int8_math = int8_math

    def __call__(self, mod):
        from ..calibration import MAX_ACTIVATION_ERROR, activation_scales, calibration_samples
        from .dense_weights import fold_weight_transposes
        from .quantize_dense_weights_int8 import quantize_dense_weights_int8

        mod = fold_weight_transposes(mod)
        from .dense_weights import list_dense_layers

        scales, errors = None, {}
        if self.int8_math:
            samples = calibration_samples(mod, getattr(self.options, "calibration", None))
            scales = activation_scales(mod, samples, report=errors)
        extra = getattr(self.options, "extra", None)
        if isinstance(extra, dict):
            layers = list_dense_layers(mod)
            dense = [layer for layer in layers if layer["kind"] == "dense"]
            extra["int8"] = {
                "weights": "per-channel symmetric int8", "layers": len(layers),
                "int8_math_layers": len(scales or {}),
                "dequantize_on_load_layers": len(dense) - len(scales or {}),
                "activation_error_limit": MAX_ACTIVATION_ERROR if self.int8_math else None,
                "calibration": str(getattr(self.options, "calibration", None) or "built-in samples")
                if self.int8_math else None,
                "activation_errors": {k: round(v, 5) for k, v in errors.items()}}
        return quantize_dense_weights_int8(mod, int8_math=self.int8_math, activation_scales=scales)


class ChooseLayerPrecisions:
    """Mixed precision: search per-layer INT8/FP32 within the accuracy budget, then quantize."""

    def __init__(self, options):
        self.options = options

    def __call__(self, mod):
        from ..calibration import calibration_samples
        from ..sensitivity import choose_layer_precisions
        from .dense_weights import fold_weight_transposes
        from .quantize_dense_weights_int8 import quantize_dense_weights_int8

        mod = fold_weight_transposes(mod)
        samples = calibration_samples(mod, getattr(self.options, "calibration", None), count=4)
        choices = choose_layer_precisions(mod, samples, getattr(self.options, "max_accuracy_drop", None))
        extra = getattr(self.options, "extra", None)
        if isinstance(extra, dict):
            extra["precision_choices"] = [c.to_dict() for c in choices]
        keys = {c.key for c in choices if c.precision == "int8"}
        return quantize_dense_weights_int8(mod, keys=keys)


def precision_steps(options, target) -> list[tuple[str, object]]:
    from .cast_matmuls_to_fp16 import CastMatmulsToFp16

    precision = getattr(options, "precision", "fp32") or "fp32"
    if precision not in PRECISIONS:
        raise EdgeccError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    capabilities = target.capabilities
    if precision == "fp16":
        name = "cast matmuls to fp16" if capabilities.fp16_math else "store weights as fp16 (no fp16 math on target)"
        return [(name, CastMatmulsToFp16(capabilities.fp16_math))]
    if precision == "int8":
        name = ("quantize dense layers int8 (int8 math)" if capabilities.int8_math
                else "quantize dense weights int8 (dequantize on load)")
        return [(name, CalibrateAndQuantizeInt8(options, capabilities.int8_math))]
    if precision == "mixed":
        return [("choose layer precisions (int8/fp32 by sensitivity)", ChooseLayerPrecisions(options))]
    return []
