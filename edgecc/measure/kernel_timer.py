"""One kernel of a built library timed alone, on random inputs of its buffer shapes.

The profile times kernels this way only where it cannot time them inside the model (a board over
RPC); the tuner's tuned-versus-default choice (edgecc/tuning/prefer_faster.py) always does.
"""

from __future__ import annotations

import numpy as np

# Arguments beyond this many bytes (besides the incoming activation) would not stay in a core's
# cache between two inferences, so such a kernel is timed with them flushed.
COLD_ARGUMENT_BYTES = 1 << 20
# One sample of a hot kernel batches calls up to this long, keeping the timer's own overhead out.
_BATCH_SECONDS = 0.0005
SAMPLES_PER_ROUND = 3


def _buffer_shape(buffer) -> list[int] | None:
    try:
        return [int(d) for d in buffer.shape]
    except TypeError:
        return None


def kernel_args(func) -> list[tuple[list[int], str]] | None:
    """(shape, dtype) of each argument buffer, or None when a shape is symbolic."""
    args = []
    for param in func.params:
        buffer = getattr(param, "ty", None)  # TVM 0.27: a buffer parameter's type carries shape and dtype
        if buffer is None or not hasattr(buffer, "shape"):
            return None
        shape = _buffer_shape(buffer)
        if shape is None:
            return None
        args.append((shape, str(buffer.dtype)))
    return args


def argument_bytes(args) -> int:
    """Every argument buffer once, whole."""
    return sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize for shape, dtype in args)


def _random_tensor(shape, dtype, device, rng):
    import tvm

    if "float" in dtype:
        data = rng.uniform(0.1, 1.0, size=shape).astype(dtype)
    else:
        data = np.zeros(shape, dtype=dtype)  # 0 is a valid index for every gather/take
    return tvm.runtime.tensor(data, device)


def _owner(lib, name: str):
    """The (imported) module that defines `name`: time_evaluator does not look into imports."""
    pending = [lib]
    while pending:
        module = pending.pop(0)
        try:
            if module.get_function(name, query_imports=False) is not None:
                return module
        except Exception:  # noqa: BLE001 - modules that cannot answer are just not the owner
            pass
        pending.extend(getattr(module, "imports", []))
    return lib


class KernelTimer:
    """Times one kernel of the built library on random inputs of its buffer shapes.

    On the local CPU, a kernel whose other arguments (weights, mostly) exceed COLD_ARGUMENT_BYTES
    is timed with the caches flushed of every argument but the first (the activation the previous
    kernel just wrote) before each call, as in a real inference where a layer's weights arrive
    from memory. Smaller kernels are timed hot, in batches."""

    def __init__(self, lib, name: str, args, device, rng):
        lib = _owner(lib, name)
        self.args = args
        self.tensors = [_random_tensor(shape, dtype, device, rng) for shape, dtype in args]
        probe = lib.time_evaluator(name, device, number=1, repeat=3)(*self.tensors)
        estimate = max(min(probe.results), 1e-7)
        # Local CPU only: the flush touches the argument pointers, which on a GPU or over RPC are not host memory.
        cold = device.dlpack_device_type() == 1 and argument_bytes(args[1:]) > COLD_ARGUMENT_BYTES
        number = 1 if cold else max(1, int(_BATCH_SECONDS / estimate))
        self.round_seconds = estimate * number * SAMPLES_PER_ROUND
        self._timer = lib.time_evaluator(
            name,
            device,
            number=number,
            repeat=SAMPLES_PER_ROUND,
            f_preproc="cache_flush_cpu_non_first_arg" if cold else "",
        )

    def __call__(self) -> float:
        """Median seconds per call over one round's samples."""
        return float(np.median(self._timer(*self.tensors).results))
