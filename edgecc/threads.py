"""How many threads edgecc runs TVM kernels (and ONNX Runtime, for comparison) with on this machine."""

from __future__ import annotations

import os

from edgecc.errors import EdgeccError


def host_threads() -> int:
    """Physical cores this process may run on (hyper-threads of one core add little to dense math)."""
    allowed = logical_cpus()
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or allowed
    except ImportError:
        physical = allowed
    return max(1, min(allowed, physical))


def size_tvm_thread_pool() -> None:
    """Give TVM's thread pool `host_threads()` threads unless TVM_NUM_THREADS already says how many.

    TVM sizes its pool as half the logical CPUs on x86, assuming every core has two hyper-threads.
    On a VM whose vCPUs are whole cores that ran every kernel on one core of two while ONNX Runtime
    used both (MiniLM's attention kernel at seq 1024: 5.2 ms on one thread, 2.6 ms on two). Set
    before TVM first starts the pool, which reads the variable once.
    """
    os.environ.setdefault("TVM_NUM_THREADS", str(host_threads()))


THREADS_PER_CORE = 4  # more threads than this per core only wait on each other: 64 on 2 cores ran 0.3 s as 58 s


def check_thread_count(threads, cores: int, where: str) -> int:
    """A thread count the user gave, refused (one line) unless it is a whole number from 1 to
    THREADS_PER_CORE x `cores` (the cores of `where`, the machine the threads will run on)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise EdgeccError(f"threads must be a whole number of at least 1, not {threads!r}")
    limit = THREADS_PER_CORE * max(1, int(cores))
    if threads > limit:
        raise EdgeccError(
            f"{threads} threads is more than {limit} ({THREADS_PER_CORE} per core of the {cores} cores of {where}); "
            "extra threads only wait on each other"
        )
    return threads


def logical_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
