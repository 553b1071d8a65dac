"""Graph passes: each a `tvm.transform.module_pass` in one file, named verb-noun, with typed stats.

`graph_passes(options, target)` is the flat list the compile pipeline runs, in order:

  convert_convs_to_nhwc          NCHW convolutions -> NHWC / HWIO, BatchNorm folded, transposes paid
                                 once at the model's edges (targets whose kernels the CPU rules schedule)
  pad_channels_to_vectors        NHWC channel counts that are no whole number of vectors (220) padded
                                 with zero channels
  rewrite_attention_sparse       --sparse-attention: attention over the kept key blocks only
  fuse_layer_norm                decomposed LayerNorm (mean, var, sqrt, div, gamma, beta) -> R.nn.layer_norm
  fuse_bias_gelu_epilogue        R.nn.gelu / gelu_tanh -> the erf / tanh formula, which FastMathTransform
                                 makes a polynomial and FuseOps puts in the matmul's epilogue
  fuse_attention                 QK^T, scale, mask, softmax (+ torch's isnan/where), V and the head
                                 split/merge transposes -> one pre-scheduled kernel (CPU kernels)
  fold_transposes_into_matmuls   matmul of activations fed through reshape/permute/scalar scaling ->
                                 one pre-scheduled kernel reading the sources (CPU kernels)
  sink_reshapes_below_elementwise   reshape -> GELU / residual add -> reshape becomes GELU / add ->
                                 reshape, so FuseOps puts them in the matmul's epilogue
  expand_sigmoid                 fast math: sigmoid -> 1 / (1 + exp(-x)), vectorised by FastMathTransform
  multiply_by_reciprocals        fast math: x / constant -> x * (1 / constant), a multiply for a divide
  precision passes               --precision (passes/precision/__init__.py)
  clamp_gather_indices           every gather, scatter and RoI pool of caller-given (or computed)
                                 indices clamps them into its tensor: the library never reads or writes
                                 out of bounds, whatever indices a caller passes

Order matters: the layout passes run first, so every later pass sees the NHWC graph; sparsity
matches the dense attention that fusion would replace, and both match FP32 patterns that precision
rewrites; fold_transposes runs after fuse_attention (folding first would hide the attention
pattern); sink_reshapes after the fusions (they look through reshapes), expand_sigmoid after it
(sink_reshapes moves a sigmoid as one op); multiply_by_reciprocals after the fusions (their
patterns match the divisions the exporter writes) and before precision (whose quantization
divisions stay exact); clamp_gather_indices after everything that emits a take
(precision passes re-emit embedding takes).
Bias + erf-GELU as the ONNX exporter writes it needs no pass: TVM's FuseOps already puts it in the
matmul kernel (tests/test_pass_fuse_bias_gelu_epilogue.py checks that it stays so).
"""

from __future__ import annotations


def graph_passes(options, target) -> list:
    from edgecc.backends import backend_for
    from edgecc.passes.attention.fuse_attention import FuseAttention, attention_on_tiles
    from edgecc.passes.attention.rewrite_attention_sparse import RewriteAttentionSparse
    from edgecc.passes.attention.sparse_pattern import parse_sparse_attention
    from edgecc.passes.clamp_gather_indices import ClampGatherIndices
    from edgecc.passes.convert_convs_to_nhwc import ConvertConvsToNHWC
    from edgecc.passes.expand_sigmoid import ExpandSigmoid
    from edgecc.passes.fold_transposes_into_matmuls import FoldTransposesIntoMatmuls
    from edgecc.passes.fuse_bias_gelu_epilogue import FuseBiasGeluEpilogue
    from edgecc.passes.fuse_layer_norm import FuseLayerNorm
    from edgecc.passes.multiply_by_reciprocals import MultiplyByReciprocals
    from edgecc.passes.pad_channels_to_vectors import PadChannelsToVectors
    from edgecc.passes.pad_matmul_columns import PadMatmulColumns
    from edgecc.passes.precision import precision_passes
    from edgecc.passes.sink_reshapes_below_elementwise import SinkReshapesBelowElementwise
    from edgecc.schedules.attention import INT8_PRODUCTS

    passes = []
    if backend_for(target).nhwc_convs:
        from edgecc.schedules import vector_lanes

        passes += [ConvertConvsToNHWC(), PadChannelsToVectors(lanes=vector_lanes(target))]
    if options.sparse_attention:
        passes.append(RewriteAttentionSparse(parse_sparse_attention(options.sparse_attention)))
    if options.fusion:
        passes += [FuseLayerNorm(), FuseBiasGeluEpilogue()]
        if backend_for(target).cpu_kernels:  # these passes build kernels with their own CPU schedules
            from edgecc.passes.precision.low_precision_timing import runs_here
            from edgecc.schedules import vector_lanes
            from edgecc.schedules.parameters import vector_registers

            lanes = vector_lanes(target)

            tiles = attention_on_tiles(options, target)
            timing_target = target.tvm() if tiles in INT8_PRODUCTS and runs_here(options, target) else None
            passes += [
                FuseAttention(
                    lanes=lanes,
                    fast_math=options.fast_math,
                    tiles=tiles,
                    timing_target=timing_target,
                    registers=vector_registers(target),
                ),
                FoldTransposesIntoMatmuls(lanes=lanes),
            ]
        passes.append(SinkReshapesBelowElementwise())
    if backend_for(target).cpu_kernels:  # after attention fusion, whose pattern a slice would break
        from edgecc.schedules import vector_lanes

        passes.append(PadMatmulColumns(lanes=vector_lanes(target)))
    if options.fast_math:
        passes += [ExpandSigmoid(), MultiplyByReciprocals()]
    return passes + precision_passes(options, target) + [ClampGatherIndices()]


def pass_name(graph_pass) -> str:
    return graph_pass.info.name


def pass_description(graph_pass) -> str:
    """The pass's name, with what its arguments make it do (for --print-pipeline and the log)."""
    detail = getattr(graph_pass, "description", "")
    return f"{pass_name(graph_pass)} ({detail})" if detail else pass_name(graph_pass)
