"""edgecc deploy for this machine: the bundle runs with nothing but itself and matches ONNX Runtime."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from fixtures_deploy import SEQ, VOCAB, quiet

import edgecc
from edgecc.bundle.check import run_bundle
from edgecc.cli import main
from edgecc.errors import EdgeccError

from fixtures_models import onnxruntime_outputs, token_inputs


def test_host_bundle_runs_in_an_empty_environment_and_matches_onnxruntime(host_bundle, held_out_bert_onnx, tmp_path):
    artifact, bundle = host_bundle
    inputs = token_inputs(SEQ, VOCAB)
    run = run_bundle(bundle, inputs, tmp_path / "run", env={})  # no PATH (no Python), no LD_LIBRARY_PATH
    assert run.returncode == 0, run.stderr
    want = onnxruntime_outputs(held_out_bert_onnx, inputs)["last_hidden_state"]
    got = run.outputs["last_hidden_state"]
    tolerance = json.loads((artifact / "report.json").read_text())["verification"]["tolerance"]
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= tolerance


def test_the_tvm_runtime_comes_from_the_bundle_and_no_compiler_is_shipped(host_bundle, tmp_path):
    _, bundle = host_bundle
    run = run_bundle(bundle, token_inputs(SEQ, VOCAB), tmp_path / "run", env={"LD_DEBUG": "libs"})
    assert run.returncode == 0, run.stderr
    loaded = {os.path.realpath(path) for path in re.findall(r"calling init: (\S+)", run.stderr)}
    tvm_libraries = {path for path in loaded if "tvm" in path or "edgecc" in path}
    assert {p.rsplit("/", 1)[-1] for p in tvm_libraries} == {"libtvm_ffi.so", "libtvm_runtime.so", "libedgecc_model.so"}
    assert all(path.startswith(str(bundle.resolve() / "lib")) for path in tvm_libraries), tvm_libraries
    names = {p.name for p in bundle.rglob("*")}
    assert not {"libtvm_compiler.so", "libtvm.so"} & names
    assert sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) < 12e6


@pytest.mark.parametrize(
    "case, expected",
    [
        ("shape", r"input 'input_ids' has shape 1x8, the model was compiled for 1x24"),
        ("dtype", r"input 'input_ids' has dtype int32, the model expects int64"),
        ("past_vocab", rf"input 'input_ids' holds {VOCAB} at flat index 5; valid values are 0 <= v < {VOCAB}"),
        ("negative", r"input 'input_ids' holds -1 at flat index 5"),
        ("missing_file", r"cannot open .*nowhere.npy: No such file or directory"),
        ("not_npy", r"is not a .npy file"),
        ("missing_input", r"missing --input attention_mask=FILE.npy"),
        ("unknown_input", r"the model has no input 'token_type_ids'"),
    ],
)
def test_bad_inputs_give_one_error_line_and_exit_2(host_bundle, tmp_path, case, expected):
    _, bundle = host_bundle
    good = token_inputs(SEQ, VOCAB)
    ids = good["input_ids"].copy()
    np.save(tmp_path / "mask.npy", good["attention_mask"])
    inputs = {"input_ids": tmp_path / "ids.npy", "attention_mask": tmp_path / "mask.npy"}
    if case == "shape":
        ids = ids[:, :8].copy()
    elif case == "dtype":
        ids = ids.astype(np.int32)
    elif case in ("past_vocab", "negative"):
        ids[0, 5] = VOCAB if case == "past_vocab" else -1
    elif case == "missing_file":
        inputs["input_ids"] = tmp_path / "nowhere.npy"
    elif case == "not_npy":
        (tmp_path / "text.npy").write_text("not numpy\n")
        inputs["input_ids"] = tmp_path / "text.npy"
    elif case == "missing_input":
        del inputs["attention_mask"]
    elif case == "unknown_input":
        inputs["token_type_ids"] = tmp_path / "mask.npy"
    np.save(tmp_path / "ids.npy", ids)
    args = [a for name, path in inputs.items() for a in ("--input", f"{name}={path}")]
    proc = subprocess.run(
        [str(bundle / "bin" / "edgecc-run"), *args, "--output-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecc-run: error: "), proc.stderr
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()  # nothing written on a failed run


def test_threads_come_from_the_board_then_the_environment_then_the_option(host_bundle):
    _, bundle = host_bundle
    run = lambda env, *args: (
        subprocess.run(
            [str(bundle / "bin" / "edgecc-run"), "--info", *args],  # noqa: E731
            capture_output=True,
            text=True,
            env=env,
        ).stdout
    )
    cores = json.loads((bundle / "model.json").read_text())["threads"]
    assert f"{cores} threads" in run({})
    assert "3 threads" in run({"TVM_NUM_THREADS": "3"})
    assert "1 threads" in run({"TVM_NUM_THREADS": "3"}, "--threads", "1")


CPP_CLIENT = r"""
#include <cstdio>
#include <cstring>
#include <vector>
#include "edgecc_model.h"
int main(int argc, char **argv) {
  if (edgecc_model_open("/nonexistent", nullptr) != nullptr ||
      !std::strstr(edgecc_last_error(), "model.json")) return 10;
  if (edgecc_model_run(nullptr, nullptr, 0, nullptr, 0) != EDGECC_ERROR_ARGUMENT) return 11;
  edgecc_open_options options = {1};
  edgecc_model *m = edgecc_model_open(argv[1], &options);
  if (!m) { std::printf("open: %s\n", edgecc_last_error()); return 1; }
  edgecc_tensor_info info;
  if (edgecc_model_input_info(m, 9, &info) != EDGECC_ERROR_ARGUMENT) return 12;
  edgecc_model_input_info(m, 0, &info);
  std::vector<int64_t> ids(info.nbytes / 8, 1), mask(ids.size(), 1);
  edgecc_model_output_info(m, 0, &info);
  std::vector<float> out(info.nbytes / 4);
  int64_t shape[2] = {1, (int64_t)ids.size()};
  // by position, no names: input 0 is input_ids, 1 attention_mask
  edgecc_tensor in[2] = {{nullptr, "int64", 2, shape, ids.data(), ids.size() * 8},
                         {nullptr, "int64", 2, shape, mask.data(), mask.size() * 8}};
  edgecc_tensor o[1] = {{nullptr, nullptr, -1, nullptr, out.data(), out.size() * 4}};
  if (edgecc_model_run(m, in, 1, o, 1) != EDGECC_ERROR_INPUT) return 13;  // one input short
  std::printf("short: %s\n", edgecc_last_error());
  if (edgecc_model_run(m, in, 2, o, 1) != EDGECC_OK) { std::printf("run: %s\n", edgecc_last_error()); return 2; }
  std::printf("threads %d device %s first %.6f\n", edgecc_model_num_threads(m), edgecc_model_device(m), out[0]);
  edgecc_model_close(m);
  return 0;
}
"""


def test_the_c_api_works_from_cpp_and_reports_errors(host_bundle, tmp_path):
    _, bundle = host_bundle
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    (tmp_path / "client.cc").write_text(CPP_CLIENT)
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-Wall",
            "-Werror",
            f"-I{bundle / 'include'}",
            str(tmp_path / "client.cc"),
            f"-L{bundle / 'lib'}",
            "-ledgecc_model",
            f"-Wl,-rpath,{bundle / 'lib'}",
            "-o",
            str(tmp_path / "client"),
        ],
        check=True,
    )
    proc = subprocess.run([str(tmp_path / "client"), str(bundle)], capture_output=True, text=True, env={})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "short: the model takes 2 inputs, 1 were given" in proc.stdout
    assert "threads 1 device cpu" in proc.stdout


def test_the_cmake_project_rebuilds_the_c_api_and_example(host_bundle, tmp_path):
    _, bundle = host_bundle
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    for built in (copy / "bin" / "edgecc-run", copy / "lib" / "libedgecc_model.so"):
        built.unlink()  # the rebuild must produce both
    for step in (
        ["-S", copy / "src", "-B", tmp_path / "build", "-DCMAKE_BUILD_TYPE=Release"],
        ["--build", tmp_path / "build"],
        ["--install", tmp_path / "build", "--prefix", copy],
    ):
        proc = subprocess.run(["cmake", *map(str, step)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    inputs = token_inputs(SEQ, VOCAB)
    rebuilt = run_bundle(copy, inputs, tmp_path / "a", env={})
    shipped = run_bundle(bundle, inputs, tmp_path / "b", env={})
    assert rebuilt.returncode == 0, rebuilt.stderr
    np.testing.assert_array_equal(rebuilt.outputs["last_hidden_state"], shipped.outputs["last_hidden_state"])


def test_the_manifest_and_model_json_state_the_token_id_range(host_bundle):
    artifact, bundle = host_bundle
    manifest = json.loads((artifact / "manifest.json").read_text())
    description = json.loads((bundle / "model.json").read_text())
    for entries in (manifest["inputs"], description["inputs"]):
        assert {e["name"]: e.get("valid_range") for e in entries} == {"input_ids": [0, VOCAB], "attention_mask": None}
    readme = (bundle / "README.md").read_text()
    assert re.search(r"GLIBC_2\.\d+", readme) and "TVM_NUM_THREADS" in readme and "libtvm_runtime.so" in readme


def test_deploy_never_replaces_a_folder_that_is_not_a_bundle(host_bundle, tmp_path):
    artifact, bundle = host_bundle
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(EdgeccError, match="not an edgecc bundle"):
        edgecc.deploy(artifact, mine, log=quiet)
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1
    again = tmp_path / "again"
    shutil.copytree(bundle, again)
    (again / "last_hidden_state.npy").write_text("the user's output of bin/edgecc-run")
    with pytest.raises(EdgeccError, match="also holds last_hidden_state.npy, which edgecc did not write"):
        edgecc.deploy(artifact, again, log=quiet)
    assert (again / "last_hidden_state.npy").read_text() == "the user's output of bin/edgecc-run"
    (again / "last_hidden_state.npy").unlink()
    edgecc.deploy(artifact, again, log=quiet)  # an earlier bundle of only its own files is replaced whole
    assert (again / "bin" / "edgecc-run").is_file()


def test_a_failed_deploy_leaves_nothing_behind(host_bundle, tmp_path):
    artifact, _ = host_bundle
    damaged = tmp_path / "damaged"
    shutil.copytree(artifact, damaged)
    with open(damaged / "model.so", "ab") as handle:
        handle.write(b"\0")
    cli = CliRunner().invoke(main, ["deploy", str(damaged), "-o", str(tmp_path / "out")])
    assert cli.exit_code == 2 and "changed after the compile" in cli.output  # the checks of `edgecc run`
    cli = CliRunner().invoke(main, ["deploy", str(tmp_path / "nothing"), "-o", str(tmp_path / "out")])
    assert cli.exit_code == 2 and "is not an edgecc artifact" in cli.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged"]  # no bundle, no staging folder


def test_the_cli_deploys_and_checks_against_onnxruntime(host_bundle, tmp_path):
    artifact, _ = host_bundle
    cli = CliRunner().invoke(main, ["deploy", str(artifact), "-o", str(tmp_path / "b"), "--check", "-q"])
    assert cli.exit_code == 0, cli.output
    assert re.search(r"check: +passed on this machine, empty environment", cli.output)
