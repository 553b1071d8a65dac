"""Every model enters by the same ONNX door: built-ins and HF folders are exported with torch.onnx."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from edgecc.atomic import atomic_output_file, write_text_atomic
from edgecc.errors import ModelError
from edgecc.frontend.builtin import BuiltinModel, builtin_model

OPSET = 17
EXPORT_VERSION = 4  # bump when built-in weights or wrappers change, so cached exports are redone (4: seeded weights)


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
        raise ModelError(f"{what} are exported to ONNX with PyTorch and transformers, and {' and '.join(missing)} "
                         "is not installed: pip install 'edgecc[models]' (or pass an .onnx file)")


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


def _export(module, modality: str, batch: int, seq_len: int, image_size: int, path: Path, vocab: int) -> None:
    import torch

    torch.manual_seed(0)
    longest = getattr(getattr(module, "config", None), "max_position_embeddings", None)
    if modality == "text" and isinstance(longest, int) and seq_len > longest:
        raise ModelError(f"this model reads at most {longest} tokens (max_position_embeddings); "
                         f"--seq-len {seq_len} is longer")
    if modality == "text":
        wrapper = _text_wrapper(module)
        args = (torch.randint(0, vocab, (batch, seq_len)), torch.ones(batch, seq_len, dtype=torch.int64))
        names, outputs = ["input_ids", "attention_mask"], ["last_hidden_state"]
    else:
        wrapper = _image_wrapper(module)
        args = (torch.randn(batch, 3, image_size, image_size),)
        names, outputs = ["pixel_values"], ["logits"]
    with atomic_output_file(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, args, str(tmp), input_names=names, output_names=outputs,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    # torch.onnx.export leaves the wrapper in training mode; references must use eval mode.
    wrapper.eval()


def _parameters(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _vocab(module) -> int:
    return int(getattr(getattr(module, "config", None), "vocab_size", 1000) or 1000)


def export_builtin(name: str, batch: int, seq_len: int, progress=print) -> ExportedModel:
    spec: BuiltinModel = builtin_model(name)
    shape_tag = f"b{batch}-s{seq_len}" if spec.modality == "text" else f"b{batch}-{spec.image_size}"
    path = cache_dir() / f"{spec.name}-{shape_tag}-v{EXPORT_VERSION}.onnx"
    meta = path.with_suffix(".meta")
    if path.exists() and meta.exists():
        weights, parameters = meta.read_text().split("\n")[:2]
        return ExportedModel(path, spec.name, weights, int(parameters), spec.modality)
    require_exporter("built-in models")
    progress(f"exporting built-in '{spec.name}' to ONNX ({shape_tag}) ...")
    module, weights = spec.module()
    _export(module, spec.modality, batch, seq_len, spec.image_size, path, _vocab(module))
    parameters = _parameters(module)
    write_text_atomic(meta, f"{weights}\n{parameters}\n")
    return ExportedModel(path, spec.name, weights, parameters, spec.modality)


def export_hf_folder(folder: Path, batch: int, seq_len: int, progress=print) -> ExportedModel:
    """A Hugging Face model folder on disk (config.json + weights); nothing is downloaded."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise ModelError(f"{folder} is a folder but not a Hugging Face model folder (no config.json)")
    require_exporter("Hugging Face folders")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

        config = AutoConfig.from_pretrained(str(folder))
        image = hasattr(config, "num_channels") and not hasattr(config, "vocab_size")
        loader = AutoModelForImageClassification if image else AutoModel
        module = loader.from_pretrained(str(folder)).eval()
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for a bad folder
        raise ModelError(f"cannot load the Hugging Face model in {folder}: {str(exc).splitlines()[0]}") from None
    modality = "image" if image else "text"
    image_size = int(getattr(config, "image_size", 224) or 224)
    tag = f"b{batch}-s{seq_len}" if modality == "text" else f"b{batch}-{image_size}"
    path = cache_dir() / "hf" / f"{folder.resolve().as_posix().strip('/').replace('/', '_')}-{tag}.onnx"
    if not path.exists():
        progress(f"exporting {folder} to ONNX ({tag}) ...")
        _export(module, modality, batch, seq_len, image_size, path, _vocab(module))
    return ExportedModel(path, folder.name, "pretrained (from folder)", _parameters(module), modality)
