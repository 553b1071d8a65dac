"""edgecc deploy for Jetson (CUDA), Apple Metal and Hexagon: what each bundle holds and says."""

from __future__ import annotations

import json
import shutil

import pytest
from fixtures_deploy import quiet, require_cross_tools

import edgecc
from edgecc.backends._elf import library_machine, macho_arch
from edgecc.bundle.check import minimal_sysroot, run_bundle


def _require_toolchain(target: str) -> None:
    from edgecc.errors import ToolchainError
    from edgecc.targets import load_target

    try:
        load_target(target).toolchain.require()
    except ToolchainError as exc:
        pytest.skip(str(exc))


def _compile_and_deploy(target: str, root):
    edgecc.compile("bert-tiny-test", target, root / "artifact", seq_len=16, log=quiet)
    return edgecc.deploy(root / "artifact", root / "bundle", log=quiet)


def test_jetson_bundle_states_its_cuda_needs_and_checks_them_at_open(tmp_path):
    require_cross_tools()
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed (CUDA toolkit), needed to compile Jetson device code")
    result = _compile_and_deploy("jetson-orin-nano", tmp_path)
    bundle = result.bundle
    cuda = json.loads((bundle / "model.json").read_text())["cuda"]
    major = int(cuda["nvcc_release"].split(".")[0])
    assert cuda["device_code"] == "sm_87" and cuda["min_driver_version"] == major * 1000
    assert cuda["runtime_library"] == f"libcudart.so.{major}"  # read from libtvm_runtime_cuda.so's DT_NEEDED
    assert library_machine(bundle / "lib" / "libtvm_runtime_cuda.so") == "aarch64"
    readme = (bundle / "README.md").read_text()
    assert f"CUDA {major}.0 or newer" in readme and "JetPack" in readme and "Not verified on a device" in readme
    # No CUDA driver under emulation: open fails with the one line the README promises, not a loader error.
    run = run_bundle(
        bundle, {}, tmp_path / "run", ("--info",), env={}, sysroot=minimal_sysroot("aarch64", tmp_path / "sysroot")
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "edgecc-run: error: this model runs on an NVIDIA GPU, but no CUDA driver (libcuda.so.1) was found; it needs "
        f"a driver for CUDA {major}.0 or newer (see README.md)"
    ]


@pytest.mark.slow  # downloads TVM's macOS arm64 wheels once (~80 MB, cached)
def test_metal_bundle_holds_the_macos_runtime_and_says_how_to_build_on_the_mac(tmp_path):
    _require_toolchain("apple-m2-metal")
    result = _compile_and_deploy("apple-m2-metal", tmp_path)
    bundle = result.bundle
    for name in ("libtvm_runtime.dylib", "libtvm_ffi.dylib", "libtvm_runtime_metal.dylib"):
        assert macho_arch(bundle / "lib" / name) == "arm64", name
    assert macho_arch(bundle / "model.dylib") == "arm64" and (bundle / "kernels.metal").is_file()
    assert not (bundle / "bin").exists()  # built on the Mac: no macOS SDK here
    assert json.loads((bundle / "model.json").read_text())["device_runtime_libraries"] == [
        "lib/libtvm_runtime_metal.dylib"
    ]
    readme = (bundle / "README.md").read_text()
    assert "cmake -S src -B build" in readme and "Not verified" in readme
    assert result.total_bytes < 15e6


@pytest.mark.slow
def test_hexagon_bundle_ships_the_library_and_what_the_sdk_must_add(tmp_path):
    _require_toolchain("snapdragon-8-gen-2-hexagon")
    result = _compile_and_deploy("snapdragon-8-gen-2-hexagon", tmp_path)
    bundle = result.bundle
    assert library_machine(bundle / "model_hexagon.so") == "hexagon"
    assert not (bundle / "lib").exists() and not (bundle / "bin").exists()
    readme = (bundle / "README.md").read_text()
    assert "Hexagon SDK" in readme and "hexagon_rpc" in readme and "Not verified" in readme
