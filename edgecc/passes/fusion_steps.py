"""The fusion passes the pipeline runs for given options and target (off with --no-fusion).

  fuse layer norm                decomposed LayerNorm (mean, var, sqrt, div, gamma, beta) -> R.nn.layer_norm
  fuse bias gelu epilogue        R.nn.gelu / gelu_tanh -> the erf / tanh formula, which FastMathTransform
                                 makes a polynomial and FuseOps puts in the matmul's epilogue
  fuse attention                 QK^T, scale, mask, softmax (+ torch's isnan/where), V and the head
                                 split/merge transposes -> one pre-scheduled kernel (CPU targets)
  fold transposes into matmuls   matmul of activations fed through reshape/permute/scalar scaling ->
                                 one pre-scheduled kernel reading the sources (CPU targets)
  sink reshapes below elementwise   reshape -> GELU / residual add -> reshape becomes GELU / add ->
                                 reshape, so FuseOps puts them in the matmul's epilogue

Bias + erf-GELU as the ONNX exporter writes it needs no pass: TVM's FuseOps already puts it in the
matmul kernel (tests/test_pass_fuse_bias_gelu_epilogue.py checks that it stays so).
"""

from __future__ import annotations


def fusion_steps(options, target) -> list[tuple[str, object]]:
    from .fold_transposes_into_matmuls import FoldTransposesIntoMatmuls
    from .fuse_attention import FuseAttention
    from .fuse_bias_gelu_epilogue import fuse_bias_gelu_epilogue
    from .fuse_layer_norm import fuse_layer_norm
    from .sink_reshapes_below_elementwise import sink_reshapes_below_elementwise

    if not getattr(options, "fusion", True):
        return []
    steps: list[tuple[str, object]] = [("fuse layer norm", fuse_layer_norm),
                                       ("fuse bias gelu epilogue", fuse_bias_gelu_epilogue)]
    if target is None or target.kind == "llvm":  # these kernels carry their own CPU schedules
        lanes = _lanes(target)
        steps.append(("fuse attention", FuseAttention(options, lanes)))
        # after fuse attention: folding first would hide the attention pattern
        steps.append(("fold transposes into matmuls", FoldTransposesIntoMatmuls(options, lanes)))
    # last: the passes above look through reshapes to find their patterns
    steps.append(("sink reshapes below elementwise", sink_reshapes_below_elementwise))
    return steps


def _lanes(target) -> int:
    from .fuse_attention import LANES

    if target is None:
        return LANES
    try:
        from ..schedules import vector_lanes

        return vector_lanes(target)
    except Exception:  # a target without LLVM CPU features
        return LANES
