"""A dynamic-shape artifact deployed: the bundle's C API and edgecc-run take any length up to the maximum."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from fixtures_buckets import quiet, tokens

import edgecc
from edgecc.bundle.check import run_bundle

from fixtures_models import onnxruntime_outputs


@pytest.fixture(scope="module")
def bucketed_bundle(bucketed_bert, tmp_path_factory):
    _, artifact = bucketed_bert
    bundle = tmp_path_factory.mktemp("bucket-bundle") / "bundle"
    edgecc.deploy(artifact, bundle, log=quiet)
    return bundle


def test_the_bundle_runs_every_length_up_to_the_maximum_and_matches_onnxruntime(
    bucketed_bundle, held_out_bert_onnx, tmp_path
):
    description = json.loads((bucketed_bundle / "model.json").read_text())
    assert description["inputs"][0]["dynamic_axes"] == {"1": "sequence"}
    for length in (3, 9, 24):
        inputs = tokens(length)
        run = run_bundle(bucketed_bundle, inputs, tmp_path / f"run{length}", env={})
        assert run.returncode == 0, run.stderr
        got = run.outputs["last_hidden_state"]
        want = onnxruntime_outputs(held_out_bert_onnx, inputs)["last_hidden_state"]
        assert got.shape == want.shape == (1, length, 48)
        assert np.max(np.abs(got - want)) / np.max(np.abs(want)) < 1e-4
    info = subprocess.run(
        [str(bucketed_bundle / "bin" / "edgecc-run"), "--info"], capture_output=True, text=True, env={}
    )
    assert (
        "input  input_ids int64 [1, 1..24]" in info.stdout
        and "output last_hidden_state float32 [1, 1..24, 48]" in info.stdout
    )


@pytest.mark.parametrize(
    "ids_length, mask_length, expected",
    [
        (25, 25, r"input 'input_ids' has sequence size 25 \(shape 1x25\); the model accepts sequence sizes 1\.\.24"),
        (10, 12, r"input 'attention_mask' has sequence size 12, another input has 10; every input must have the same"),
    ],
)
def test_a_longer_or_mismatched_input_is_one_line_and_exit_2(
    bucketed_bundle, tmp_path, ids_length, mask_length, expected
):
    inputs = {"input_ids": tokens(ids_length)["input_ids"], "attention_mask": tokens(mask_length)["attention_mask"]}
    run = run_bundle(bucketed_bundle, inputs, tmp_path / "run", env={})
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecc-run: error: "), run.stderr
    import re

    assert re.search(expected, lines[0]), lines[0]


CPP_CLIENT = r"""
#include <cstdio>
#include <vector>
#include "edgecc_model.h"
int main(int argc, char** argv) {
  edgecc_model* m = edgecc_model_open(argv[1], nullptr);
  if (!m) { std::printf("open: %s\n", edgecc_last_error()); return 1; }
  edgecc_tensor_info info;
  edgecc_model_input_info(m, 0, &info);
  if (info.axes[0] != EDGECC_AXIS_FIXED || info.axes[1] != EDGECC_AXIS_SEQUENCE) return 3;
  for (int64_t length : {5, 17, 5}) {  // a new length, another, and back: the input buffers follow
    std::vector<int64_t> ids(length, 7), mask(length, 1);
    int64_t shape[2] = {1, length}, out_shape[3];
    edgecc_tensor in[2] = {{"input_ids", "int64", 2, shape, ids.data(), ids.size() * 8},
                           {"attention_mask", "int64", 2, shape, mask.data(), mask.size() * 8}};
    size_t nbytes = 0;
    if (edgecc_model_output_shape(m, 0, in, 2, out_shape, &nbytes) != EDGECC_OK) return 4;
    std::vector<float> out(nbytes / 4);
    edgecc_tensor o[1] = {{nullptr, "float32", 3, out_shape, out.data(), nbytes}};
    if (edgecc_model_run(m, in, 2, o, 1) != EDGECC_OK) { std::printf("run: %s\n", edgecc_last_error()); return 2; }
    std::printf("length %lld out %lldx%lldx%lld first %.6f\n", (long long)length, (long long)out_shape[0],
                (long long)out_shape[1], (long long)out_shape[2], out[0]);
    edgecc_tensor short_out[1] = {{nullptr, "float32", -1, nullptr, out.data(), nbytes - 4}};
    if (edgecc_model_run(m, in, 2, short_out, 1) != EDGECC_ERROR_INPUT) return 5;
  }
  std::printf("short: %s\n", edgecc_last_error());
  edgecc_model_close(m);
  return 0;
}
"""


def test_the_c_api_tells_callers_the_output_shape_at_their_length(bucketed_bundle, tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    (tmp_path / "client.cc").write_text(CPP_CLIENT)
    lib = bucketed_bundle / "lib"
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-Wall",
            "-Werror",
            f"-I{bucketed_bundle / 'include'}",
            str(tmp_path / "client.cc"),
            f"-L{lib}",
            "-ledgecc_model",
            f"-Wl,-rpath,{lib}",
            "-o",
            str(tmp_path / "client"),
        ],
        check=True,
    )
    proc = subprocess.run([str(tmp_path / "client"), str(bucketed_bundle)], capture_output=True, text=True, env={})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("length 5 out 1x5x48") and lines[1].startswith("length 17 out 1x17x48")
    assert lines[0].split("first")[1] == lines[2].split("first")[1]  # the same input again: the same answer
    assert "output 'last_hidden_state' has" in lines[-1] and "bytes, the model expects" in lines[-1]
