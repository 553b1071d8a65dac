"""Cross-compiling backends (Jetson CUDA, Apple Metal, Qualcomm Hexagon) on a tiny real Relax module.

Nothing here runs on the boards: each test opens the files the backend wrote and checks what they
really hold (ELF/Mach-O machine types, embedded sm_87 cubin, Metal source).
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from edgecc.backends import backend_for
from edgecc.backends._elf import cuda_device_code, elf_headers, library_machine, macho_arch
from edgecc.errors import ToolchainError
from edgecc.schedules.common import schedule_summary
from edgecc.schedules.gpu import unscheduled_kernels
from edgecc.targets import Toolchain, load_target


def _build_and_package(name, module, folder):
    target = load_target(name)
    backend = backend_for(target)
    scheduled = backend.default_schedule(module, target)
    executable = backend.build(scheduled, target)
    return target, backend.package(executable, target, folder)


@pytest.mark.parametrize("name", ["jetson-orin-nano", "apple-m2-metal"])
def test_gpu_default_schedule_binds_every_kernel(name, tiny_relax_module):
    target = load_target(name)
    assert unscheduled_kernels(tiny_relax_module) == ["fused_matmul_gelu", "sum"]
    scheduled = backend_for(target).default_schedule(tiny_relax_module, target)
    assert unscheduled_kernels(scheduled) == []
    assert schedule_summary(scheduled).by_source == {"dlight": 2}  # each kernel names its schedule's source
    assert unscheduled_kernels(tiny_relax_module) == ["fused_matmul_gelu", "sum"]  # the input is left alone


@pytest.mark.toolchain("nvcc", "aarch64-linux-gnu-g++")
def test_jetson_library_is_aarch64_with_sm87_device_code(tiny_relax_module, tmp_path):
    _, packaged = _build_and_package("jetson-orin-nano", tiny_relax_module, tmp_path)
    library = tmp_path / packaged.library
    assert library_machine(library) == "aarch64"
    headers = elf_headers(library)
    assert headers[0].machine == "aarch64" and headers[0].elf_type == "shared object"
    device = cuda_device_code(library)
    assert device["cubin_archs"] == ["sm_87"] and device["fatbin"]
    assert packaged.loadable and packaged.missing == []
    assert packaged.contents["cubin_archs"] == ["sm_87"]
    assert "tvm.cuda(0)" in packaged.load and "NVRTC" in packaged.load


@pytest.mark.toolchain("ld64.lld")
def test_metal_artifact_has_shader_source_and_arm64_macos_objects(tiny_relax_module, tmp_path):
    _, packaged = _build_and_package("apple-m2-metal", tiny_relax_module, tmp_path)
    assert macho_arch(tmp_path / packaged.library) == "arm64"
    for obj in ("model_host.o", "model_kernels.o"):
        assert macho_arch(tmp_path / obj) == "arm64"
        assert obj in packaged.files
    shaders = (tmp_path / "kernels.metal").read_text()
    assert "#include <metal_stdlib>" in shaders and "kernel void fused_matmul_gelu_kernel" in shaders
    # The packed device module carries the Metal source the Mac's runtime compiles at load.
    assert b"kernel void fused_matmul_gelu_kernel" in (tmp_path / "model_kernels.o").read_bytes()
    assert "clang -dynamiclib -arch arm64" in packaged.load and "tvm.metal()" in packaged.load


@pytest.mark.toolchain("ld.lld")
def test_hexagon_artifact_is_a_hexagon_elf_that_says_what_is_missing(tiny_relax_module, tmp_path):
    _, packaged = _build_and_package("snapdragon-8-gen-2-hexagon", tiny_relax_module, tmp_path)
    library = tmp_path / packaged.library
    assert library_machine(library) == "hexagon"
    assert elf_headers(library)[0].elf_type == "shared object"
    assert packaged.loadable is False
    assert any("Hexagon SDK" in item for item in packaged.missing)
    assert any("FastRPC" in item for item in packaged.missing)
    assert packaged.contents["cpu"] == "hexagonv73"


@pytest.mark.parametrize(
    "name, package",
    [("jetson-orin-nano", "g++-aarch64-linux-gnu"), ("apple-m2-metal", "lld"), ("snapdragon-8-gen-2-hexagon", "lld")],
)
def test_a_missing_toolchain_names_the_package_to_install(name, package, tiny_relax_module, tmp_path):
    target = load_target(name)
    absent = replace(target, toolchain=Toolchain("edgecc-no-such-linker", target.toolchain.package))
    backend = backend_for(target)
    with pytest.raises(ToolchainError, match=re.escape(f"apt-get install {package}")):
        executable = backend.build(backend.default_schedule(tiny_relax_module, absent), absent)
        backend.package(executable, absent, tmp_path)


def test_missing_nvcc_is_a_clear_toolchain_error(tiny_relax_module, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    target = load_target("jetson-orin-nano")
    with pytest.raises(ToolchainError, match="'nvcc' not found.*install"):
        backend_for(target).build(tiny_relax_module, target)


def test_gpu_default_schedule_keeps_kernels_that_tuning_already_scheduled(tiny_relax_module):
    import tvm
    from tvm.s_tir import dlight as dl
    from tvm_ffi import structural_equal

    target = load_target("jetson-orin-nano")
    # Stand-in for a tuned kernel: `sum` scheduled by another rule and marked as scheduled.
    with target.tvm():
        tuned = dl.ApplyDefaultSchedule(dl.gpu.Fallback())(tvm.IRModule({"sum": tiny_relax_module["sum"]}))
    module = tiny_relax_module
    module["sum"] = tuned["sum"]
    assert unscheduled_kernels(module) == ["fused_matmul_gelu"]
    untuned = module["fused_matmul_gelu"]
    scheduled = backend_for(target).default_schedule(module, target)
    assert unscheduled_kernels(scheduled) == []
    assert structural_equal(scheduled["sum"], tuned["sum"])
    assert not structural_equal(scheduled["fused_matmul_gelu"], untuned)


@pytest.mark.toolchain("nvcc", "aarch64-linux-gnu-g++")
@pytest.mark.parametrize("name", ["jetson-agx-orin", "jetson-orin-nx"])
def test_other_jetson_boards_build_sm87_libraries(name, tiny_relax_module, tmp_path):
    _, packaged = _build_and_package(name, tiny_relax_module, tmp_path)
    assert library_machine(tmp_path / packaged.library) == "aarch64"
    assert cuda_device_code(tmp_path / packaged.library)["cubin_archs"] == ["sm_87"]


@pytest.mark.toolchain("nvcc", "aarch64-linux-gnu-g++")
def test_jetson_builds_int8_matmuls_that_dlight_would_put_on_tensor_cores(tmp_path):
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((128, 256), "int8"))
    w = relax.Var("w", relax.TensorType((256, 128), "int8"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.matmul(x, w, out_dtype="int32")))
        bb.emit_func_output(out)
    module = relax.get_pipeline("zero")(bb.get())
    _, packaged = _build_and_package("jetson-orin-nano", module, tmp_path)
    assert cuda_device_code(tmp_path / packaged.library)["cubin_archs"] == ["sm_87"]


def test_compile_stops_at_resolve_target_when_the_cross_compiler_is_missing(tmp_path, monkeypatch):
    """Checked first: nothing is exported, imported or built for a target that cannot be linked."""
    import edgecc.targets
    from edgecc.options import CompileOptions
    from edgecc.pipeline import CompileContext, resolve_target

    board = load_target("raspberry-pi-5")
    absent = replace(board, toolchain=Toolchain("edgecc-no-such-compiler", board.toolchain.package))
    monkeypatch.setattr(edgecc.targets, "load_target", lambda name: absent)
    ctx = CompileContext(model="bert-tiny-test", options=CompileOptions(target="raspberry-pi-5"), log=lambda *_: None)
    with pytest.raises(ToolchainError, match=re.escape("apt-get install g++-aarch64-linux-gnu")):
        resolve_target(ctx)
    assert ctx.source is None
