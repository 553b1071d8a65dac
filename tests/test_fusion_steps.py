from click.testing import CliRunner

from edgecc.cli import main
from edgecc.options import CompileOptions
from edgecc.passes import graph_passes, pass_description
from edgecc.targets import load_target

FUSION = ["fuse_layer_norm", "fuse_bias_gelu_epilogue", "fuse_attention", "fold_transposes_into_matmuls",
          "sink_reshapes_below_elementwise"]


def _names(options, target="host"):
    """The passes these options choose; clamp_gather_indices, which every compile ends with, checked apart."""
    passes = [pass_description(p) for p in graph_passes(options, load_target(target))]
    assert passes[-1].startswith("clamp_gather_indices")
    return passes[:-1]


def test_fusion_runs_by_default_and_is_off_with_no_fusion():
    assert _names(CompileOptions()) == FUSION
    assert _names(CompileOptions(fusion=False)) == []


def test_sparsity_before_fusion_and_precision_after():
    names = _names(CompileOptions(sparse_attention="window=16", precision="int8"))
    assert names[0].startswith("rewrite_attention_sparse") and names[1:6] == FUSION
    assert names[6].startswith(("quantize_dense_layers_int8", "quantize_dense_weights_int8"))  # CPU-dependent


def test_kernels_with_cpu_schedules_only_for_cpu_targets():
    assert _names(CompileOptions(), "jetson-orin-nano") == ["fuse_layer_norm", "fuse_bias_gelu_epilogue",
                                                            "sink_reshapes_below_elementwise"]


def test_print_pipeline_lists_the_fusion_passes():
    result = CliRunner().invoke(main, ["compile", "tinybert-4", "--print-pipeline"])
    assert result.exit_code == 0, result.output
    for name in FUSION:
        assert f"- {name}" in result.output
    result = CliRunner().invoke(main, ["compile", "tinybert-4", "--print-pipeline", "--no-fusion"])
    assert "fuse_attention" not in result.output
