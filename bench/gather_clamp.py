"""What clamping token ids inside the library costs (passes/clamp_gather_indices.py), in one run.

    python bench/gather_clamp.py [--model tinybert-4] [--seq-len 128] [--rounds 30]

Builds the model twice in this process, with every caller-indexed take in mode="clip" (what edgecc
ships) and in TVM's unchecked mode="fast" (the pass replaced by a no-op), then times both artifacts
in interleaved rounds (A, B, A, B, ...), and the embedding gather alone the same way. Medians, the
p10-p90 spread and the clip/fast ratio are printed and appended to bench/GATHER_CLAMP.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _build(model: str, seq_len: int, clamp: bool, folder: Path):
    import tvm

    import edgecc
    from edgecc.passes import clamp_gather_indices

    real = clamp_gather_indices.ClampGatherIndices
    if not clamp:

        @tvm.transform.module_pass(opt_level=0, name="clamp_gather_indices")
        class Unchecked:
            def transform_module(self, mod, _ctx):
                return mod

        clamp_gather_indices.ClampGatherIndices = Unchecked
    try:
        result = edgecc.compile(
            model,
            "host",
            folder,
            seq_len=seq_len,
            measure=False,
            tuning_logs=(str(folder.parent / "no-logs"),),
            log=lambda *_: None,
        )
    finally:
        clamp_gather_indices.ClampGatherIndices = real
    return result


def _rounds(timers: dict, rounds: int) -> dict:
    """timers: name -> a call returning seconds per run (TVM's time_evaluator over many runs)."""
    samples = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            samples[name].append(timer())
    return samples


def _stats(values) -> dict:
    ms = np.asarray(values) * 1e3
    return {
        "median": float(np.median(ms)),
        "p10": float(np.percentile(ms, 10)),
        "p90": float(np.percentile(ms, 90)),
        "runs": int(ms.size),
    }


def _gather_kernels(vocab: int, width: int, tokens: int):
    """The embedding lookup alone, both modes, scheduled by edgecc's gather rule."""
    import tvm
    from tvm import relax

    from edgecc.schedules import apply_cpu_default_schedules
    from edgecc.targets import load_target

    target = load_target("host")
    table = np.random.default_rng(0).standard_normal((vocab, width)).astype("float32")
    built = {}
    for mode in ("clip", "fast"):
        bb = relax.BlockBuilder()
        ids = relax.Var("ids", relax.TensorType((1, tokens), "int64"))
        with bb.function("main", [ids]):
            with bb.dataflow():
                out = bb.emit_output(relax.op.take(relax.const(table), ids, axis=0, mode=mode))
            bb.emit_func_output(out)
        with target.tvm():
            mod = tvm.transform.Sequential(
                [
                    relax.transform.LegalizeOps(),
                    relax.transform.AnnotateTIROpPattern(),
                    relax.transform.FuseOps(),
                    relax.transform.FuseTIR(),
                ]
            )(bb.get())
            mod = apply_cpu_default_schedules(mod, target)
        built[mode] = relax.VirtualMachine(relax.build(mod, target.tvm()), tvm.cpu())
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tinybert-4")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    import tvm

    from edgecc.artifact.loader import load_artifact
    from edgecc.measure.bench import artifact_sample_inputs

    work = Path(tempfile.mkdtemp(prefix="bench-clamp-"))
    clip = _build(args.model, args.seq_len, True, work / "clip")
    fast = _build(args.model, args.seq_len, False, work / "fast")
    assert clip.report["passes"]["clamp_gather_indices"]["gathers_clamped"] > 0
    assert "clamp_gather_indices" not in fast.report["passes"]
    artifacts = {"clip": load_artifact(clip.artifact_dir), "fast": load_artifact(fast.artifact_dir)}
    inputs = artifact_sample_inputs(artifacts["clip"])
    arguments = {name: a.arguments(inputs) for name, a in artifacts.items()}
    outputs = {name: a.run(inputs)["last_hidden_state"] for name, a in artifacts.items()}
    assert np.array_equal(outputs["clip"], outputs["fast"])  # in-range ids: the same numbers
    dev = tvm.cpu()
    model_timers = {n: artifacts[n].vm.time_evaluator("main", dev, number=20, repeat=1) for n in artifacts}
    model = _stats_pair(
        _rounds({n: (lambda t=model_timers[n], x=arguments[n]: t(*x).mean) for n in artifacts}, args.rounds)
    )

    ids = tvm.runtime.tensor(inputs["input_ids"])
    vocab = artifacts["clip"].valid_ranges["input_ids"][1]
    width = _table_width(clip.artifact_dir / "reference.onnx", vocab)
    kernels = _gather_kernels(vocab, width, args.seq_len)
    gather_timers = {n: kernels[n].time_evaluator("main", dev, number=2000, repeat=1) for n in kernels}
    gather = _stats_pair(_rounds({n: (lambda t=gather_timers[n]: t(ids).mean) for n in kernels}, args.rounds))
    cpu = _cpu()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"## Clamped token-id gathers ({datetime.now(UTC).date()}, {cpu}, TVM_NUM_THREADS="
        f"{os.environ.get('TVM_NUM_THREADS')}, {args.rounds} interleaved rounds, load average {load:.1f})",
        "",
        "| what (median over rounds of TVM's time_evaluator means) "
        "| clip ms (p10-p90) | fast ms (p10-p90) | clip / fast |",
        "|---|---:|---:|---:|",
        _row(f"{args.model} seq {args.seq_len}, whole model", model),
        _row(f"embedding gather alone ({vocab}x{width} table, {args.seq_len} ids)", gather),
        "",
    ]
    print("\n".join(lines))
    with open(HERE / "GATHER_CLAMP.md", "a") as handle:
        handle.write("\n" + "\n".join(lines) + "\n")


def _table_width(reference: Path, rows: int) -> int:
    import onnx

    for init in onnx.load(str(reference)).graph.initializer:
        if len(init.dims) == 2 and init.dims[0] == rows:
            return int(init.dims[1])
    raise SystemExit(f"no [{rows}, width] embedding table in {reference}")


def _stats_pair(samples: dict) -> dict:
    return {name: _stats(values) for name, values in samples.items()}


def _row(what: str, pair: dict) -> str:
    c, f = pair["clip"], pair["fast"]
    return (
        f"| {what} | {c['median']:.4f} ({c['p10']:.4f}-{c['p90']:.4f}) | {f['median']:.4f} "
        f"({f['p10']:.4f}-{f['p90']:.4f}) | {c['median'] / f['median']:.3f} |"
    )


def _cpu() -> str:
    try:
        from tvm.target import codegen

        name = codegen.llvm_get_system_cpu()
    except Exception:  # noqa: BLE001 - a label only
        name = platform.processor() or "unknown"
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} (LLVM {name}), {os.cpu_count()} logical CPUs"


if __name__ == "__main__":
    main()
