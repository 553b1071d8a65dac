"""Load a compiled artifact (here or on a board over RPC), run it, and time it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecc.artifact.integrity import (
    artifact_file,
    check_file_table,
    check_recorded_file,
    check_whole_elf,
    read_artifact_json,
)
from edgecc.artifact.manifest import MANIFEST, input_valid_ranges, valid_ranges_from_reference
from edgecc.errors import ArtifactError, EdgeccError, RemoteError, error_line
from edgecc.frontend.inputs import TensorSpec, check_inputs, check_value_ranges


def read_manifest(folder: Path) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.exists():
        raise ArtifactError(f"{folder} is not an edgecc artifact: no such folder")
    if not folder.is_dir():
        raise ArtifactError(f"{folder} is a file, not an artifact folder; pass the folder a compile wrote")
    if not path.exists():
        raise ArtifactError(f"{folder} is not an edgecc artifact (no {MANIFEST}); compile a model into it first")
    manifest = read_artifact_json(path)
    _check_manifest(manifest, path)
    return manifest


# optional fields the commands read, and their types (a compile always writes them; null is refused)
_OPTIONAL_FIELDS = (
    ("device", str),
    ("loadable", bool),
    ("runs_on_host", bool),
    ("missing", list),
    ("contents", dict),
    ("reference_model", str),
    ("versions", dict),
    ("precision", str),
)
MAX_BOARD_CORES = 4096


def _check_manifest(manifest, path: Path) -> None:
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith("edgecc-artifact/"):
        raise ArtifactError(f"{path} is not an edgecc artifact manifest (no edgecc 'format' field)")
    for key, kind in (("library", str), ("inputs", list), ("outputs", list), ("target", dict)):
        if not isinstance(manifest.get(key), kind):
            raise ArtifactError(f"{path}: field '{key}' is missing or not a {kind.__name__}")
    for key, kind in _OPTIONAL_FIELDS:
        if key in manifest and not isinstance(manifest[key], kind):
            raise ArtifactError(f"{path}: field '{key}' is not a {kind.__name__}")
    if not all(isinstance(m, str) for m in manifest.get("missing", [])):
        raise ArtifactError(f"{path}: field 'missing' is not a list of text")
    _check_target(manifest["target"], path)
    check_file_table(manifest, path)
    for entry in manifest["inputs"] + manifest["outputs"]:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("dtype"), str)
            and isinstance(entry.get("shape"), list)
            and all(isinstance(d, int) and d >= 0 for d in entry["shape"])
        ):
            raise ArtifactError(f"{path}: an input or output entry is not {{name, shape, dtype}}: {str(entry)[:120]}")
        valid = entry.get("valid_range")
        if valid is not None and not (
            isinstance(valid, list)
            and len(valid) == 2
            and all(isinstance(v, int) for v in valid)
            and valid[0] < valid[1]
        ):
            raise ArtifactError(f"{path}: input '{entry['name']}' has a bad valid_range {valid!r} (want [low, high))")
        per_position = entry.get("valid_range_last_axis")
        if per_position is not None and not (
            isinstance(per_position, list)
            and per_position
            and all(
                isinstance(pair, list) and len(pair) == 2 and all(type(v) is int for v in pair) and pair[0] < pair[1]
                for pair in per_position
            )
        ):
            raise ArtifactError(
                f"{path}: input '{entry['name']}' has a bad valid_range_last_axis {str(per_position)[:80]} "
                "(want [[low, high), ...])"
            )


def _check_target(target: dict, path: Path) -> None:
    for key in ("name", "kind", "os", "arch"):
        if not isinstance(target.get(key), str):
            raise ArtifactError(f"{path}: field 'target.{key}' is missing or not text")
    board = target.get("board")
    if not isinstance(board, dict):
        raise ArtifactError(f"{path}: field 'target.board' is missing or not an object")
    cores = board.get("cores")
    if cores is not None and not (type(cores) is int and 1 <= cores <= MAX_BOARD_CORES):
        raise ArtifactError(f"{path}: field 'target.board.cores' is {cores!r}, not a core count (1-{MAX_BOARD_CORES})")


def checked_file(folder: Path, manifest: dict, name, what: str) -> Path:
    """An artifact file about to be loaded: inside the folder, and the very file the compile wrote."""
    manifest_path = Path(folder) / MANIFEST
    path = artifact_file(folder, name, manifest_path, what)
    check_recorded_file(path, manifest, manifest_path)
    return path


@dataclass
class LoadedArtifact:
    folder: Path
    manifest: dict
    vm: object
    device: object
    session: object = None  # the RPC session when the artifact runs on a board
    where: str = "host"
    emulated: bool = False
    _valid_ranges: dict | None = None

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_dict(d) for d in self.manifest["inputs"]]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_dict(d) for d in self.manifest["outputs"]]

    @property
    def valid_ranges(self) -> dict[str, tuple[int, int]]:
        """Input name -> [low, high) of the integer inputs that index a table (token ids)."""
        if self._valid_ranges is None:
            ranges = input_valid_ranges(self.manifest)
            if not ranges and any(s.dtype.startswith(("int", "uint")) for s in self.inputs):
                ranges = valid_ranges_from_reference(self.folder, self.manifest)  # compiled before valid_range
            self._valid_ranges = ranges
        return self._valid_ranges

    def arguments(self, inputs: dict):
        """The inputs as TVM tensors on the artifact's device, in `main`'s order, after checking them
        (names, shapes, dtypes, and token ids against their tables) here, before anything reaches a
        kernel or a board."""
        import tvm

        check_inputs(inputs, self.inputs, "inputs")
        check_value_ranges(inputs, self.valid_ranges, "inputs")
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


def load_artifact(
    folder: Path, rpc: str | None = None, tracker: str | None = None, key: str | None = None, timeout: float = 120.0
) -> LoadedArtifact:
    import tvm
    from tvm import relax

    folder = Path(folder)
    manifest = read_manifest(folder)
    if not manifest.get("loadable", True):
        raise EdgeccError(
            f"{folder / str(manifest['library'])} cannot be loaded as is: {'; '.join(manifest.get('missing', []))}"
        )
    if not (rpc or tracker) and not manifest.get("runs_on_host", True):
        raise EdgeccError(
            f"{folder} was compiled for '{manifest['target']['name']}', which cannot run on this "
            "machine; pass --rpc HOST:PORT or --tracker HOST:PORT --key KEY to run it on the board"
        )
    library = checked_file(folder, manifest, manifest["library"], "library")
    check_whole_elf(library)
    if rpc or tracker:
        from edgecc.remote.session import open_session

        session = open_session(rpc=rpc, tracker=tracker, key=key, timeout=timeout)
        where = rpc or f"tracker {tracker} key {key}"
        try:
            session.upload(str(library))
            lib = session.load_module(library.name)
            device = session.device(manifest.get("device", "cpu"), 0)
        except Exception as exc:  # noqa: BLE001 - the library raises many types; each becomes one clear line
            from edgecc.remote.session import remote_reason

            raise RemoteError(f"board {where} failed while loading {library.name}: {remote_reason(exc)}") from None
        from edgecc.remote.session import is_emulated

        return LoadedArtifact(
            folder, manifest, relax.VirtualMachine(lib, device), device, session, where, is_emulated(session)
        )
    try:
        device = tvm.device(manifest.get("device", "cpu"), 0)
        lib = tvm.runtime.load_module(str(library))
        vm = relax.VirtualMachine(lib, device)
    except Exception as exc:  # noqa: BLE001 - TVM raises several types for a library it cannot load
        raise ArtifactError(f"{library} cannot be loaded here: {error_line(exc, last=True)}") from None
    return LoadedArtifact(folder, manifest, vm, device)
