"""Every model enters by the same ONNX door: built-ins and HF folders are exported with torch.onnx."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from edgecc.atomic import atomic_output_file, write_text_atomic
from edgecc.errors import ModelError, error_line
from edgecc.frontend.builtin import BuiltinModel, builtin_model

OPSET = 17
EXPORT_VERSION = 6  # bump when built-in weights or wrappers change, so cached exports are redone (5: seeded weights,
# longest sequence in the meta file; 6: 1000-class heads on mobilevit-s and swiftformer-xs)


def cache_dir() -> Path:
    root = Path(os.environ.get("EDGECC_CACHE", Path.home() / ".cache" / "edgecc"))
    return root / "models"


@dataclass(frozen=True)
class ExportedModel:
    onnx_path: Path
    name: str
    weights: str  # "pretrained ..." or "random"
    parameters: int
    modality: str


def require_exporter(what: str) -> None:
    """PyTorch and transformers are an optional extra: ONNX files compile without them."""
    import importlib.util

    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelError(
            f"{what} are exported to ONNX with PyTorch and transformers, and {' and '.join(missing)} "
            "is not installed: pip install 'edgecc[models]' (or pass an .onnx file)"
        )


def _text_wrapper(model):
    import torch

    class TextEncoder(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            # transformers 5 rejects positional arguments here.
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return TextEncoder(model).eval()


def _image_wrapper(model):
    import torch

    class ImageClassifier(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner(pixel_values=pixel_values).logits

    return ImageClassifier(model).eval()


# Dynamic-shape exports (--max-seq-len, --max-batch) are traced at this small shape; batch 2, so
# the tracer cannot specialise anything to a batch of one.
_TRACE_BATCH, _TRACE_SEQ_LEN = 2, 16


def _export(
    module, modality: str, batch: int, seq_len: int, image_size: int, path: Path, vocab: int, dynamic: bool = False
) -> None:
    """ONNX at batch x seq_len; with `dynamic`, batch and sequence (text) or batch (image) are symbolic
    and seq_len is only the longest length asked for (checked against the model's positions)."""
    import torch

    torch.manual_seed(0)
    check_length(_longest(module) if modality == "text" else None, seq_len, dynamic)
    if dynamic:
        batch, seq_len = _TRACE_BATCH, _TRACE_SEQ_LEN
    if modality == "text":
        wrapper = _text_wrapper(module)
        args = (torch.randint(0, vocab, (batch, seq_len)), torch.ones(batch, seq_len, dtype=torch.int64))
        names, outputs = ["input_ids", "attention_mask"], ["last_hidden_state"]
        axes = {0: "batch", 1: "sequence"}
    else:
        wrapper = _image_wrapper(module)
        args = (torch.randn(batch, 3, image_size, image_size),)
        names, outputs = ["pixel_values"], ["logits"]
        axes = {0: "batch"}
    dynamic_axes = {name: axes for name in names + outputs} if dynamic else None
    with atomic_output_file(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            args,
            str(tmp),
            input_names=names,
            output_names=outputs,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
            dynamic_axes=dynamic_axes,
        )
    # torch.onnx.export leaves the wrapper in training mode; references must use eval mode.
    wrapper.eval()


def _longest(module) -> int | None:
    longest = getattr(getattr(module, "config", None), "max_position_embeddings", None)
    return longest if isinstance(longest, int) else None


def check_length(longest: int | None, seq_len: int, dynamic: bool) -> None:
    if longest is not None and seq_len > longest:
        raise ModelError(
            f"this model reads at most {longest} tokens (max_position_embeddings); "
            f"{'--max-seq-len' if dynamic else '--seq-len'} {seq_len} is longer"
        )


def _parameters(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _vocab(module) -> int:
    return int(getattr(getattr(module, "config", None), "vocab_size", 1000) or 1000)


def _builtin_key(spec: BuiltinModel, shape_tag: str) -> str:
    """The built-in's definition (the code that builds and exports it), its weights, the shape and the
    exporter's versions: any of them changing makes a new export (EXPORT_VERSION stays for changes
    that live elsewhere, e.g. in transformers' own modeling code)."""
    import sys

    from edgecc.frontend import builtin as builtin_module
    from edgecc.frontend.cache_key import cache_key, exporter_versions, folder_digest, source_digest

    weights = spec.weights_folder() if spec.weights_folder is not None else None
    return cache_key(
        spec.name,
        spec.description,
        shape_tag,
        f"v{EXPORT_VERSION}",
        source_digest(builtin_module, sys.modules[__name__]),
        exporter_versions(),
        folder_digest(weights) if weights is not None else "no weights folder",
    )


def export_builtin(name: str, batch: int, seq_len: int, progress=print, dynamic: bool = False) -> ExportedModel:
    """The built-in exported at batch x seq_len, or with `dynamic` once for every shape (symbolic batch
    and sequence; seq_len is then only checked against the model's longest). Cached under a key of
    its definition (`_builtin_key`)."""
    spec: BuiltinModel = builtin_model(name)
    shape_tag = f"b{batch}-s{seq_len}" if spec.modality == "text" else f"b{batch}-{spec.image_size}"
    if dynamic:
        shape_tag = "dynamic" if spec.modality == "text" else f"dynamic-{spec.image_size}"
    path = cache_dir() / f"{spec.name}-{shape_tag}-{_builtin_key(spec, shape_tag)}.onnx"
    cached = _cached(path)
    if cached is not None:
        weights, parameters, longest = cached
        if dynamic and longest is not None:  # a dynamic export serves every length: check this one
            check_length(longest, seq_len, dynamic)
        return ExportedModel(path, spec.name, weights, parameters, spec.modality)
    require_exporter("built-in models")
    progress(f"exporting built-in '{spec.name}' to ONNX ({shape_tag}) ...")
    module, weights = spec.module()
    _export(module, spec.modality, batch, seq_len, spec.image_size, path, _vocab(module), dynamic)
    parameters = _parameters(module)
    write_text_atomic(path.with_suffix(".meta"), f"{weights}\n{parameters}\n{_longest(module) or ''}\n")
    return ExportedModel(path, spec.name, weights, parameters, spec.modality)


def _cached(path: Path) -> tuple[str, int, int | None] | None:
    """(weights note, parameter count, longest sequence) of a complete cached export, None when there is none."""
    meta = path.with_suffix(".meta")
    if not (path.exists() and meta.exists()):
        return None
    try:
        weights, parameters, *rest = meta.read_text().split("\n")
        return weights, int(parameters), int(rest[0]) if rest and rest[0].isdigit() else None
    except (OSError, ValueError):
        return None  # a damaged note: export again


def export_hf_folder(folder: Path, batch: int, seq_len: int, progress=print, dynamic: bool = False) -> ExportedModel:
    """A Hugging Face model folder on disk (config.json + weights); nothing is downloaded. The export
    is cached under a hash of the folder's config and weight files, so changed weights re-export."""
    from edgecc.frontend.cache_key import cache_key, exporter_versions, folder_digest

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise ModelError(f"{folder} is a folder but not a Hugging Face model folder (no config.json)")
    require_exporter("Hugging Face folders")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for a bad folder
        raise ModelError(f"cannot load the Hugging Face model in {folder}: {error_line(exc)}") from None
    image = hasattr(config, "num_channels") and not hasattr(config, "vocab_size")
    modality = "image" if image else "text"
    image_size = int(getattr(config, "image_size", 224) or 224)
    tag = f"b{batch}-s{seq_len}" if modality == "text" else f"b{batch}-{image_size}"
    tag = "dynamic" if dynamic else tag
    if modality == "text":
        longest = getattr(config, "max_position_embeddings", None)
        check_length(longest if isinstance(longest, int) else None, seq_len, dynamic)  # also when cached
    try:
        digest = folder_digest(folder)
    except OSError as exc:
        raise ModelError(f"cannot read the Hugging Face model in {folder}: {exc.strerror}: {exc.filename}") from None
    key = cache_key("hf-folder", digest, tag, f"v{EXPORT_VERSION}", exporter_versions())
    path = cache_dir() / "hf" / f"{_safe_name(folder.resolve().name)}-{tag}-{key}.onnx"
    cached = _cached(path)
    if cached is not None:
        return ExportedModel(path, folder.name, cached[0], cached[1], modality)
    try:
        from transformers import AutoModel, AutoModelForImageClassification

        loader = AutoModelForImageClassification if image else AutoModel
        module = loader.from_pretrained(str(folder)).eval()
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for a bad folder
        raise ModelError(f"cannot load the Hugging Face model in {folder}: {error_line(exc)}") from None
    progress(f"exporting {folder} to ONNX ({tag}) ...")
    _export(module, modality, batch, seq_len, image_size, path, _vocab(module), dynamic)
    parameters = _parameters(module)
    weights = f"pretrained (from folder, sha256 {digest[:12]})"
    write_text_atomic(path.with_suffix(".meta"), f"{weights}\n{parameters}\n{_longest(module) or ''}\n")
    return ExportedModel(path, folder.name, weights, parameters, modality)


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "model"
