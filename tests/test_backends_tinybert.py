"""Done criteria of issue 3 (accelerator part): TinyBERT-4 compiled for each accelerator board.

Each compile takes 10-60 s on 2 cores (model export, import, build, 57 MB of embedded weights),
so these are slow tests; tests/test_backends_accelerators.py covers the same paths on a tiny module.
"""

from __future__ import annotations

import json

import pytest

import edgecc
from edgecc.backends._elf import cuda_device_code, elf_headers, library_machine, macho_arch

pytestmark = pytest.mark.slow


def _compile(target, tmp_path):
    result = edgecc.compile("tinybert-4", target=target, output=str(tmp_path / target), verify=False, measure=False)
    folder = result.artifact_dir
    manifest = json.loads((folder / "manifest.json").read_text())
    return folder, manifest


@pytest.mark.toolchain("nvcc", "aarch64-linux-gnu-g++")
def test_tinybert4_for_jetson_orin_nano_is_aarch64_with_sm87_fatbin(tmp_path):
    folder, manifest = _compile("jetson-orin-nano", tmp_path)
    library = folder / manifest["library"]
    assert library_machine(library) == "aarch64"
    device = cuda_device_code(library)
    assert device["cubin_archs"] == ["sm_87"] and device["fatbin"]
    assert manifest["contents"]["cubin_archs"] == ["sm_87"]
    assert manifest["loadable"] is True and "tvm.cuda(0)" in manifest["load"]


@pytest.mark.toolchain("ld64.lld")
def test_tinybert4_for_apple_m2_metal_has_metal_source_and_arm64_macos_code(tmp_path):
    folder, manifest = _compile("apple-m2-metal", tmp_path)
    assert macho_arch(folder / manifest["library"]) == "arm64"
    assert macho_arch(folder / "model_host.o") == "arm64"
    assert macho_arch(folder / "model_kernels.o") == "arm64"
    assert "kernel void" in (folder / "kernels.metal").read_text()
    assert "clang -dynamiclib -arch arm64" in manifest["load"]
    assert manifest["contents"]["not_tested"]


@pytest.mark.toolchain("ld.lld")
def test_tinybert4_for_hexagon_is_a_hexagon_elf_and_says_it_cannot_run_yet(tmp_path):
    folder, manifest = _compile("snapdragon-8-gen-2-hexagon", tmp_path)
    library = folder / manifest["library"]
    assert library_machine(library) == "hexagon"
    assert elf_headers(library)[0].elf_type == "shared object"
    assert manifest["loadable"] is False
    assert any("Hexagon SDK" in item for item in manifest["missing"])
