"""The runtimes bench/compare.py times: one class per runtime, each with build / run / close.

Every peer gets the same BenchModel: the ONNX file edgecc compiled (its artifact's
reference.onnx), the same inputs and the same thread count. `build` raises PeerUnavailable with
a one-line reason when a runtime cannot take the model; the table prints that reason instead of
dropping the row. `run` returns the model's first output as a NumPy array (inputs in, outputs
out, as a user calls each runtime), so every peer's answer can be checked against ONNX Runtime.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class PeerUnavailable(Exception):
    """This runtime cannot build or run this model; the message is the table's one-line reason."""


@dataclass
class BenchModel:
    name: str  # built-in name, or the ONNX file's stem
    modality: str  # "text" or "image"
    onnx_path: Path
    inputs: dict[str, np.ndarray]  # in the ONNX graph's input order
    threads: int
    seq_len: int
    work: Path  # where peers write what they derive (optimized / quantized ONNX, IREE modules)
    torch_module: object = None  # the built-in in eval mode, weights equal to the ONNX file's
    heads: int = 0  # attention heads and hidden size, for ONNX Runtime's transformer optimizer
    hidden: int = 0
    builtin: bool = True  # False: a user's ONNX file, which edgecc compiles by its path

    @property
    def edgecc_source(self) -> str:
        return self.name if self.builtin else str(self.onnx_path)


@dataclass
class Peer:
    label: str = ""
    precision: str = "fp32"  # the group whose fastest member ratios are taken against
    notes: list[str] = field(default_factory=list)  # what the build did, printed under the table

    def build(self, model: BenchModel) -> None:
        raise NotImplementedError

    def run(self) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Drop the runtime's objects so the next model starts with the memory free."""


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


@dataclass
class EdgeccPeer(Peer):
    """edgecc.compile(model, "host", precision=...), default schedules or this CPU's tuning records."""

    compile_precision: str = "fp32"
    tuning_logs: Path | None = None  # None: no records at all (default schedules)

    def __post_init__(self):
        schedules = "tuned" if self.tuning_logs else "default schedules"
        self.label = f"edgecc {self.compile_precision} ({schedules})"
        self.precision = self.compile_precision

    def build(self, model: BenchModel) -> None:
        import edgecc
        from edgecc.artifact.loader import load_artifact
        from edgecc.artifact.manifest import REFERENCE_MODEL, sha256
        from edgecc.errors import EdgeccError
        from edgecc.options import PRECISIONS

        if self.compile_precision not in PRECISIONS:
            raise PeerUnavailable(
                f"this edgecc has no --precision {self.compile_precision} (it has {', '.join(PRECISIONS)})"
            )
        folder = model.work / f"edgecc-{self.compile_precision}-{'tuned' if self.tuning_logs else 'default'}"
        logs = self.tuning_logs or model.work / "no-tuning-logs"  # a folder with no records: defaults only
        try:
            result = edgecc.compile(
                model.edgecc_source,
                "host",
                folder,
                seq_len=model.seq_len,
                precision=self.compile_precision,
                measure=False,
                quiet=True,
                tuning_logs=(Path(logs),),
                log=lambda *_: None,
            )
        except EdgeccError as exc:
            raise PeerUnavailable(f"edgecc compile failed: {first_line(exc)}") from None
        if result.manifest["files"][REFERENCE_MODEL]["sha256"] != sha256(model.onnx_path):
            raise PeerUnavailable(f"edgecc compiled another ONNX file than {model.onnx_path}")
        applied = result.report["tuning"].get("applied", {})
        if self.tuning_logs:
            if not (applied.get("tuned") or applied.get("default_fastest")):
                raise PeerUnavailable("no tuning record for this CPU matches this model's kernels")
            compared = result.report["tuning"].get("compared_with_default") or {}
            dropped = len(compared.get("kept_default") or [])  # applied, then timed slower than the default here
            lost = dropped + applied.get("default_fastest", 0)
            self.label = (
                f"edgecc {self.compile_precision} (tuned: {applied['tuned'] - dropped}/{applied['kernels']} kernels; "
                f"{lost} tuned, default faster)"
            )
        verification = result.report["verification"]
        self.notes.append(f"edgecc's own verification: {verification['status']} ({verification['reason']})")
        self.artifact = load_artifact(folder)
        self.output_name = self.artifact.outputs[0].name
        self.inputs = model.inputs

    def run(self) -> np.ndarray:
        return self.artifact.run(self.inputs)[self.output_name]

    def close(self) -> None:
        if getattr(self, "artifact", None) is not None:
            self.artifact.close()
            self.artifact = None


def ort_session(path: Path, threads: int):
    from edgecc.measure.latency import onnxruntime_session

    return onnxruntime_session(path, threads)  # intra-op `threads`, inter-op 1, all graph optimizations


@dataclass
class OnnxRuntimePeer(Peer):
    """ONNX Runtime CPU: the ONNX file as is, after its transformer optimizer, and/or after
    quantize_dynamic (INT8 weights, activations quantized at run time)."""

    optimizer: bool = False
    int8: bool = False

    def __post_init__(self):
        steps = (["transformer optimizer"] if self.optimizer else []) + (["quantize_dynamic"] if self.int8 else [])
        self.label = "ONNX Runtime" + (f" ({' + '.join(steps)})" if steps else "")
        self.precision = "int8" if self.int8 else "fp32"

    def build(self, model: BenchModel) -> None:
        path = model.onnx_path
        if self.optimizer:
            path = self._optimize(model)
        if self.int8:
            path = self._quantize(model, path)
        self.session = ort_session(path, model.threads)
        self.inputs = model.inputs

    def _optimize(self, model: BenchModel) -> Path:
        from onnxruntime.transformers.optimizer import optimize_model

        # "bert" covers the BERT family (DistilBERT and MiniLM included); "vit" is the vision
        # transformer's fusion set (LayerNorm, GELU, attention where the pattern matches).
        model_type = "bert" if model.modality == "text" else "vit"
        optimized = optimize_model(
            str(model.onnx_path), model_type=model_type, num_heads=model.heads, hidden_size=model.hidden
        )
        fused = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
        if not fused:
            raise PeerUnavailable(f"the transformer optimizer (model_type {model_type}) fuses nothing in this graph")
        attention = "" if any("Attention" in op for op in fused) else "; attention not fused (pattern not matched)"
        self.notes.append(
            f"optimizer model_type={model_type} fused " + ", ".join(f"{op} x{n}" for op, n in fused.items()) + attention
        )
        path = model.work / f"ort-optimized-{model_type}.onnx"
        optimized.save_model_to_file(str(path))
        return path

    def _quantize(self, model: BenchModel, source: Path) -> Path:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        path = (
            source.with_name(source.stem + "-int8.onnx") if source != model.onnx_path else model.work / "ort-int8.onnx"
        )
        # transformers exports stop with "Unable to find data type for weight_name" without
        # DefaultTensorType (field notes); per-tensor QInt8 weights, u8 activations: the defaults.
        quantize_dynamic(
            str(source),
            str(path),
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        return path

    def run(self) -> np.ndarray:
        return self.session.run(None, self.inputs)[0]

    def close(self) -> None:
        self.session = None


@dataclass
class OpenVinoPeer(Peer):
    """OpenVINO CPU plugin, latency hint, `threads` inference threads; f32, or the precision it
    picks by default (bf16 on CPUs with AVX512-BF16 or AMX), labelled with what it picked."""

    hint: str | None = None  # "f32", or None for OpenVINO's default

    def __post_init__(self):
        self.label = f"OpenVINO {self.hint}" if self.hint else "OpenVINO default precision"

    def build(self, model: BenchModel) -> None:
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": model.threads}
        if self.hint:
            config["INFERENCE_PRECISION_HINT"] = self.hint
        self.compiled = core.compile_model(core.read_model(str(model.onnx_path)), "CPU", config)
        picked = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32", "bf16", "f16"
        self.precision = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(picked, picked)
        if not self.hint:
            self.label = f"OpenVINO default ({picked})"
        self.request = self.compiled.create_infer_request()
        self.inputs = model.inputs

    def run(self) -> np.ndarray:
        return self.request.infer(self.inputs)[self.compiled.output(0)]

    def close(self) -> None:
        self.request = self.compiled = None


@dataclass
class TorchPeer(Peer):
    """PyTorch eager: the transformers module in eval mode under torch.inference_mode, `threads` threads."""

    def __post_init__(self):
        self.label = "PyTorch eager"

    def build(self, model: BenchModel) -> None:
        import torch

        if model.torch_module is None:
            raise PeerUnavailable("no PyTorch module for this model")
        torch.set_num_threads(model.threads)
        self.module = model.torch_module
        self.inputs = {k: torch.from_numpy(v) for k, v in model.inputs.items()}
        self.field = "last_hidden_state" if model.modality == "text" else "logits"

    def run(self) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return getattr(self.module(**self.inputs), self.field).numpy()

    def close(self) -> None:
        self.module = None


IREE_COMPILE_TIMEOUT_S = 900


@dataclass
class IreePeer(Peer):
    """IREE: iree-import-onnx, iree-compile for llvm-cpu with the host CPU, the local-task driver
    with `threads` workers (--task_topology_max_group_count)."""

    def __post_init__(self):
        self.label = "IREE (llvm-cpu)"

    def build(self, model: BenchModel) -> None:
        import iree.runtime as rt

        mlir, vmfb = model.work / "iree.mlir", model.work / "iree.vmfb"
        self._tool(["iree-import-onnx", str(model.onnx_path), "-o", str(mlir)], "iree-import-onnx")
        self._tool(
            [
                "iree-compile",
                str(mlir),
                "--iree-hal-target-device=local",
                "--iree-hal-local-target-device-backends=llvm-cpu",
                "--iree-llvmcpu-target-cpu=host",
                "-o",
                str(vmfb),
            ],
            "iree-compile",
        )
        mlir.unlink()  # the weights, as text: larger than the ONNX file
        set_iree_threads(model.threads)
        self.context = rt.SystemContext(config=rt.Config("local-task"))
        module = rt.VmModule.mmap(self.context.instance, str(vmfb))
        self.context.add_vm_module(module)
        entries = [n for n in module.function_names if not n.startswith("__") and "$" not in n]
        if len(entries) != 1:
            raise PeerUnavailable(f"expected one entry function in the IREE module, found {entries}")
        self.function = self.context.modules[module.name][entries[0]]
        self.arguments = list(model.inputs.values())

    @staticmethod
    def _tool(command: list[str], name: str) -> None:
        if shutil.which(command[0]) is None:
            raise PeerUnavailable(f"{name} is not installed (pip install 'edgecc[bench]')")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=IREE_COMPILE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise PeerUnavailable(f"{name} ran past {IREE_COMPILE_TIMEOUT_S} s") from None
        if done.returncode != 0:
            text = done.stderr or done.stdout
            errors = [line.strip() for line in text.splitlines() if "error" in line.lower()]
            reason = errors[0] if errors else (text.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise PeerUnavailable(f"{name} failed: {reason[:300]}")

    def run(self) -> np.ndarray:
        result = self.function(*self.arguments)
        return (result[0] if isinstance(result, (list, tuple)) else result).to_host()

    def close(self) -> None:
        self.function = self.context = None


_IREE_THREADS: list[int] = []


def set_iree_threads(threads: int) -> None:
    """IREE's runtime flags are process-wide and read when a device is made: set them once."""
    import iree.runtime as rt

    if not _IREE_THREADS:
        rt.flags.parse_flags(f"--task_topology_max_group_count={threads}")
        _IREE_THREADS.append(threads)
    elif _IREE_THREADS[0] != threads:
        raise PeerUnavailable(f"IREE's workers were already set to {_IREE_THREADS[0]} threads in this process")
