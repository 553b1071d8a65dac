"""The Raspberry Pi 5 bundle under QEMU user-mode, with only libc/libstdc++ beside it: no Python, no TVM wheel."""

from __future__ import annotations

import json

import numpy as np
from fixtures_deploy import SEQ, VOCAB

from edgecc.backends._elf import library_machine
from edgecc.bundle.check import run_bundle

from fixtures_models import onnxruntime_outputs, token_inputs


def test_pi5_bundle_runs_under_qemu_with_only_libc_and_matches_onnxruntime(pi5_bundle, held_out_bert_onnx, tmp_path):
    artifact, bundle, sysroot = pi5_bundle
    for binary in (
        "bin/edgecc-run",
        "lib/libedgecc_model.so",
        "lib/libtvm_runtime.so",
        "lib/libtvm_ffi.so",
        "model.so",
    ):
        assert library_machine(bundle / binary) == "aarch64", binary
    assert sorted(p.name for p in (sysroot / "lib" / "aarch64-linux-gnu").iterdir()) == [
        "ld-linux-aarch64.so.1",
        "libc.so.6",
        "libdl.so.2",
        "libgcc_s.so.1",
        "libm.so.6",
        "libpthread.so.0",
        "librt.so.1",
        "libstdc++.so.6",
    ]
    inputs = token_inputs(SEQ, VOCAB)
    run = run_bundle(bundle, inputs, tmp_path / "run", env={}, sysroot=sysroot)
    assert run.returncode == 0, run.stderr
    want = onnxruntime_outputs(held_out_bert_onnx, inputs)["last_hidden_state"]
    got = run.outputs["last_hidden_state"]
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= 1e-4  # FP32's compile tolerance
    assert json.loads((bundle / "model.json").read_text())["threads"] == 4  # the Pi 5's cores


def test_pi5_bundle_rejects_a_token_id_past_the_vocabulary_under_qemu(pi5_bundle, tmp_path):
    _, bundle, sysroot = pi5_bundle
    inputs = token_inputs(SEQ, VOCAB)
    inputs["input_ids"][0, 3] = VOCAB + 5
    run = run_bundle(bundle, inputs, tmp_path / "run", env={}, sysroot=sysroot)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"edgecc-run: error: input 'input_ids' holds {VOCAB + 5} at flat index 3; valid values are 0 <= v < {VOCAB} "
        "(rows of the table it indexes)"
    ]
