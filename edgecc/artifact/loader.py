"""Load a compiled artifact (here or on a board over RPC), run it, and time it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecc.errors import EdgeccError, RemoteError
from edgecc.frontend.inputs import TensorSpec, check_inputs

MANIFEST = "manifest.json"


def read_manifest(folder: Path) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.exists():
        raise EdgeccError(f"{folder} is not an edgecc artifact (no {MANIFEST}); compile a model into it first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EdgeccError(f"{path} is corrupt: {exc}") from None


@dataclass
class LoadedArtifact:
    folder: Path
    manifest: dict
    vm: object
    device: object
    session: object = None  # the RPC session when the artifact runs on a board
    where: str = "host"
    emulated: bool = False

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_dict(d) for d in self.manifest["inputs"]]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_dict(d) for d in self.manifest["outputs"]]

    def arguments(self, inputs: dict):
        """The inputs as TVM tensors on the artifact's device, in `main`'s order, after checking them."""
        import tvm

        check_inputs(inputs, self.inputs, "inputs")
        return [tvm.runtime.tensor(np.ascontiguousarray(inputs[s.name]), self.device) for s in self.inputs]

    def run(self, inputs: dict) -> dict[str, np.ndarray]:
        with self._on_board("running the model"):
            result = self.vm["main"](*self.arguments(inputs))
            values = list(result) if _is_sequence(result) else [result]
            return {spec.name: value.numpy() for spec, value in zip(self.outputs, values)}

    def _on_board(self, doing: str):
        """A board that vanishes mid-call becomes one RemoteError naming it; local runs are untouched."""
        from contextlib import nullcontext

        from edgecc.remote.session import board_failures

        return board_failures(self.where, doing) if self.session is not None else nullcontext()

    def close(self) -> None:
        """Let go of the board: a TVM RPC server serves one session at a time, so a session held
        after use stalls the next client for the whole session timeout."""
        import gc

        self.vm = self.device = self.session = None
        gc.collect()

    def time(self, inputs: dict, repeat: int, number: int = 1) -> list[float]:
        """Seconds per run for `repeat` measurements of `number` back-to-back runs each."""
        with self._on_board("timing the model"):
            timer = self.vm.time_evaluator("main", self.device, number=number, repeat=repeat)
            return [float(r) for r in timer(*self.arguments(inputs)).results]


def _is_sequence(value) -> bool:
    import tvm

    return not isinstance(value, tvm.runtime.Tensor) and hasattr(value, "__len__")


def load_artifact(folder: Path, rpc: str | None = None, tracker: str | None = None, key: str | None = None,
                  timeout: float = 120.0) -> LoadedArtifact:
    import tvm
    from tvm import relax

    folder = Path(folder)
    manifest = read_manifest(folder)
    library = folder / manifest["library"]
    if not manifest.get("loadable", True):
        raise EdgeccError(f"{library} cannot be loaded as is: {'; '.join(manifest.get('missing', []))}")
    if rpc or tracker:
        from edgecc.remote.session import open_session

        session = open_session(rpc=rpc, tracker=tracker, key=key, timeout=timeout)
        where = rpc or f"tracker {tracker} key {key}"
        try:
            session.upload(str(library))
            lib = session.load_module(library.name)
            device = session.device(manifest.get("device", "cpu"), 0)
        except Exception as exc:  # noqa: BLE001 - the library raises many types; each becomes one clear line
            raise RemoteError(f"board {where} failed while loading {library.name}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
        from edgecc.remote.session import is_emulated

        return LoadedArtifact(folder, manifest, relax.VirtualMachine(lib, device), device, session, where,
                              is_emulated(session))
    if not manifest.get("runs_on_host", True):
        raise EdgeccError(f"{folder} was compiled for '{manifest['target']['name']}', which cannot run on this "
                          "machine; pass --rpc HOST:PORT or --tracker HOST:PORT --key KEY to run it on the board")
    device = tvm.device(manifest.get("device", "cpu"), 0)
    lib = tvm.runtime.load_module(str(library))
    return LoadedArtifact(folder, manifest, relax.VirtualMachine(lib, device), device)
