"""edgecc FP32 / INT8 / BF16 against ONNX Runtime (FP32, quantize_dynamic INT8) and OpenVINO (f32, default).

    python bench/precision.py minilm-l6 distilbert --seq-len 128

Every runtime gets the same inputs and thread count and is timed in interleaved rounds (each round
runs every runtime for --seconds), so a noisy neighbour slows all of them alike; the table gives
medians, the p10-p90 spread and ratios to edgecc FP32 and ONNX Runtime INT8. Accuracy: for
minilm-l6 (real weights) mean embedding cosine vs PyTorch FP32 on held-out sentences
(edgecc.accuracy), for the others output cosine vs ONNX Runtime FP32. Written to bench/PRECISION.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from edgecc.threads import host_threads

HERE = Path(__file__).resolve().parent


def _peers(onnx_path: Path, threads: int, work: Path) -> dict:
    """name -> run(inputs) for ONNX Runtime FP32 / INT8 and OpenVINO f32 / default precision."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    int8_path = work / "ort-int8.onnx"
    quantize_dynamic(
        str(onnx_path),
        str(int8_path),
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    peers = {}
    for name, path in (("ONNX Runtime FP32", onnx_path), ("ONNX Runtime INT8 (quantize_dynamic)", int8_path)):
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        peers[name] = lambda inputs, s=session: dict(zip([o.name for o in s.get_outputs()], s.run(None, inputs)))
    try:
        import openvino as ov
    except ImportError:
        print("OpenVINO is not installed (pip install openvino): its rows are left out")
        return peers
    core = ov.Core()
    base = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    hint = core.get_property("CPU", "INFERENCE_PRECISION_HINT")  # bf16 on CPUs with AVX512-BF16 or AMX
    default = hint.to_string() if hasattr(hint, "to_string") else str(hint)
    for label, config in (("OpenVINO f32", {"INFERENCE_PRECISION_HINT": "f32"}), (f"OpenVINO default ({default})", {})):
        compiled = core.compile_model(str(onnx_path), "CPU", {**base, **config})
        request = compiled.create_infer_request()
        names = [o.get_any_name() for o in compiled.outputs]
        peers[label] = lambda inputs, r=request, n=names: dict(zip(n, (np.array(v) for v in r.infer(inputs).values())))
    return peers


def _accuracy(model: str, run, onnx_path: Path, inputs: dict, names: list[str], seq_len: int) -> float:
    from edgecc.frontend.builtin import minilm_folder
    from edgecc.measure.accuracy import cosine_rows, sentence_embedding_accuracy

    folder = minilm_folder() if model == "minilm-l6" else None
    if folder is not None:
        return sentence_embedding_accuracy(run, folder, names, 1, seq_len)["mean_cosine"]
    import onnxruntime as ort

    expected = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, inputs)[0]
    actual = next(iter(run(inputs).values()))
    return float(cosine_rows(actual.reshape(1, -1), expected.reshape(1, -1))[0])


def bench_model(model: str, seq_len: int, threads: int, rounds: int, seconds: float, precisions: list[str]) -> list:
    import edgecc
    from edgecc.artifact.loader import load_artifact
    from edgecc.frontend import export_builtin
    from edgecc.measure.bench import artifact_sample_inputs

    work = Path(tempfile.mkdtemp(prefix=f"precision-{model}-"))
    onnx_path = export_builtin(model, 1, seq_len, progress=lambda *_: None).onnx_path
    runners, sizes = {}, {}
    for precision in precisions:
        result = edgecc.compile(
            model,
            "host",
            work / precision,
            seq_len=seq_len,
            precision=precision,
            measure=False,
            tuning_logs=(str(work / "no-logs"),),
            log=lambda *_: None,
        )
        artifact = load_artifact(work / precision)
        runners[f"edgecc {precision}"] = artifact.run
        sizes[f"edgecc {precision}"] = result.report["artifact"]["library_bytes"]
    inputs = artifact_sample_inputs(artifact)
    names = [spec.name for spec in artifact.inputs]
    runners.update(_peers(onnx_path, threads, work))
    sizes["ONNX Runtime FP32"] = onnx_path.stat().st_size
    sizes["ONNX Runtime INT8 (quantize_dynamic)"] = (work / "ort-int8.onnx").stat().st_size
    accuracy = {name: _accuracy(model, run, onnx_path, inputs, names, seq_len) for name, run in runners.items()}
    for run in runners.values():  # warm-up
        for _ in range(3):
            run(inputs)
    samples = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                run(inputs)
                samples[name].append((time.perf_counter() - start) * 1e3)
    return [(model, name, np.asarray(values), accuracy[name], sizes.get(name)) for name, values in samples.items()]


def render(rows, seq_len: int, threads: int) -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    from tvm.target import codegen

    load = os.getloadavg()[0]
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {cpu} (LLVM: "
        f"{codegen.llvm_get_system_cpu()}), {threads} threads, batch 1, seq {seq_len}, 1-min load {load:.1f} "
        f"on {os.cpu_count()} CPUs at the end. Interleaved rounds; ratios of medians; min: the fastest run. "
        "Accuracy: minilm-l6 mean embedding cosine vs PyTorch FP32 on held-out sentences; others output "
        "cosine vs ONNX Runtime FP32.",
        "",
        "| model | runtime | median ms | p10-p90 ms | min ms | runs | vs edgecc fp32 | vs ORT INT8 | accuracy "
        "| size MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == model]
        median = {name: float(np.median(v)) for _, name, v, _, _ in mine}
        fp32 = median.get("edgecc fp32")
        ort_int8 = median.get("ONNX Runtime INT8 (quantize_dynamic)")
        for _, name, values, accuracy, size in mine:

            def ratio(ref, mine=median[name]):
                return f"{mine / ref:.2f}x" if ref else "-"

            lines.append(
                f"| {model} | {name} | {median[name]:.2f} | {np.percentile(values, 10):.2f}-"
                f"{np.percentile(values, 90):.2f} | {values.min():.2f} | {values.size} | {ratio(fp32)} | "
                f"{ratio(ort_int8)} | "
                f"{accuracy:.4f} | {size / 1e6 if size else float('nan'):.1f} |"
            )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["minilm-l6", "distilbert"])
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=host_threads())
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8", "bf16"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per runtime per round")
    parser.add_argument("--output", type=Path, default=HERE / "PRECISION.md")
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # before TVM starts its thread pool
    rows = []
    for model in args.models:
        rows += bench_model(model, args.seq_len, args.threads, args.rounds, args.seconds, args.precisions)
    table = render(rows, args.seq_len, args.threads)
    print(table)
    args.output.write_text(table)


if __name__ == "__main__":
    main()
