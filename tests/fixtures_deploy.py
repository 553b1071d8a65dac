"""Compiled artifacts and their deployed bundles, shared by the deploy tests (one compile each per run)."""

from __future__ import annotations

import shutil

import pytest

SEQ = 24  # the held-out BERT's export length (vocab 777, hidden 48)
VOCAB = 777


def quiet(*_):
    pass


@pytest.fixture(scope="session")
def host_bundle(held_out_bert_onnx, tmp_path_factory):
    """(artifact, bundle) of the held-out BERT for this machine."""
    import edgecc

    root = tmp_path_factory.mktemp("deploy-host")
    edgecc.compile(held_out_bert_onnx, "host", root / "artifact", seq_len=SEQ, measure=False, log=quiet)
    edgecc.deploy(root / "artifact", root / "bundle", log=quiet)
    return root / "artifact", root / "bundle"


def require_cross_tools():
    for tool, package in (
        ("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu"),
        ("qemu-aarch64-static", "qemu-user-static"),
    ):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install {package})")


@pytest.fixture(scope="session")
def pi5_bundle(held_out_bert_onnx, tmp_path_factory):
    """(artifact, bundle, sysroot) of the held-out BERT for the Raspberry Pi 5; sysroot holds only libc/libstdc++."""
    import edgecc
    from edgecc.bundle.check import minimal_sysroot

    require_cross_tools()
    root = tmp_path_factory.mktemp("deploy-pi5")
    edgecc.compile(held_out_bert_onnx, "raspberry-pi-5", root / "artifact", seq_len=SEQ, log=quiet)
    edgecc.deploy(root / "artifact", root / "bundle", log=quiet)
    return root / "artifact", root / "bundle", minimal_sysroot("aarch64", root / "sysroot")
