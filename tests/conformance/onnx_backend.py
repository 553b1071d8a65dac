"""The small models the `onnx` package ships with its backend tests (pytorch-converted,
pytorch-operator, simple), compiled through bare TVM and through edgecc, and compared with the
outputs the test data gives (output_*.pb).

    python tests/conformance/onnx_backend.py [--jobs 2] [--only NAME ...]

prints one line per model and the totals; tests/test_conformance_onnx_backend.py runs it in CI.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

SUITES = ("pytorch-converted", "pytorch-operator", "simple")
RTOL, ATOL = 1e-3, 1e-5  # onnx's own backend tests use rtol 1e-3 (atol 1e-7, which float32 kernels miss)


def data_root() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def cases() -> list[Path]:
    root = data_root()
    return sorted(p for suite in SUITES for p in (root / suite).iterdir() if (p / "model.onnx").exists())


@dataclass
class Outcome:
    name: str  # suite/test_name
    bare_tvm: str  # "builds" or the first line of why not
    edgecc: str  # "match", "mismatch: ...", or "error: <the one line edgecc printed>"
    seconds: float = 0.0


def _read_tensors(folder: Path, prefix: str) -> list:
    import onnx
    from onnx import numpy_helper

    tensors = []
    for path in sorted(folder.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[1])):
        proto = onnx.TensorProto()
        proto.ParseFromString(path.read_bytes())
        tensors.append((proto.name, numpy_helper.to_array(proto)))
    return tensors


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def bare_tvm_builds(model_path: Path) -> str:
    import onnx
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    try:
        mod = from_onnx(onnx.load(str(model_path)), keep_params_in_input=False)
        relax.build(mod, tvm.target.Target({"kind": "llvm"}))
        return "builds"
    except Exception as exc:  # noqa: BLE001 - recorded, the comparison is the point
        return f"{type(exc).__name__}: {_first_line(exc)}"


def through_edgecc(case: Path, work: Path) -> str:
    import numpy as np

    import edgecc
    from edgecc.errors import EdgeccError
    from edgecc.frontend.onnx_import import graph_inputs, load_onnx

    data = case / "test_data_set_0"
    model_path = case / "model.onnx"
    try:
        names = [name for name, _, _ in graph_inputs(load_onnx(model_path))]
    except EdgeccError as exc:
        return f"error: {exc}"
    given = _read_tensors(data, "input")
    inputs = {(tensor_name or names[i]): array for i, (tensor_name, array) in enumerate(given)}
    if set(inputs) != set(names):  # test data named differently from the graph: position decides
        inputs = {names[i]: array for i, (_, array) in enumerate(given)}
    npz = work / "inputs.npz"
    try:
        np.savez(npz, **inputs)
    except ValueError:
        pass  # object arrays (strings): edgecc refuses the model before it reads the file
    # the test data fixes every input's shape (models often leave dims symbolic); strings are not numbers
    specs = [
        f"{name}:{'x'.join(map(str, array.shape))}:{array.dtype}"
        for name, array in inputs.items()
        if array.ndim and all(d > 0 for d in array.shape) and array.dtype.kind in "biuf"
    ]
    try:
        result = edgecc.compile(
            model_path,
            "host",
            work / "artifact",
            input_specs=tuple(specs),
            sample_inputs=npz,
            verify=False,
            measure=False,
            log=lambda *_: None,
        )
        actual = edgecc.run(result.artifact_dir, inputs)
    except EdgeccError as exc:
        return f"error: {str(exc).splitlines()[0]}"
    wrong = _compare(actual, _read_tensors(data, "output"))
    if wrong is None:
        return "match"
    # A wrong answer must not reach a user silently: a normal compile (verified against ONNX Runtime
    # on the same inputs) has to refuse it.
    try:
        edgecc.compile(
            model_path,
            "host",
            work / "verified",
            input_specs=tuple(specs),
            sample_inputs=npz,
            measure=False,
            log=lambda *_: None,
        )
    except EdgeccError as exc:
        return f"mismatch ({wrong}); a verified compile refuses it: {str(exc).splitlines()[0]}"
    return f"mismatch ({wrong}) and a verified compile passes: SILENT WRONG ANSWER"


def _compare(actual: dict, expected: list) -> str | None:
    import numpy as np

    outputs = list(actual.values())
    if len(outputs) != len(expected):
        return f"{len(outputs)} outputs, the test data has {len(expected)}"
    for index, ((_, want), got) in enumerate(zip(expected, outputs)):
        if want.shape != got.shape:
            return f"output {index} has shape {list(got.shape)}, expected {list(want.shape)}"
        if not np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=RTOL, atol=ATOL, equal_nan=True):
            worst = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
            return f"output {index} differs by up to {worst:.3g}"
    return None


def run_case(case: Path) -> Outcome:
    started = time.perf_counter()
    name = f"{case.parent.name}/{case.name}"
    bare = bare_tvm_builds(case / "model.onnx")
    with tempfile.TemporaryDirectory(prefix="edgecc-conformance-") as work:
        try:
            verdict = through_edgecc(case, Path(work))
        except Exception as exc:  # noqa: BLE001 - anything that is not an EdgeccError is an edgecc bug: say so
            verdict = f"crash: {type(exc).__name__}: {_first_line(exc)}"
    return Outcome(name, bare, verdict, time.perf_counter() - started)


def _worker_init():
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    import warnings

    warnings.simplefilter("ignore")


def run_all(selected: list[Path], jobs: int = 2) -> list[Outcome]:
    # spawned, not forked: a fork of a process whose TVM thread pool already ran (earlier tests in the
    # same pytest) inherits the pool's locks held, and its first parallel kernel waits forever
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, initializer=_worker_init, mp_context=context) as pool:
        return list(pool.map(run_case, selected, chunksize=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="test names (e.g. test_AvgPool1d)")
    parser.add_argument("--json", type=Path, help="write the outcomes here")
    args = parser.parse_args(argv)
    selected = [c for c in cases() if not args.only or c.name in args.only]
    outcomes = run_all(selected, args.jobs)
    for o in outcomes:
        print(f"{o.name:60s} bare TVM: {o.bare_tvm[:40]:40s} edgecc: {o.edgecc[:150]}  ({o.seconds:.1f} s)")
    builds = [o for o in outcomes if o.bare_tvm == "builds"]
    match = [o for o in builds if o.edgecc == "match"]
    print(
        f"{len(outcomes)} models; bare TVM builds {len(builds)}; of those edgecc matches {len(match)} "
        f"({100 * len(match) / max(len(builds), 1):.1f}%); edgecc matches {sum(o.edgecc == 'match' for o in outcomes)} "
        f"in all"
    )
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
