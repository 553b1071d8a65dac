"""Standalone probe of this machine's FP32 compute peak and memory bandwidth, to check the figures
edgecc's reports use for the host (edgecc/targets/host.py) against a direct measurement.

It shares no code with edgecc: the compute peak is the throughput of independent fused
multiply-add chains held in vector registers (a TVM-built kernel, one chain set per thread; the
higher of all threads together and one thread times the threads), the
bandwidth a copy of a buffer far larger than the caches (numpy, bytes counted read + written, as
STREAM does) plus, for context, a read-only stream. Every figure is the fastest of many short
bursts: on a shared machine other work only slows a burst down.

    python bench/host_probe.py                  # prints JSON
    python bench/host_probe.py --check          # and compares with load_target("host"); exit 1 if > 15 % apart
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import numpy as np

CHAINS = (
    12  # independent accumulators: enough to hide a 4-cycle FMA latency on two pipes, few enough to stay in registers
)


def _lanes() -> int:
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    return 16 if "avx512f" in flags else 8 if "avx2" in flags else 4


def fma_peak_gflops(threads: int, bursts: int = 400, iterations: int = 40_000) -> float:
    import tvm
    from tvm.script import tirx as T
    from tvm.target import codegen

    lanes = _lanes()

    @T.prim_func
    def peak(out: T.Buffer((threads, CHAINS, lanes), "float32"), scale: T.Buffer((lanes,), "float32")):
        T.func_attr({"global_symbol": "peak", "tirx.noalias": True})
        for t in T.parallel(threads):
            acc = T.alloc_buffer((CHAINS, lanes), "float32", scope="local")
            s = T.alloc_buffer((lanes,), "float32", scope="local")
            for lane in T.vectorized(lanes):
                s[lane] = scale[lane]
            for c in T.unroll(CHAINS):
                for lane in T.vectorized(lanes):
                    acc[c, lane] = T.float32(c)
            for _ in range(iterations):
                for c in T.unroll(CHAINS):
                    for lane in T.vectorized(lanes):
                        acc[c, lane] = acc[c, lane] * s[lane] + s[lane]
            for c in T.unroll(CHAINS):
                for lane in T.vectorized(lanes):
                    out[t, c, lane] = acc[c, lane]

    target = tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu(), "num-cores": threads})
    lib = tvm.compile(tvm.IRModule({"peak": peak}), target=target).mod
    device = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros((threads, CHAINS, lanes), "float32"), device)
    scale = tvm.runtime.tensor(np.full(lanes, 0.999999, "float32"), device)
    seconds = lib.time_evaluator("peak", device, number=1, repeat=bursts)(out, scale).results
    return 2 * threads * CHAINS * lanes * iterations / min(seconds) / 1e9


def _threaded(work, threads: int) -> float:
    barrier = threading.Barrier(threads + 1)

    def run(k):
        barrier.wait()
        work(k)

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def _buffer_megabytes() -> int:
    """The size rule the reports' probe uses (4x the last-level cache, 64-512 MiB): on a VM seen here
    a 128 MiB copy ran at 18-25 GB/s and a 512 MiB one at 35-46, so the two must copy alike."""
    from edgecc.targets.probe import cache_bytes, copy_buffer_bytes

    return copy_buffer_bytes(cache_bytes()) >> 20


def copy_bandwidth_gbs(threads: int, megabytes: int = 128, rounds: int = 30) -> float:
    source = np.ones(megabytes * (1 << 20) // 4, np.float32)
    destination = np.zeros_like(source)
    best = 0.0
    for index in range(rounds):
        n = threads if index % 2 == 0 else 1
        step = len(source) // n
        seconds = _threaded(
            lambda k, step=step: np.copyto(destination[k * step : (k + 1) * step], source[k * step : (k + 1) * step]), n
        )
        best = max(best, 2 * step * n * 4 / seconds / 1e9)
    return best


def read_bandwidth_gbs(threads: int, megabytes: int = 128, rounds: int = 20) -> float:
    """A read-only stream (a TVM-built vectorized sum), for context: no writes, no write-allocate."""
    import tvm
    from tvm.script import tirx as T
    from tvm.target import codegen

    n = megabytes * (1 << 20) // 4
    lanes, per = _lanes(), n // threads

    @T.prim_func
    def total(a: T.Buffer((n,), "float32"), o: T.Buffer((threads, lanes), "float32")):
        T.func_attr({"global_symbol": "total", "tirx.noalias": True})
        for t in T.parallel(threads):
            acc = T.alloc_buffer((4, lanes), "float32", scope="local")
            for c in T.unroll(4):
                for lane in T.vectorized(lanes):
                    acc[c, lane] = T.float32(0)
            for i in range(per // (4 * lanes)):
                for c in T.unroll(4):
                    for lane in T.vectorized(lanes):
                        acc[c, lane] = acc[c, lane] + a[t * per + i * 4 * lanes + c * lanes + lane]
            for lane in T.vectorized(lanes):
                o[t, lane] = acc[0, lane] + acc[1, lane] + acc[2, lane] + acc[3, lane]

    target = tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu(), "num-cores": threads})
    lib = tvm.compile(tvm.IRModule({"total": total}), target=target).mod
    device = tvm.cpu()
    a = tvm.runtime.tensor(np.ones(n, "float32"), device)
    o = tvm.runtime.tensor(np.zeros((threads, lanes), "float32"), device)
    seconds = lib.time_evaluator("total", device, number=1, repeat=rounds)(a, o).results
    return n * 4 / min(seconds) / 1e9


def probe(threads: int) -> dict:
    from tvm.target import codegen

    together = fma_peak_gflops(threads)
    one = fma_peak_gflops(1)
    megabytes = _buffer_megabytes()
    # On a machine with other work, `threads` threads rarely get as many cores at once for a whole
    # burst; one thread's rate times the cores (identical cores) stands in for it then.
    return {
        "llvm_cpu": codegen.llvm_get_system_cpu(),
        "threads": threads,
        "fp32_gflops": round(max(together, threads * one), 1),
        "fp32_gflops_all_threads": round(together, 1),
        "fp32_gflops_one_thread": round(one, 1),
        "copy_bandwidth_gbs": round(copy_bandwidth_gbs(threads, megabytes), 1),
        "read_bandwidth_gbs": round(read_bandwidth_gbs(threads, megabytes), 1),
        "load_average": round(os.getloadavg()[0], 2),
    }


def check(measured: dict, tolerance: float = 0.15) -> dict:
    """The report's host figures against this probe: ratios and whether each is within `tolerance`."""
    from edgecc.targets import load_target

    board = load_target("host").board
    pairs = {
        "fp32 peak": (board.peak_gflops["fp32"], measured["fp32_gflops"]),
        "memory bandwidth": (board.memory_bandwidth_gbs, measured["copy_bandwidth_gbs"]),
    }
    return {
        name: {
            "report": report,
            "probe": probe_value,
            "report_over_probe": round(report / probe_value, 3),
            "within": abs(report / probe_value - 1) <= tolerance,
        }
        for name, (report, probe_value) in pairs.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--check", action="store_true", help="compare with edgecc's host facts (15 %% tolerance)")
    args = parser.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    measured = probe(args.threads)
    if args.check:
        measured["check"] = check(measured)
    print(json.dumps(measured, indent=1))
    return 0 if not args.check or all(c["within"] for c in measured["check"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
