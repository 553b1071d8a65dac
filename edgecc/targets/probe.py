"""Short measurements of this machine, cached per machine: core clock, memory bandwidth, cache sizes.

Both probes run in many short bursts and keep the best: on a shared machine other work only ever
slows a burst down, so the fastest of many is the machine's own speed, while a median would be
whatever share the neighbours left. The result is cached under $EDGECC_CACHE/host/ (default
~/.cache/edgecc/host/), keyed by CPU model, LLVM CPU name and core count. A figure measured while
the machine was busy is measured again once it is quieter, keeping the faster; EDGECC_REMEASURE_HOST=1
measures afresh and replaces the entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

PROBE_VERSION = 5  # 4: the vector chain's latency found against a scalar chain (Zen 5); 5: FMA throughput
_CLOCK_ITERATIONS = 50_000  # x 16 dependent pairs of one-cycle operations: a burst of ~0.4 ms at 4 GHz
_CLOCK_BURSTS = 200
_COPY_ROUNDS = 24


@dataclass(frozen=True)
class HostMeasurements:
    key: str
    clock_ghz: float | None
    clock_method: str
    bandwidth_gbs: float | None
    bandwidth_median_gbs: float | None
    bandwidth_method: str
    load_average: float | None
    measured_at: str
    version: int = PROBE_VERSION
    cache_file: str = ""
    fma_gflops: float | None = None  # one thread's FP32 FMA throughput (independent chains)


def cache_dir() -> Path:
    return Path(os.environ.get("EDGECC_CACHE", Path.home() / ".cache" / "edgecc")) / "host"


def machine_key(model_name: str, llvm_cpu: str, cores: int) -> str:
    return f"{model_name} | {llvm_cpu} | {cores} cores"


def _cache_file(key: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")[:60]
    return cache_dir() / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.json"


def _sysfs_bytes(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def cache_bytes(root: str = "/") -> dict[str, int]:
    """Data/unified cache capacity per level over the whole machine, from sysfs: {"L2": n, "L3": m}."""
    levels: dict[str, int] = {}
    seen = set()
    for index in sorted(Path(root).glob("sys/devices/system/cpu/cpu[0-9]*/cache/index[0-9]*")):
        try:
            kind = (index / "type").read_text().strip()
            level = (index / "level").read_text().strip()
            size = _sysfs_bytes((index / "size").read_text())
            shared = (index / "shared_cpu_list").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction" or (level, shared) in seen:
            continue
        seen.add((level, shared))
        levels[f"L{level}"] = levels.get(f"L{level}", 0) + size
    return levels


def _host_target():
    """(the host target's LLVM target, float32 lanes of its widest vectors) for the probes' kernels:
    a CPU pinned by EDGECC_HOST_CPU is measured with its own vectors (its FMA throughput here)."""
    import tvm
    from tvm.target import codegen

    from edgecc.targets.cpu_flags import host_cpu

    cpu = host_cpu()
    target = tvm.target.Target({"kind": "llvm", "mcpu": cpu.name, "mattr": list(cpu.corrections)})
    features = {str(f) for f in codegen.llvm_get_cpu_features(target)}
    return target, 16 if "avx512f" in features else 8 if "avx2" in features else 4


def _clock_kernel():
    """Two chains of dependent xor/add pairs, built with TVM: one on the widest integer vectors and
    one on scalars; returns (module, lanes). Vectors, because the peaks the clock scales are vector
    peaks, and a core may clock lower under wide vector work: this project's AMX Xeon runs scalar
    code at 4.09 GHz, 512-bit integer code at 3.69 and FMAs at 3.39. The scalar chain, because a
    vector xor or add takes one cycle on most cores but two on Zen 5 (its vector chain alone read
    1.83 GHz on a 3.62 GHz core): scalar ones take one cycle everywhere. Registers, not immediates:
    Golden Cove and later cores add an immediate in the register renamer without latency (6.9 GHz)."""
    import tvm
    from tvm.script import tirx as T

    iterations = _CLOCK_ITERATIONS
    target, lanes = _host_target()

    @T.prim_func
    def chain(out: T.Buffer((lanes,), "int32"), seed: T.Buffer((2 * lanes,), "int32")):
        T.func_attr({"global_symbol": "chain", "tirx.noalias": True})
        x = T.alloc_buffer((lanes,), "int32", scope="local")
        for lane in T.vectorized(lanes):
            x[lane] = seed[lane]
        for _ in range(iterations):
            for _u in T.unroll(16):
                for lane in T.vectorized(lanes):
                    x[lane] = T.bitwise_xor(x[lane], seed[lanes + lane]) + seed[lane]
        for lane in T.vectorized(lanes):
            out[lane] = x[lane]

    @T.prim_func
    def scalar_chain(out: T.Buffer((1,), "int32"), seed: T.Buffer((2,), "int32")):
        T.func_attr({"global_symbol": "scalar_chain", "tirx.noalias": True})
        x = T.alloc_buffer((1,), "int32", scope="local")
        x[0] = seed[0]
        for _ in range(iterations):
            for _u in T.unroll(16):
                x[0] = T.bitwise_xor(x[0], seed[1]) + seed[0]
        out[0] = x[0]

    module = tvm.IRModule({"chain": chain, "scalar_chain": scalar_chain})
    return tvm.compile(module, target=target).mod, lanes


def clock_from_chains(vector_ghz: float, scalar_ghz: float) -> float:
    """The clock under vector work: the vector chain's rate times its operations' latency in cycles,
    the whole number nearest the scalar chain's rate over it (wide-vector downclocking is at most
    ~25%, so 1 on most cores and 2 on Zen 5's two-cycle vector integer operations)."""
    return vector_ghz * max(1, round(scalar_ghz / vector_ghz))


_FMA_CHAINS = 12  # independent accumulators: hide a 4-cycle FMA latency on two pipes, stay in registers
_FMA_ITERATIONS = 20_000


def measure_fma_gflops() -> float:
    """One thread's FP32 FMA throughput on the widest vectors: fastest of many short bursts. The clock
    under FMA work can be lower than under integer vector work (wide-vector licences: this project's
    AMX Xeon read 4.09 GHz on the integer chain while its FMAs ran at 3.4), so the FP32 peak is
    capped by this measured throughput (targets/host.py)."""
    import numpy as np
    import tvm
    from tvm.script import tirx as T

    target, lanes = _host_target()
    chains, iterations = _FMA_CHAINS, _FMA_ITERATIONS

    @T.prim_func
    def fma(out: T.Buffer((chains, lanes), "float32"), scale: T.Buffer((lanes,), "float32")):
        T.func_attr({"global_symbol": "fma", "tirx.noalias": True})
        acc = T.alloc_buffer((chains, lanes), "float32", scope="local")
        s = T.alloc_buffer((lanes,), "float32", scope="local")
        for lane in T.vectorized(lanes):
            s[lane] = scale[lane]
        for c in T.unroll(chains):
            for lane in T.vectorized(lanes):
                acc[c, lane] = T.float32(c)
        for _ in range(iterations):
            for c in T.unroll(chains):
                for lane in T.vectorized(lanes):
                    acc[c, lane] = acc[c, lane] * s[lane] + s[lane]
        for c in T.unroll(chains):
            for lane in T.vectorized(lanes):
                out[c, lane] = acc[c, lane]

    lib = tvm.compile(tvm.IRModule({"fma": fma}), target=target).mod
    device = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros((chains, lanes), "float32"), device)
    scale = tvm.runtime.tensor(np.full(lanes, 0.999999, "float32"), device)
    seconds = lib.time_evaluator("fma", device, number=1, repeat=_CLOCK_BURSTS)(out, scale).results
    return 2 * chains * lanes * iterations / min(seconds) / 1e9


def measure_clock_ghz() -> float:
    """The core clock while busy: cycles of dependent chains over the fastest burst."""
    import numpy as np
    import tvm

    lib, lanes = _clock_kernel()
    device = tvm.cpu()
    rates = []
    for name, width in (("chain", lanes), ("scalar_chain", 1)):
        out = tvm.runtime.tensor(np.zeros(width, "int32"), device)
        seed = tvm.runtime.tensor(np.arange(12345, 12345 + 2 * width, dtype="int32"), device)
        seconds = lib.time_evaluator(name, device, number=1, repeat=_CLOCK_BURSTS)(out, seed).results
        rates.append(2 * 16 * _CLOCK_ITERATIONS / min(seconds) / 1e9)
    return clock_from_chains(*rates)


def copy_buffer_bytes(caches: dict[str, int]) -> int:
    """Each of the two copy buffers: four times the last-level cache, at least 64 MiB, at most 512 MiB."""
    last_level = max(caches.values()) if caches else 32 << 20
    return int(min(512 << 20, max(64 << 20, 4 * last_level)))


def _timed_copy(source, destination, threads: int) -> float:
    """GB/s of one round: `threads` threads each copying its slice (numpy's copy releases the GIL)."""
    import numpy as np

    step = len(source) // threads
    barrier = threading.Barrier(threads + 1)

    def work(k):
        barrier.wait()
        np.copyto(destination[k * step : (k + 1) * step], source[k * step : (k + 1) * step])

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    return 2 * step * threads * source.itemsize / (time.perf_counter() - started) / 1e9


def measure_copy_bandwidth(threads: int, buffer_bytes: int, rounds: int = _COPY_ROUNDS) -> tuple[float, float]:
    """(best, median) GB/s copying a buffer much larger than the caches into another, bytes counted
    as read + written (STREAM's convention). Rounds alternate `threads` threads with one thread:
    on this kind of machine one core nearly saturates memory, and on a shared machine a lone
    thread gets a whole core far more often than two threads get two."""
    import numpy as np

    source = np.ones(buffer_bytes // 4, np.float32)
    destination = np.zeros_like(source)  # touched now, so page faults stay out of the timing
    rates = [_timed_copy(source, destination, threads if index % 2 == 0 else 1) for index in range(rounds)]
    return max(rates), float(np.median(rates))


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def measure_host(key: str, threads: int, caches: dict[str, int]) -> HostMeasurements:
    try:
        clock, clock_method = (
            measure_clock_ghz(),
            (
                "measured: a chain of dependent vector integer operations, their latency (1 or 2 cycles) "
                f"found against a scalar chain; fastest of {_CLOCK_BURSTS} bursts"
            ),
        )
    except Exception as exc:  # noqa: BLE001 - no TVM/LLVM here: the caller falls back to /proc/cpuinfo and says so
        clock, clock_method = None, f"not measured ({type(exc).__name__})"
    size = copy_buffer_bytes(caches)
    try:
        best, median = measure_copy_bandwidth(threads, size)
        method = (
            f"measured: copy of a {size >> 20} MiB buffer into another (> 4x the last-level cache) by "
            f"{threads} threads and by 1, alternating; read + written bytes; fastest of {_COPY_ROUNDS} "
            f"rounds (median {median:.1f} GB/s)"
        )
    except MemoryError:
        best = median = None
        method = f"not measured: no memory for two {size >> 20} MiB buffers"
    try:
        fma = measure_fma_gflops()
    except Exception:  # noqa: BLE001 - as for the clock: the peak is then the clock's alone, and says so
        fma = None
    return HostMeasurements(
        key,
        clock,
        clock_method,
        best,
        median,
        method,
        _load_average(),
        datetime.now(UTC).isoformat(timespec="seconds"),
        fma_gflops=fma,
    )


def _cached(path: Path, key: str) -> HostMeasurements | None:
    try:
        data = json.loads(path.read_text())
        if data.get("version") == PROBE_VERSION and data.get("key") == key:
            return HostMeasurements(**{**data, "cache_file": str(path)})
    except (OSError, ValueError, TypeError):
        pass  # missing or damaged: measured again and rewritten
    return None


def _worth_remeasuring(previous: HostMeasurements, cores: int) -> bool:
    """A figure measured while the machine was busy may be low: measure again once it is quieter."""
    now = _load_average()
    then = previous.load_average
    return then is not None and now is not None and then > 0.5 * cores and now < then - 0.5 * cores


def _best_of(previous: HostMeasurements, new: HostMeasurements) -> HostMeasurements:
    """Load only ever slows a probe down: keep the faster of the two measurements of each figure."""
    from dataclasses import replace

    out = new
    if previous.clock_ghz and (not new.clock_ghz or previous.clock_ghz > new.clock_ghz):
        out = replace(out, clock_ghz=previous.clock_ghz, clock_method=previous.clock_method)
    if previous.fma_gflops and (not new.fma_gflops or previous.fma_gflops > new.fma_gflops):
        out = replace(out, fma_gflops=previous.fma_gflops)
    if previous.bandwidth_gbs and (not new.bandwidth_gbs or previous.bandwidth_gbs > new.bandwidth_gbs):
        out = replace(
            out,
            bandwidth_gbs=previous.bandwidth_gbs,
            bandwidth_median_gbs=previous.bandwidth_median_gbs,
            bandwidth_method=previous.bandwidth_method,
            measured_at=previous.measured_at,
            load_average=previous.load_average,
        )
    return out


def host_measurements(model_name: str, llvm_cpu: str, cores: int, caches: dict[str, int]) -> HostMeasurements:
    """This machine's measurements, from the cache when present (and of this probe version)."""
    from edgecc.atomic import write_json_atomic

    key = machine_key(model_name, llvm_cpu, cores)
    path = _cache_file(key)
    previous = None if os.environ.get("EDGECC_REMEASURE_HOST") == "1" else _cached(path, key)
    if previous is not None and not _worth_remeasuring(previous, cores):
        return previous
    measured = measure_host(key, cores, caches)
    if previous is not None:
        measured = _best_of(previous, measured)
    try:
        write_json_atomic(path, {k: v for k, v in asdict(measured).items() if k != "cache_file"})
    except OSError:
        return measured  # a read-only home: measured every time, still correct
    return HostMeasurements(**{**asdict(measured), "cache_file": str(path)})
