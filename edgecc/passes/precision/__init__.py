"""Precision passes: which numbers each layer computes in.

--precision:
  fp32   nothing.
  fp16   on a CPU with FP16 arithmetic (aarch64 +fullfp16) every dense layer computes in FP16
         (`fmla .8h`, FP16 accumulators over short K blocks, FP32 across blocks); on GPU targets with
         capabilities.fp16_math matmul operands FP16 with FP32 accumulation; elsewhere (x86) FP16
         weight storage only, computed in FP32, and the compile says so (cast_matmuls_to_fp16.py).
  bf16   dense layers in BF16 with FP32 accumulation on CPUs with AVX512-BF16 (vdpbf16ps; AMX
         tdpbf16ps tiles where the CPU has them, edgecc.schedules.matmul_amx), weights
         and embedding tables stored bf16 (cast_dense_layers_bf16.py); elsewhere FP32, and the
         compile says so.
  int8   on a CPU with an INT8 dot-product instruction (AMX tdpbusd, VNNI, AVX-512BW/AVX2 vpmaddubsw, aarch64
         sdot, i8mm smmla) every dense layer computes in INT8: activations quantized per row at run time (static
         per-tensor scales with --calibration), int32 accumulation, dequantize in the epilogue
         (quantize_dense_layers_int8.py). Other targets: per-channel INT8 weights, and with
         capabilities.int8_math calibrated per-tensor INT8 matmuls where the activation error allows,
         else dequantize-on-load (quantize_dense_weights_int8.py).
  mixed  INT8 / BF16 / FP32 per layer from measured latency and simulated sensitivity within
         --max-accuracy-drop, with the Pareto front (choose_mixed_precisions.py); on a target with
         neither instruction, INT8 weights for the layers the budget allows (sensitivity.py).
INT8 and BF16 layers are kept only where they time faster than FP32 here (low_precision_timing.py;
boards that do not run here keep them untimed). Each pass's statistics (layers, fallbacks and why,
choices) reach report.json through the pipeline's pass statistics.
"""

from __future__ import annotations

from edgecc.passes.precision.cast_matmuls_to_fp16 import CastMatmulsToFp16
from edgecc.passes.precision.quantize_dense_weights_int8 import QuantizeDenseWeightsInt8
from edgecc.passes.precision.sensitivity import ChooseLayerPrecisions


def precision_passes(options, target) -> list:
    from edgecc.passes.precision.low_precision_timing import runs_here
    from edgecc.schedules.matmul_dot import dot_instruction

    capabilities = target.capabilities
    int8 = dot_instruction(target, "int8") if capabilities.int8_math else None
    bf16 = dot_instruction(target, "bf16")
    timed = runs_here(options, target)
    from edgecc.schedules import vector_lanes

    lanes = vector_lanes(target) if int8 or bf16 else 0  # only LLVM CPU targets have either
    if options.precision == "fp16":
        from edgecc.backends import backend_for
        from edgecc.schedules.matmul_fp16 import fp16_instruction

        fp16 = fp16_instruction(target)
        # CPU kernels compute FP16 only on the FP16 instruction; GPU kernels wherever the board has FP16 math
        gpu_fp16 = capabilities.fp16_math and not backend_for(target).cpu_kernels
        return [CastMatmulsToFp16(fp16_math=gpu_fp16, instruction=fp16, target=target, timed=timed)]
    from edgecc.passes.attention.fuse_attention import ATTENTION_ON_TILES, attention_on_tiles
    from edgecc.passes.precision.quantize_dense_layers_int8 import ATTENTION

    tiles = attention_on_tiles(options, target)
    attention = ATTENTION_ON_TILES[tiles] if tiles else ATTENTION
    if options.precision == "bf16":
        from edgecc.passes.precision.cast_dense_layers_bf16 import CastDenseLayersBf16

        return [CastDenseLayersBf16(bf16, lanes, target, timed, attention=attention)]
    if options.precision == "int8" and int8:
        from edgecc.passes.precision.quantize_dense_layers_int8 import QuantizeDenseLayersInt8

        return [
            QuantizeDenseLayersInt8(int8, lanes, target, timed, calibration=options.calibration, attention=attention)
        ]
    if options.precision == "int8":
        return [QuantizeDenseWeightsInt8(int8_math=capabilities.int8_math, calibration=options.calibration)]
    if options.precision == "mixed" and (int8 or bf16):
        from edgecc.passes.precision.choose_mixed_precisions import ChooseMixedPrecisions

        return [
            ChooseMixedPrecisions(
                int8,
                bf16,
                lanes,
                target,
                timed,
                max_accuracy_drop=options.max_accuracy_drop,
                calibration=options.calibration,
            )
        ]
    if options.precision == "mixed":
        return [ChooseLayerPrecisions(calibration=options.calibration, max_accuracy_drop=options.max_accuracy_drop)]
    return []
