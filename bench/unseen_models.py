"""Export the public architectures bench/RESULTS-unseen.md times, none of them a built-in.

    python bench/unseen_models.py OUT_DIR
    python bench/compare.py OUT_DIR/deit_tiny.onnx OUT_DIR/vit_small.onnx OUT_DIR/odd_bert_6x24.onnx \\
        --seq-len 77 --tuning-logs '' --skip iree --output bench/RESULTS-unseen.md

`transformers` definitions at their published sizes (DeiT-tiny, ViT-S/16 at 224: 197 tokens) and a
BERT of unusual sizes (6 heads of 24, 77 tokens), random weights (seeded), exported with torch.onnx.
"""

from __future__ import annotations

import sys
from pathlib import Path


def export_vit(path: Path, hidden: int, heads: int, seed: int) -> None:
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(
        hidden_size=hidden,
        num_hidden_layers=12,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        image_size=224,
        patch_size=16,
    )
    model = ViTModel(config, add_pooling_layer=False).eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner(pixel_values=pixel_values).last_hidden_state

    torch.onnx.export(
        LastHiddenState(model).eval(),
        (torch.randn(1, 3, 224, 224),),
        str(path),
        input_names=["pixel_values"],
        output_names=["last_hidden_state"],
        opset_version=17,
        dynamo=False,
    )


def export_odd_bert(path: Path, seq_len: int = 77) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from fixtures_models import bert_onnx

    bert_onnx(
        path,
        0,
        seq_len,
        vocab_size=1000,
        hidden_size=144,
        num_hidden_layers=2,
        num_attention_heads=6,
        intermediate_size=576,
        max_position_embeddings=128,
    )


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    export_vit(out / "deit_tiny.onnx", hidden=192, heads=3, seed=0)
    export_vit(out / "vit_small.onnx", hidden=384, heads=6, seed=1)
    export_odd_bert(out / "odd_bert_6x24.onnx")
    print(f"wrote {', '.join(sorted(p.name for p in out.glob('*.onnx')))} to {out}")


if __name__ == "__main__":
    main()
