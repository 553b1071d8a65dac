from click.testing import CliRunner

from edgecc.cli import main
from edgecc.options import CompileOptions
from edgecc.passes import graph_passes, pass_name
from edgecc.targets import load_target

LAYOUT = ["convert_convs_to_nhwc", "pad_channels_to_vectors"]  # CPU-rule targets; no-ops without convolutions
FUSION = [
    "fuse_layer_norm",
    "fuse_bias_gelu_epilogue",
    "fuse_attention",
    "fold_transposes_into_matmuls",
    "sink_reshapes_below_elementwise",
]
PAD = ["pad_matmul_columns"]  # CPU-rule targets
FAST_MATH = ["expand_sigmoid", "multiply_by_reciprocals"]


def _names(options, target="host"):
    """The passes these options choose; clamp_gather_indices, which every compile ends with, checked apart."""
    passes = [pass_name(p) for p in graph_passes(options, load_target(target))]
    assert passes[-1] == "clamp_gather_indices"
    return passes[:-1]


def test_fusion_runs_by_default_and_is_off_with_no_fusion():
    assert _names(CompileOptions()) == LAYOUT + FUSION + PAD + FAST_MATH
    assert _names(CompileOptions(fusion=False)) == LAYOUT + PAD + FAST_MATH
    assert _names(CompileOptions(fusion=False, fast_math=False)) == LAYOUT + PAD


def test_sparsity_before_fusion_and_precision_after():
    names = _names(CompileOptions(sparse_attention="window=16", precision="int8"))
    assert names[:2] == LAYOUT and names[2] == "rewrite_attention_sparse" and names[3:8] == FUSION
    assert names[8:11] == PAD + FAST_MATH and len(names) == 12
    assert names[11] in ("quantize_dense_layers_int8", "quantize_dense_weights_int8")  # CPU-dependent


def test_kernels_with_cpu_schedules_only_for_cpu_targets():
    assert _names(CompileOptions(), "jetson-orin-nano") == [
        "fuse_layer_norm",
        "fuse_bias_gelu_epilogue",
        "sink_reshapes_below_elementwise",
        "expand_sigmoid",
        "multiply_by_reciprocals",
    ]
    assert _names(CompileOptions(), "raspberry-pi-5")[:2] == LAYOUT


def test_print_pipeline_lists_the_fusion_passes():
    result = CliRunner().invoke(main, ["compile", "tinybert-4", "--print-pipeline"])
    assert result.exit_code == 0, result.output
    for name in FUSION:
        assert f"- {name}" in result.output
    result = CliRunner().invoke(main, ["compile", "tinybert-4", "--print-pipeline", "--no-fusion"])
    assert "fuse_attention" not in result.output
