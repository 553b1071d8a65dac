"""edgecc against every runtime a user would pick: same ONNX file, inputs and threads, one run.

    python bench/compare.py tinybert-4 minilm-l6 distilbert mobilevit-s efficientformer-l1 \\
        --seq-len 128 --precision fp32 int8 --precision-models tinybert-4 minilm-l6 distilbert

Per model, edgecc is compiled (default schedules; tuned as well when --tuning-logs has records
for this CPU; --precision int8 / bf16 builds when asked) and the ONNX file it compiled goes to
ONNX Runtime (as is, after its transformer optimizer, INT8 by quantize_dynamic), OpenVINO (f32,
and the precision it picks by default), PyTorch eager and IREE. Every runtime's output is checked
against ONNX Runtime's on the same inputs; then all are timed in interleaved rounds (each runtime
for --seconds per round, the order rotated each round, so a noisy neighbour hurts all alike).
The table (medians, p10-p90, CV, ratio to the fastest at the same precision) is printed and
written to bench/RESULTS.md. The runtimes are in bench/peers.py, the table in bench/table.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import (  # noqa: E402  (bench/ is a folder of scripts, not a package)
    BenchModel,
    EdgeccPeer,
    IreePeer,
    OnnxRuntimePeer,
    OpenVinoPeer,
    Peer,
    PeerUnavailable,
    TorchPeer,
    first_line,
)
from table import (  # noqa: E402
    LOADED,
    Row,
    agreement,
    cpu_snapshot,
    document,
    header,
    machine_from_cpuinfo,
    others_cpu_share,
)

from edgecc.threads import host_threads  # noqa: E402

MODELS = ["tinybert-4", "minilm-l6", "distilbert", "mobilevit-s", "efficientformer-l1"]
SKIPPABLE = ("edgecc", "edgecc-tuned", "ort-optimizer", "openvino", "torch", "iree")


def make_peers(modality: str, precisions: list[str], tuned_logs: Path | None, skip: set[str]) -> list[Peer]:
    """ONNX Runtime as is comes first: it is the reference every other output is checked against."""
    peers: list[Peer] = [OnnxRuntimePeer()]
    for precision in precisions:
        if "edgecc" not in skip:
            peers.append(EdgeccPeer(compile_precision=precision))
            if precision == "fp32" and tuned_logs is not None and "edgecc-tuned" not in skip:
                peers.append(EdgeccPeer(compile_precision=precision, tuning_logs=tuned_logs))
        if precision == "fp32":
            peers += [OnnxRuntimePeer(optimizer=True)] if "ort-optimizer" not in skip else []
            peers += [OpenVinoPeer(hint="f32")] if "openvino" not in skip else []
            peers += [TorchPeer()] if "torch" not in skip else []
            peers += [IreePeer()] if "iree" not in skip else []
        elif precision == "int8":
            peers.append(OnnxRuntimePeer(int8=True))
            if modality == "text" and "ort-optimizer" not in skip:
                peers.append(OnnxRuntimePeer(optimizer=True, int8=True))
    if "openvino" not in skip:
        peers.append(OpenVinoPeer())  # its own precision group: what it picked (bf16 on AVX512-BF16 / AMX)
    return peers


def bench_inputs(onnx_path: Path, seq_len: int) -> dict:
    """The inputs edgecc verifies with: random in valid ranges (token ids below the vocabulary), seed 0."""
    import onnx

    from edgecc.frontend.inputs import resolve_input_specs, sample_inputs
    from edgecc.frontend.onnx_import import _index_bounds, graph_inputs

    model = onnx.load(str(onnx_path), load_external_data=False)
    specs = resolve_input_specs(graph_inputs(model), [], 1, seq_len)
    return sample_inputs(specs, _index_bounds(model, specs), seed=0)


def prepare_model(name: str, seq_len: int, threads: int, work: Path) -> BenchModel:
    from edgecc.frontend import builtin_model, export_builtin

    if name.endswith(".onnx"):
        return onnx_file_model(Path(name), seq_len, threads, work)
    spec = builtin_model(name)
    exported = export_builtin(name, 1, seq_len, progress=print)
    try:
        module, _ = spec.module()  # same seeded weights as the export
    except ImportError:
        module = None
    config = getattr(module, "config", None)
    work.mkdir(parents=True, exist_ok=True)
    return BenchModel(
        name=name,
        modality=spec.modality,
        onnx_path=exported.onnx_path,
        inputs=bench_inputs(exported.onnx_path, seq_len),
        threads=threads,
        seq_len=seq_len,
        work=work,
        torch_module=module,
        heads=int(getattr(config, "num_attention_heads", 0) or 0),
        hidden=int(getattr(config, "hidden_size", 0) or 0),
    )


def folder_name(model: str) -> str:
    """The work folder of a built-in name or an ONNX file (its stem, never its path)."""
    return Path(model).stem if model.endswith(".onnx") else model


def onnx_file_model(path: Path, seq_len: int, threads: int, work: Path) -> BenchModel:
    """A user's ONNX file, as `edgecc compile FILE` takes it: image if an input is a 4-D float
    tensor, text otherwise; no PyTorch module, so the PyTorch row says it was not run."""
    import onnx

    from edgecc.frontend.onnx_import import graph_inputs

    model = onnx.load(str(path), load_external_data=False)
    image = any(len(shape) == 4 and "float" in dtype for _, shape, dtype in graph_inputs(model))
    work.mkdir(parents=True, exist_ok=True)
    return BenchModel(
        name=path.stem,
        modality="image" if image else "text",
        onnx_path=path,
        inputs=bench_inputs(path, seq_len),
        threads=threads,
        seq_len=seq_len,
        work=work,
        builtin=False,
    )


def bench_model(
    name: str, precisions: list[str], args, tuned_logs: Path | None, work: Path
) -> tuple[list[Row], list[str]]:
    from edgecc.measure.latency import latency_stats, sample_seconds

    model = prepare_model(name, args.seq_len, args.threads, work / folder_name(name))
    name = model.name
    peers = make_peers(model.modality, precisions, tuned_logs, set(args.skip))
    built: list[tuple[Peer, float, tuple | None]] = []  # (peer, build seconds, (max rel error, cosine))
    rows, notes, reference = [], [], None
    for peer in peers:
        print(f"{name}: building {peer.label} ...", flush=True)
        started = time.perf_counter()
        try:
            peer.build(model)
            output = peer.run()
        except Exception as exc:  # noqa: BLE001 - a runtime failing on a model is a table row, not a crash
            reason = (
                str(exc)
                if isinstance(exc, PeerUnavailable)
                else f"{exc.name} is not installed (pip install 'edgecc[bench]')"
                if isinstance(exc, ImportError)
                else f"{type(exc).__name__}: {first_line(exc)}"
            )
            print(f"{name}: {peer.label}: not run: {reason}", flush=True)
            rows.append(Row(name, peer.label, peer.precision, reason=reason, build_s=time.perf_counter() - started))
            peer.close()
            continue
        if peer is peers[0]:  # ONNX Runtime as is: without it no output is checked (error left blank)
            reference = output
        check = agreement(output, reference) if reference is not None else None
        built.append((peer, time.perf_counter() - started, check))
        print(
            f"{name}: {peer.label}: built in {built[-1][1]:.1f} s"
            + (f", error {check[0]:.1e}, cos {check[1]:.6f}" if check else ""),
            flush=True,
        )
        notes += [f"{name}, {peer.label}: {note}" for note in peer.notes]
    for peer, _, _ in built:  # warm-up: first-run allocations and thread-pool start-up stay out of the samples
        for _ in range(2):
            peer.run()
    samples: dict[int, list[float]] = {id(peer): [] for peer, _, _ in built}
    failed: dict[int, str] = {}  # a runtime that fails mid-run leaves the rounds, not the whole bench
    print(f"{name}: timing {len(built)} runtimes, {args.rounds} rounds of {args.seconds:g} s each ...", flush=True)
    for round_index in range(args.rounds):
        start = round_index % max(1, len(built))
        for peer, _, _ in built[start:] + built[:start]:
            if id(peer) in failed:
                continue
            try:
                samples[id(peer)] += sample_seconds(peer.run, args.seconds, min_runs=1)
            except Exception as exc:  # noqa: BLE001 - reported in its row
                failed[id(peer)] = f"failed while timed: {type(exc).__name__}: {first_line(exc)}"
    for peer, build_s, check in built:
        error, cosine = check if check else (None, None)
        if id(peer) in failed:
            rows.append(Row(name, peer.label, peer.precision, reason=failed[id(peer)], build_s=build_s))
        else:
            rows.append(
                Row(
                    name,
                    peer.label,
                    peer.precision,
                    stats=latency_stats(samples[id(peer)]),
                    error=error,
                    cosine=cosine,
                    build_s=build_s,
                )
            )
        peer.close()
    order = {peer.label: index for index, peer in enumerate(peers)}  # edgecc's builds first, then the peers
    return sorted(rows, key=lambda row: (not row.runtime.startswith("edgecc"), order.get(row.runtime, 0))), notes


def tuning_records_here(logs: Path) -> int:
    """How many of the records under `logs` were measured on exactly this host's target."""
    from edgecc.options import CompileOptions
    from edgecc.targets import load_target
    from edgecc.tuning.records import read_logs, target_key
    from edgecc.tuning.schedule import tuning_log_dirs

    target = load_target("host")
    dirs = tuning_log_dirs(CompileOptions(tuning_logs=(logs,)), target)
    key = target_key(target.tvm())
    return sum(1 for record in read_logs(dirs).records if record.data["target"] == key) if dirs else 0


def versions() -> dict[str, str]:
    found = {}
    try:
        commit = subprocess.run(
            ["git", "-C", str(HERE), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        found["edgecc"] = commit or "unknown"
    except OSError:
        found["edgecc"] = "unknown"
    for label, package in (
        ("TVM", "apache-tvm"),
        ("ONNX Runtime", "onnxruntime"),
        ("OpenVINO", "openvino"),
        ("PyTorch", "torch"),
        ("IREE", "iree-base-compiler"),
    ):
        try:
            found[label] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=MODELS)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["fp32"],
        choices=["fp32", "int8", "bf16", "fp16"],
        help="edgecc builds to time; int8 adds ONNX Runtime quantize_dynamic",
    )
    parser.add_argument(
        "--precision-models",
        nargs="*",
        default=None,
        help="only these models get the precisions other than fp32 (default: all)",
    )
    parser.add_argument("--threads", type=int, default=host_threads())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per runtime per round")
    parser.add_argument("--tuning-logs", default="tuning_logs", help="'' to skip the tuned edgecc build")
    parser.add_argument("--skip", nargs="*", default=[], choices=SKIPPABLE, help="runtimes to leave out")
    parser.add_argument("--work", type=Path, default=None, help="keep compiled artifacts here (default: a temp folder)")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    from edgecc.errors import EdgeccError
    from edgecc.frontend import builtin_model

    try:
        for name in args.models:
            if name.endswith(".onnx"):
                if not Path(name).is_file():
                    parser.error(f"{name}: no such ONNX file")
            else:
                builtin_model(name)
    except EdgeccError as exc:
        parser.error(f"{exc}; bench/compare.py takes built-in names and .onnx files")
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # before TVM starts its pool, which reads it once
    logging.getLogger().setLevel(logging.ERROR)  # the ONNX Runtime tools log advice at WARNING on every call
    started, cpu_start = time.perf_counter(), cpu_snapshot()
    tuned_logs = Path(args.tuning_logs) if args.tuning_logs else None
    notes = []
    if tuned_logs is not None and not tuning_records_here(tuned_logs):
        notes.append(f"edgecc tuned: not built, {tuned_logs}/ holds no tuning record for this CPU's target")
        tuned_logs = None
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecc-bench-") as tmp:
        work = args.work or Path(tmp)
        for name in args.models:
            precisions = args.precision
            if args.precision_models is not None and name not in args.precision_models:
                precisions = [p for p in args.precision if p == "fp32"]
            model_rows, model_notes = bench_model(name, precisions, args, tuned_logs, work)
            rows += model_rows
            notes += model_notes
            if args.work is None:  # artifacts, optimized and quantized copies: gigabytes over five models
                shutil.rmtree(work / folder_name(name), ignore_errors=True)
    from tvm.target import codegen

    machine = machine_from_cpuinfo(Path("/proc/cpuinfo").read_text(), codegen.llvm_get_system_cpu())
    others = others_cpu_share(cpu_start, cpu_snapshot(), machine.cores)
    head = header(
        machine,
        threads=args.threads,
        batch=1,
        seq_len=args.seq_len,
        when=f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        versions=versions(),
        others_cpu=others,
    )
    if others > LOADED:
        notes.insert(
            0,
            f"**Loaded machine**: other processes used {others:.0%} of the CPUs while this ran; "
            "absolute times are not meaningful, and runtimes whose threads spin-wait (PyTorch's "
            "OpenMP pool most of all) lose far more than the others. Rerun on a quiet machine.",
        )
    notes.append(
        f"The whole run took {(time.perf_counter() - started) / 60:.1f} min "
        f"({args.rounds} x {args.seconds:g} s per runtime)."
    )
    text = document(head, rows, notes)
    print(text)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
