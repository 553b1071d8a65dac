"""Calibration inputs and activation ranges for the precision passes.

Inputs come from `--calibration FILE.npz` (one array per model input; a leading extra axis stacks
several samples) or, when no file is given, from built-in samples: real sentences tokenized with the
bundled all-MiniLM-L6-v2 tokenizer when the model's vocabulary matches it, random valid ids
otherwise, and standard-normal tensors for float inputs. The calibration sentences are disjoint from
the evaluation sentences in `edgecc/data/evaluation_sentences.txt`.

Ranges are measured by running the Relax module itself on the host (built once, instrumented to
also return each dense layer's input), so they work for any model, whatever its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecc.errors import EdgeccError, error_line
from edgecc.user_files import checked_npz

DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # edgecc/data, shipped in the package
CALIBRATION_SENTENCES = DATA_DIR / "calibration_sentences.txt"


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str


def input_specs(mod) -> list[InputSpec]:
    func = mod["main"]
    count = int(func.attrs["num_input"]) if func.attrs is not None and "num_input" in func.attrs else len(func.params)
    specs = []
    for param in list(func.params)[:count]:
        info = param.ty
        specs.append(InputSpec(str(param.name), tuple(int(d) for d in info.shape), str(info.dtype)))
    return specs


MAX_CALIBRATION_BYTES = 4 << 30  # a thousand 224x224 RGB images in float32 are 0.6 GB


def load_calibration_file(path: Path, specs: list[InputSpec]) -> list[dict]:
    path = checked_npz(path, "calibration file", MAX_CALIBRATION_BYTES)
    try:
        data = dict(np.load(path, allow_pickle=False))
    except Exception as exc:  # noqa: BLE001 - the library raises many types; each becomes one clear line
        raise EdgeccError(f"{path} is not a readable .npz file: {error_line(exc)}") from None
    missing = [s.name for s in specs if s.name not in data]
    if missing:
        raise EdgeccError(
            f"calibration file {path} lacks input(s) {', '.join(missing)} "
            f"(it has {', '.join(sorted(data)) or 'nothing'})"
        )
    counts = set()
    for spec in specs:
        array = data[spec.name]
        if tuple(array.shape) == spec.shape:
            data[spec.name] = array[None]
        elif tuple(array.shape[1:]) != spec.shape:
            raise EdgeccError(
                f"calibration input '{spec.name}' in {path} has shape {tuple(array.shape)}; "
                f"expected {spec.shape} or (N, {', '.join(map(str, spec.shape))})"
            )
        counts.add(data[spec.name].shape[0])
    if len(counts) != 1:
        raise EdgeccError(f"calibration inputs in {path} hold different sample counts: {sorted(counts)}")
    return [{s.name: data[s.name][i].astype(s.dtype) for s in specs} for i in range(counts.pop())]


def minilm_tokenizer():
    import os

    from edgecc.frontend.builtin import minilm_folder

    folder = minilm_folder()
    if folder is None:
        return None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def tokenize(sentences: list[str], specs: list[InputSpec], tokenizer) -> list[dict]:
    """One sample per sentence, padded to the model's fixed sequence length."""
    by_name = {s.name: s for s in specs}
    batch, seq_len = by_name["input_ids"].shape
    samples = []
    for start in range(0, len(sentences) - batch + 1, batch):
        encoded = tokenizer(
            sentences[start : start + batch],
            padding="max_length",
            truncation=True,
            max_length=seq_len,
            return_tensors="np",
        )
        sample = {}
        for spec in specs:
            if spec.name in encoded:
                sample[spec.name] = encoded[spec.name].astype(spec.dtype)
            else:  # token_type_ids or similar: zeros are the single-segment default
                sample[spec.name] = np.zeros(spec.shape, dtype=spec.dtype)
        samples.append(sample)
    return samples


def vocabulary_size(mod) -> int | None:
    from edgecc.passes.precision.dense_weights import list_dense_layers

    tables = [layer["shape"][0] for layer in list_dense_layers(mod) if layer["kind"] == "embedding"]
    return max(tables) if tables else None


def builtin_samples(mod, count: int = 8, seed: int = 0) -> list[dict]:
    specs = input_specs(mod)
    names = {s.name for s in specs}
    vocab = vocabulary_size(mod)
    if "input_ids" in names:
        tokenizer = minilm_tokenizer()
        if tokenizer is not None and vocab == tokenizer.vocab_size:
            sentences = CALIBRATION_SENTENCES.read_text().split("\n")
            return tokenize([s for s in sentences if s.strip()][:count], specs, tokenizer)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        sample = {}
        for spec in specs:
            if spec.dtype.startswith("float"):
                sample[spec.name] = rng.standard_normal(spec.shape).astype(spec.dtype)
            elif "mask" in spec.name:
                mask = np.ones(spec.shape, dtype=spec.dtype)
                mask[..., rng.integers(1, spec.shape[-1] + 1) :] = 0
                sample[spec.name] = mask
            elif spec.name == "input_ids":
                sample[spec.name] = rng.integers(0, vocab or 100, spec.shape).astype(spec.dtype)
            else:
                sample[spec.name] = np.zeros(spec.shape, dtype=spec.dtype)
        samples.append(sample)
    return samples


def calibration_samples(mod, path: Path | None = None, count: int = 8) -> list[dict]:
    specs = input_specs(mod)
    return load_calibration_file(path, specs)[:count] if path else builtin_samples(mod, count)


def build_on_host(mod, target=None):
    """Compile a high-level Relax module for this machine (generic x86-64 / aarch64 code unless a TVM
    `target` is given); returns a callable (list of arrays) -> list."""
    import tvm
    from tvm import relax

    from edgecc.backends import finalize_pipeline

    target = target or tvm.target.Target({"kind": "llvm"})
    lowering = tvm.transform.Sequential(
        [
            relax.backend.DispatchSampling(),
            relax.backend.DispatchSortScan(),
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ]
    )
    with target:
        lowered = lowering(mod)
    executable = relax.build(lowered, target, relax_pipeline=finalize_pipeline())
    vm = relax.VirtualMachine(executable, tvm.cpu())

    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        result = vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in arrays])
        if isinstance(result, tvm.runtime.Tensor):
            return [result.numpy()]
        return [r.numpy() for r in result]

    return run


def with_extra_outputs(mod, choose) -> tuple[object, list]:
    """`main` also returning the value `choose(binding)` picks (a Relax expr) for each binding where it is not None."""
    # Dataflow vars cannot leave their block: make every binding a plain var first. The module
    # keeps its other functions under their own GlobalVars: `main` may call PrimFuncs a graph pass
    # added (fuse attention), and a call refers to the GlobalVar object, not to its name.
    import tvm
    from tvm import relax

    plain = relax.transform.ToNonDataflow()(mod)
    func = plain["main"]
    body = func.body
    picked, keys = [], []
    for block in body.blocks:
        for binding in block.bindings:
            found = choose(binding)
            if found is not None:
                expr, key = found
                picked.append(expr)
                keys.append(key)
    outputs = relax.Tuple([body.body, *picked])
    new_body = relax.BlockBuilder().normalize(relax.SeqExpr(body.blocks, outputs))
    new_func = relax.Function(func.params, new_body, attrs=func.attrs)
    functions = {gv: (new_func if gv.name_hint == "main" else f) for gv, f in plain.functions_items()}
    return tvm.IRModule(functions), keys


def tvm_module(functions: dict):
    import tvm

    return tvm.IRModule({tvm.ir.GlobalVar(name): func for name, func in functions.items()})


# Per-tensor INT8 of a dense layer's input is only used when it keeps the input's relative error
# (RMS over the calibration samples) below this; inputs with outlier channels (typical after GELU
# and in attention outputs of BERT-family models) stay FP32 and use dequantize-on-load weights.
MAX_ACTIVATION_ERROR = 0.02


def activation_scales(
    mod, samples: list[dict], max_error: float = MAX_ACTIVATION_ERROR, report: dict | None = None
) -> dict[str, float]:
    """Symmetric per-tensor INT8 scale (max |x| / 127 over the samples) of each dense layer's input.

    Layers whose quantized input would exceed `max_error` relative error get no scale; `report`
    (if given) receives {key: relative error} for every layer.
    """
    from edgecc.passes.precision.dense_weights import dense_weight, weight_key

    def dense_input(binding):
        weight = dense_weight(binding.value)
        return None if weight is None else (binding.value.args[0], weight_key(weight))

    instrumented, keys = with_extra_outputs(mod, dense_input)
    if not keys:
        return {}
    run = build_on_host(instrumented)
    names = [s.name for s in input_specs(mod)]
    captured: dict[str, list[np.ndarray]] = {}
    for sample in samples:
        values = run([sample[n] for n in names])
        for key, value in zip(keys, values[1:]):
            captured.setdefault(key, []).append(value)
    scales = {}
    for key, values in captured.items():
        peak = max(float(np.abs(v).max()) for v in values)
        scale = peak / 127.0 if peak > 0 else 1.0
        noise = sum(float(np.sum((np.clip(np.rint(v / scale), -127, 127) * scale - v) ** 2)) for v in values)
        energy = sum(float(np.sum(v.astype(np.float64) ** 2)) for v in values)
        error = (noise / max(energy, 1e-30)) ** 0.5
        if report is not None:
            report[key] = error
        if error <= max_error:
            scales[key] = scale
    return scales
