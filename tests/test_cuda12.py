"""Jetson with JetPack 6: `--cuda 12` device code (NVRTC 12.2), TVM's CUDA 12 runtime module built from source,
and a bundle that opens under QEMU up to the first call into a (stand-in) CUDA 12.2 driver.

Needs the pip packages of backends/cuda_toolkits.py (nvidia-cuda-nvrtc-cu12 12.2, nvidia-cuda-runtime-cu12 12.2,
nvidia-cuda-cccl-cu12), the aarch64 cross toolchain and QEMU; building the runtime module also needs a TVM source
checkout: EDGECC_TVM_SOURCE (a work tree, or a bare git directory whose HEAD is archived). Each skips with a reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from fixtures_deploy import quiet, require_cross_tools

from edgecc.backends._elf import cuda_device_code, elf_headers, read_elf_header
from edgecc.backends.cuda_toolkits import TOOLKITS
from edgecc.bundle.cuda import CudaNeeds, cuda_needs, device_release
from edgecc.bundle.elf_needs import read_elf_needs
from edgecc.errors import EdgeccError

NEEDED_PACKAGES = {"nvidia.cuda_nvrtc": 0, "nvidia.cuda_runtime": 1, "nvidia.cuda_cccl": 2}


def _require_nvrtc12():
    missing = []
    for module, index in NEEDED_PACKAGES.items():
        if importlib.util.find_spec("nvidia") is None or importlib.util.find_spec(module) is None:
            missing.append(TOOLKITS["12"].compile_packages[index])
    if missing:
        pytest.skip(f"CUDA 12 device code needs `pip install {' '.join(missing)}`")


def _tvm_source() -> Path:
    given = os.environ.get("EDGECC_TVM_SOURCE")
    if not given or not Path(given).exists():
        pytest.skip("set EDGECC_TVM_SOURCE to a checkout (or bare clone) of apache/tvm to build TVM's CUDA 12 module")
    return Path(given)


@pytest.fixture(scope="session")
def cuda12_artifact(tmp_path_factory):
    import edgecc

    _require_nvrtc12()
    require_cross_tools()
    root = tmp_path_factory.mktemp("cuda12")
    edgecc.compile("bert-tiny-test", "jetson-orin-nano", root / "artifact", seq_len=16, cuda="12", log=quiet)
    return root / "artifact"


@pytest.fixture(scope="session")
def cuda12_runtime_module():
    """TVM's CUDA 12 runtime module: from edgecc's cache, else built once from EDGECC_TVM_SOURCE."""
    from edgecc.bundle.cuda_runtime_build import cached_runtime_folder, cuda12_runtime

    require_cross_tools()
    library = cached_runtime_folder() / "libtvm_runtime_cuda.so"
    source = None if library.is_file() else _tvm_source()
    return cuda12_runtime(source, log=quiet)


def test_cuda12_compile_holds_sm87_sass_from_cuda_12(cuda12_artifact):
    manifest = json.loads((cuda12_artifact / "manifest.json").read_text())
    contents = manifest["contents"]
    assert contents["cuda_toolkit"] == "12" and contents["cuda_release"] == "12.2"
    assert contents["device_compiler"].startswith("NVRTC 12.2") and "nvcc" not in contents
    device = cuda_device_code(cuda12_artifact / "model.so")
    assert device["cubin_archs"] == ["sm_87"] and device["cubin_cuda"] == ["12 or older"]
    cubins = [h for h in elf_headers(cuda12_artifact / "model.so") if h.machine == "cuda"]
    assert cubins and all(h.abi_version == 7 for h in cubins)  # CUDA 13 cubins are ABI 8: a 12.x driver refuses them
    assert device_release(contents) == (12, 2)


def test_cuda_sm_arch_reads_both_cubin_abis():
    from edgecc.backends._elf import cuda_sm_arch

    def cubin(abi: int, flags: int) -> bytes:
        header = bytearray(64)
        header[:4], header[4], header[5], header[8] = b"\x7fELF", 2, 1, abi
        header[16:20] = (2).to_bytes(2, "little") + (190).to_bytes(2, "little")
        header[48:52] = flags.to_bytes(4, "little")
        return bytes(header)

    assert cuda_sm_arch(read_elf_header(cubin(7, 0x570557))) == "sm_87"  # NVRTC 12.2, seen
    assert cuda_sm_arch(read_elf_header(cubin(8, 0x6005704))) == "sm_87"  # nvcc 13.0, seen


def test_cuda_needs_reads_old_and_new_manifests():
    assert device_release({"nvcc": "Cuda compilation tools, release 13.0, V13.0.88"}) == (13, 0)
    assert device_release({"cuda_release": "12.2", "nvcc": "release 13.0"}) == (12, 2)
    needs = CudaNeeds((12, 2), "libcudart.so.12", "sm_87", "NVRTC 12.2", (12, 2))
    assert needs.min_driver_version == 12020 and "JetPack 6" in needs.jetpack
    assert "nvcc_release" not in needs.to_model_json()
    assert (
        CudaNeeds((13, 0), "libcudart.so.13", "sm_87", "Cuda compilation tools, release 13.0").min_driver_version
        == 13000
    )


def test_cuda_option_is_refused_for_other_targets():
    from edgecc.backends.cuda_toolkits import select_cuda, toolkit
    from edgecc.targets import load_target

    with pytest.raises(EdgeccError, match="--cuda applies to CUDA"):
        select_cuda(load_target("raspberry-pi-5"), "12")
    with pytest.raises(EdgeccError, match="CUDA 12 or 13"):
        toolkit("11")
    assert select_cuda(load_target("jetson-orin-nano"), "12").extra["cuda"] == "12"


def test_cuda12_runtime_module_is_aarch64_links_cudart12_and_registers_like_the_wheels(cuda12_runtime_module):
    from edgecc.backends._elf import library_machine
    from edgecc.bundle.cuda_runtime_build import REGISTERED, build_record
    from edgecc.bundle.runtime_libs import runtime_libraries

    module = cuda12_runtime_module
    assert library_machine(module) == "aarch64"
    needed = read_elf_needs(module).needed
    assert "libcudart.so.12" in needed and "libcuda.so.1" in needed and "libcudart.so.13" not in needed
    assert {"libtvm_runtime.so", "libtvm_ffi.so"} <= set(needed)
    data = module.read_bytes()
    assert all(name.encode() + b"\0" in data for name in REGISTERED)
    # every global the wheel's (CUDA 13) module registers, this one registers too
    wheel_module = runtime_libraries("linux", "aarch64").path("libtvm_runtime_cuda").read_bytes()
    for name in (b"device_api.cuda", b"ffi.Module.load_from_bytes.cuda", b"vm.builtin.cuda_graph.run_or_capture"):
        assert (name + b"\0" in wheel_module) == (name + b"\0" in data)
    record = build_record(module)
    assert record["tvm_version"] and record["cuda_release"].startswith("12.")
    if record["oldest_cudart"]["checked"]:
        assert record["oldest_cudart"]["missing"] == [], record["oldest_cudart"]


def _stub_driver(folder: Path, version: int, module: Path) -> None:
    """A stand-in libcuda.so.1: reports `version` and one GPU; every other call answers CUDA_ERROR_NO_DEVICE."""
    listed = subprocess.run(
        ["aarch64-linux-gnu-nm", "-D", "--undefined-only", str(module)], capture_output=True, text=True, check=True
    ).stdout
    names = sorted(
        {ln.split()[-1] for ln in listed.splitlines() if ln.split()[-1][:2] == "cu" and ln.split()[-1][2].isupper()}
    )
    source = folder / "libcuda_stub.c"
    source.write_text(
        f"int cuDriverGetVersion(int *v) {{ *v = {version}; return 0; }}\n"
        "int cuInit(unsigned flags) { return 0; }\n"
        "int cuDeviceGetCount(int *n) { *n = 1; return 0; }\n"
        + "".join(f"int {name}(void) {{ return 100; }}\n" for name in names)
    )
    lib = folder / "lib" / "aarch64-linux-gnu"
    subprocess.run(
        [
            "aarch64-linux-gnu-gcc",
            "-shared",
            "-fPIC",
            "-Wl,-soname,libcuda.so.1",
            "-o",
            str(lib / "libcuda.so.1"),
            str(source),
        ],
        check=True,
    )


def test_cuda12_bundle_says_jetpack6_and_opens_under_qemu_up_to_the_driver(
    cuda12_artifact, cuda12_runtime_module, tmp_path
):
    import edgecc
    from edgecc.bundle.check import minimal_sysroot, run_bundle
    from edgecc.bundle.cuda_runtime_build import cuda12_aarch64

    result = edgecc.deploy(cuda12_artifact, tmp_path / "bundle", log=quiet)
    bundle = result.bundle
    cuda = json.loads((bundle / "model.json").read_text())["cuda"]
    assert cuda["min_driver_version"] == 12020 and cuda["runtime_library"] == "libcudart.so.12"
    assert cuda["cuda_release"] == "12.2" and cuda["device_code"] == "sm_87" and "JetPack 6" in cuda["jetpack"]
    assert read_elf_needs(bundle / "lib" / "libtvm_runtime_cuda.so").needed.count("libcudart.so.12") == 1
    readme = (bundle / "README.md").read_text()
    assert "CUDA 12.2 or newer" in readme and "JetPack 6" in readme and "Not verified on a device" in readme
    assert not list(bundle.rglob("libcuda.so*")) and not list(bundle.rglob("libcudart*"))  # the board's own

    sysroot = minimal_sysroot("aarch64", tmp_path / "sysroot")
    shutil.copy2(cuda12_aarch64(log=quiet) / "lib" / "libcudart.so.12", sysroot / "lib" / "aarch64-linux-gnu")
    module = bundle / "lib" / "libtvm_runtime_cuda.so"
    # A JetPack 6.0 driver (CUDA 12.2) with a GPU that fails every call: the runtime module loads against the
    # shipped libtvm_runtime, model.so and its CUDA module load, and the first device allocation fails in one line.
    _stub_driver(sysroot, 12020, module)
    run = run_bundle(bundle, {}, tmp_path / "run", ("--info",), env={}, sysroot=sysroot)
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("edgecc-run: error:")]
    assert run.returncode == 1, run.stderr
    assert len(errors) == 1 and run.stderr.strip().splitlines()[-1] == errors[0], run.stderr
    assert errors[0].startswith(f"edgecc-run: error: cannot load {bundle / 'model.so'}: ") and "CUDA" in errors[0]
    assert "undefined symbol" not in run.stderr and "not registered" not in run.stderr
    # A JetPack 5 driver (CUDA 11.4): refused at open, before anything is loaded.
    _stub_driver(sysroot, 11040, module)
    run = run_bundle(bundle, {}, tmp_path / "run-old", ("--info",), env={}, sysroot=sysroot)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "edgecc-run: error: this model needs a CUDA 12.2 driver or newer; this board's driver supports CUDA 11.4 "
        "(see README.md)"
    ]


def test_cuda12_deploy_without_a_runtime_says_what_to_pass(cuda12_artifact, tmp_path, monkeypatch):
    import edgecc

    monkeypatch.setenv("EDGECC_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(EdgeccError, match="pass --tvm-source DIR .* or --cuda-runtime FILE"):
        edgecc.deploy(cuda12_artifact, tmp_path / "bundle", log=quiet)
    with pytest.raises(EdgeccError, match="is not a TVM source tree"):
        edgecc.deploy(cuda12_artifact, tmp_path / "bundle", tvm_source=tmp_path, log=quiet)
    with pytest.raises(EdgeccError, match="--cuda-runtime FILE .* or --tvm-source DIR"):
        edgecc.deploy(cuda12_artifact, tmp_path / "bundle", tvm_source=tmp_path, cuda_runtime=tmp_path, log=quiet)
    assert not (tmp_path / "bundle").exists()


def test_cuda12_runtime_mismatch_is_refused(cuda12_artifact, tmp_path):
    manifest = json.loads((cuda12_artifact / "manifest.json").read_text())
    from edgecc.bundle.runtime_libs import runtime_libraries

    require_cross_tools()
    wheel_module = runtime_libraries("linux", "aarch64").path("libtvm_runtime_cuda")  # links libcudart.so.13
    with pytest.raises(EdgeccError, match=r"CUDA 12\.2, but .* links libcudart\.so\.13.*--cuda 13"):
        cuda_needs(manifest, wheel_module)


@pytest.mark.slow  # compiles TVM's three CUDA runtime sources with the cross g++ (~20 s on 2 cores)
def test_cuda12_runtime_module_builds_from_a_tvm_source_and_records_how(tmp_path):
    from edgecc.bundle.cuda_runtime_build import build_cuda12_runtime, build_record, wheel_commit

    require_cross_tools()
    source = _tvm_source()
    started = time.monotonic()
    library = build_cuda12_runtime(source, tmp_path / "cuda-runtime", log=quiet)
    record = build_record(library)
    assert record["wheel_commit"] == wheel_commit() and record["wheel_headers_laid_over"] > 0
    assert record["tvm_source_commit"] != "" and record["driver_functions"]
    assert "cuLaunchKernelEx" in record["driver_functions"]  # in every CUDA 12 driver (added in 12.0)
    assert sorted(p.name for p in library.parent.iterdir()) == ["build.json", "libtvm_runtime_cuda.so"]
    assert time.monotonic() - started < 300


def test_cuda12_extra_pins_what_the_toolkit_table_loads():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert tuple(pyproject["project"]["optional-dependencies"]["cuda12"]) == TOOLKITS["12"].compile_packages
