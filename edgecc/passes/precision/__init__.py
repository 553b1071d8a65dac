"""Precision passes: which numbers each layer computes in.

--precision:
  fp32   nothing.
  fp16   matmuls in FP16 with FP32 accumulation where the target has FP16 arithmetic
         (capabilities.fp16_math); elsewhere FP16 weight storage only, computed in FP32.
  int8   per-channel symmetric INT8 weights for dense layers and embedding tables. With
         capabilities.int8_math, dense layers also quantize their input (per-tensor scale calibrated
         from --calibration FILE.npz or built-in samples) and multiply in INT8 with int32
         accumulation; without it the weights are widened inside each matmul (dequantize-on-load).
  mixed  per-layer sensitivity search (sensitivity.py): INT8 weights for the layers the
         --max-accuracy-drop budget allows, FP32 for the most sensitive.
Each pass's statistics (layers quantized, choices) reach report.json["accuracy"] through the
pipeline's pass statistics.
"""

from __future__ import annotations

from edgecc.passes.precision.cast_matmuls_to_fp16 import CastMatmulsToFp16
from edgecc.passes.precision.quantize_dense_weights_int8 import QuantizeDenseWeightsInt8
from edgecc.passes.precision.sensitivity import ChooseLayerPrecisions


def precision_passes(options, target) -> list:
    capabilities = target.capabilities
    if options.precision == "fp16":
        return [CastMatmulsToFp16(fp16_math=capabilities.fp16_math)]
    if options.precision == "int8":
        return [QuantizeDenseWeightsInt8(int8_math=capabilities.int8_math, calibration=options.calibration)]
    if options.precision == "mixed":
        return [ChooseLayerPrecisions(calibration=options.calibration, max_accuracy_drop=options.max_accuracy_drop)]
    return []
