"""ONNX in, Relax out: check, fix input shapes, infer shapes, simplify, then the Relax frontend."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from edgecc.errors import ModelError, error_line
from edgecc.frontend.inputs import ONNX_DTYPES, TensorSpec, resolve_input_specs
from edgecc.user_files import checked_user_file

MAX_ONNX_BYTES = 2 << 30  # protobuf's own limit: larger models keep their weights in external data files


@dataclass
class ImportedModel:
    """What the import stage produced: inspect it, or save `onnx_model` / `relax_module`."""

    source_path: Path
    onnx_model: object  # the simplified, shape-fixed onnx.ModelProto
    relax_module: object  # tvm.IRModule with weights bound as constants
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    index_bounds: dict[str, tuple] = field(default_factory=dict)  # int input -> (low, high): index_ranges.py
    op_counts: dict[str, int] = field(default_factory=dict)
    simplified: bool = True  # onnxslim simplified the graph (False: it failed; the graph as given was imported)
    simplify_error: str | None = None  # why onnxslim failed

    def import_notes(self) -> dict:
        """report.json["model"]["import"]: whether the graph was simplified, and why not."""
        import onnxslim

        return {
            "simplifier": f"onnxslim {getattr(onnxslim, '__version__', '?')}",
            "simplified": self.simplified,
            "fallback": None
            if self.simplified
            else f"imported the unsimplified graph: onnxslim failed: {self.simplify_error}",
        }


def load_onnx(path: Path):
    import onnx

    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"{path} is a folder; pass an .onnx file, a Hugging Face model folder or a built-in name")
    checked_user_file(path, "model file", MAX_ONNX_BYTES, ModelError)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - the library raises many types; each becomes one clear line
        raise ModelError(
            f"{path} is not a readable ONNX file (corrupt, truncated or another format): {error_line(exc)}"
        ) from None
    if not model.graph.node:
        raise ModelError(
            f"{path} is not a usable ONNX model: its graph has no nodes (an empty, truncated or non-ONNX file)"
        )
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - the library raises many types; each becomes one clear line
        raise ModelError(f"{path} fails the ONNX checker: {error_line(exc)}") from None
    return model


def graph_inputs(model) -> list[tuple[str, list, str]]:
    initializers = {init.name for init in model.graph.initializer}
    result = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
        result.append((value.name, dims, ONNX_DTYPES.get(tensor.elem_type, f"onnx-type-{tensor.elem_type}")))
    return result


def unsupported_ops(model) -> dict[str, str]:
    """op type -> the first node that uses it, for ops the Relax ONNX frontend cannot convert."""
    from tvm.relax.frontend.onnx import onnx_frontend

    supported = set(onnx_frontend._get_convert_map())
    missing: dict[str, str] = {}
    for index, node in enumerate(model.graph.node):
        domain_ok = node.domain in ("", "ai.onnx")
        if (not domain_ok or node.op_type not in supported) and node.op_type not in missing:
            missing[node.op_type if domain_ok else f"{node.domain}::{node.op_type}"] = node.name or f"#{index}"
    return missing


def _fix_input_shapes(model, specs: list[TensorSpec]):
    by_name = {s.name: s for s in specs}
    for value in model.graph.input:
        if value.name in by_name:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, by_name[value.name].shape):
                dim.Clear()
                dim.dim_value = size
    return model


def _index_bounds(model, specs: list[TensorSpec]) -> dict[str, tuple]:
    """{input name: (low, high)} of the integer inputs that index a tensor (frontend/index_ranges.py)."""
    from edgecc.frontend.index_ranges import index_ranges

    return index_ranges(model, [s.name for s in specs if s.dtype.startswith(("int", "uint"))])


def check_opset(model, path: Path) -> None:
    """An opset newer than the onnx package (and ONNX Runtime, the reference) know is one line, not
    an ONNX Runtime stack of text at verification."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version > newest:
            raise ModelError(
                f"{path}: the model uses ONNX opset {entry.version}, newer than this installation knows "
                f"(onnx {onnx.__version__}, the reference ONNX Runtime is checked against, knows opsets up to "
                f"{newest}); "
                f"export it with opset {newest} or lower"
            )


def _type_name(elem_type: int) -> str:
    import onnx

    try:
        return onnx.helper.tensor_dtype_to_string(elem_type).removeprefix("TensorProto.")
    except Exception:  # noqa: BLE001 - an unknown number: show the number
        return f"onnx type {elem_type}"


def _unsupported_type(path: Path, kind: str, name: str, dtype: str) -> ModelError:
    number = int(dtype.removeprefix("onnx-type-"))
    return ModelError(
        f"{path}: {kind} '{name}' has element type {_type_name(number)}, which edgecc does not "
        f"support (supported: {', '.join(sorted(set(ONNX_DTYPES.values())))})"
    )


def import_onnx(path: Path, input_overrides: list[TensorSpec], batch: int, seq_len: int) -> ImportedModel:
    import onnx

    model = load_onnx(path)
    check_opset(model, path)
    missing = unsupported_ops(model)
    if missing:
        listed = ", ".join(f"{op} (node '{node}')" for op, node in missing.items())
        raise ModelError(f"{path}: unsupported ONNX op(s) for the TVM Relax frontend: {listed}")
    specs = resolve_input_specs(graph_inputs(model), input_overrides, batch, seq_len)
    bad = [s for s in specs if s.dtype.startswith("onnx-type")]
    if bad:
        raise _unsupported_type(path, "input", bad[0].name, bad[0].dtype)
    model = _fix_input_shapes(model, specs)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:  # noqa: BLE001 - the library raises many types; each becomes one clear line
        raise ModelError(
            f"{path}: shape inference failed with inputs "
            f"{', '.join(f'{s.name}:{s.shape}' for s in specs)}: {error_line(exc)}"
        ) from None
    simplified, simplify_error = _simplify(model)
    if simplified is not None:
        model = simplified
    outputs = [
        TensorSpec(
            v.name,
            tuple(d.dim_value for d in v.type.tensor_type.shape.dim),
            ONNX_DTYPES.get(v.type.tensor_type.elem_type, f"onnx-type-{v.type.tensor_type.elem_type}"),
        )
        for v in model.graph.output
    ]
    bad = [s for s in outputs if s.dtype.startswith("onnx-type")]
    if bad:
        raise _unsupported_type(path, "output", bad[0].name, bad[0].dtype)
    relax_module = to_relax(model, specs, path)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return ImportedModel(
        Path(path),
        model,
        relax_module,
        specs,
        outputs,
        _index_bounds(model, specs),
        counts,
        simplified is not None,
        simplify_error,
    )


def _simplify(model):
    """(onnxslim's simplified model, None), or (None, why) when onnxslim fails: the graph as given is
    then imported, since the Relax frontend reads most graphs onnxslim cannot (old IR versions that
    list initializers as graph inputs, e.g. most of the onnx package's backend test models)."""
    import onnxslim

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            return onnxslim.slim(model), None
        except Exception as exc:  # noqa: BLE001 - any failure: fall back to the graph as given, and say why
            return None, error_line(exc)


def to_relax(model, specs: list[TensorSpec], path: Path):
    from tvm.relax.frontend.onnx import from_onnx

    shape_dict = {s.name: list(s.shape) for s in specs}
    dtype_dict = {s.name: s.dtype for s in specs}
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # on failure it prints the node's inputs: pages of IR
            return from_onnx(model, shape_dict=shape_dict, dtype_dict=dtype_dict, keep_params_in_input=False)
    except Exception as exc:  # noqa: BLE001 - the library raises many types; each becomes one clear line
        message = error_line(exc)
        _release_quietly(exc)
    raise ModelError(f"{path}: the TVM Relax ONNX importer failed: {message}")


def _release_quietly(exc: BaseException) -> None:
    """Let go of a failed import's state now, with native stderr silenced: TVM's BlockBuilder, left
    with open blocks, warns from C++ when it is destroyed, which was after the error's one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        traceback.clear_frames(exc.__traceback__)
        exc.__traceback__ = None
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def initializer_elements(model) -> int:
    """Parameters the ONNX model stores (elements of every initializer)."""
    return sum(_numel(init.dims) for init in model.graph.initializer)


def initializer_bytes(model) -> int:
    import onnx

    return sum(
        _numel(init.dims) * onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        for init in model.graph.initializer
    )


def _numel(dims) -> int:
    total = 1
    for d in dims:
        total *= d
    return total
