"""Simulated FP16 dense layers on the real all-MiniLM-L6-v2: mean embedding cosine vs FP32 PyTorch.

usage: python bench/fp16_block_accuracy.py MODE [SENTENCES]
MODE: fp32acc (FP16 operands, FP32 accumulation: what `fmlal` gives), blockB (FP16 accumulators over K
blocks of B, each fused multiply-add exact in float64 then rounded to FP16, blocks summed in FP32),
edgecc (the block edgecc's matmul-fp16 rule picks per layer), full (B = K). The word-embedding table
is rounded to FP16 as the pass stores it. Feeds K_BLOCK_ACCURACY in cast_matmuls_to_fp16.py.
"""

import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["HF_HUB_OFFLINE"] = "1"

from transformers import AutoModel, AutoTokenizer  # noqa: E402

from edgecc.frontend.builtin import minilm_folder  # noqa: E402
from edgecc.measure.accuracy import cosine_rows, evaluation_sentences, mean_pool  # noqa: E402
from edgecc.schedules.matmul_fp16 import k_block_for  # noqa: E402

MODE = sys.argv[1]


def h(t):  # round to FP16, back to float64
    return t.to(torch.float16).to(torch.float64)


def linear(x, w, b):  # x [..., K] float64, w [N, K]
    xs, ws = h(x), h(w).T
    shape = xs.shape[:-1]
    xs = xs.reshape(-1, xs.shape[-1])
    k_total = ws.shape[0]
    if MODE == "fp32acc":
        y = (xs @ ws).to(torch.float32).to(torch.float64)
    else:
        block = {"full": k_total, "edgecc": k_block_for(k_total)}.get(MODE) or int(MODE[5:])
        y = torch.zeros(xs.shape[0], ws.shape[1], dtype=torch.float64)
        for k0 in range(0, k_total, block):
            acc = torch.zeros_like(y)
            for k in range(k0, k0 + block):
                acc = h(acc + xs[:, k : k + 1] * ws[k : k + 1, :])
            y = (y + acc).to(torch.float32).to(torch.float64)
    return (y + b).reshape(*shape, -1)


class Fp16Linear(torch.nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.lin = lin

    def forward(self, x):
        return linear(x, self.lin.weight, self.lin.bias)


def main():
    torch.set_num_threads(1)
    folder = minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder)).eval().double()
    reference = AutoModel.from_pretrained(str(folder)).eval()
    sentences = evaluation_sentences()[: int(sys.argv[2]) if len(sys.argv) > 2 else 24]
    table = model.embeddings.word_embeddings  # position/type ids are constants: those tables stay FP32
    table.weight.data = h(table.weight.data)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, name, Fp16Linear(child))
    cosines = []
    with torch.no_grad():
        for sentence in sentences:
            enc = tokenizer([sentence], padding="max_length", truncation=True, max_length=128, return_tensors="pt")
            out = model(**enc).last_hidden_state.float().numpy()
            ref = reference(**enc).last_hidden_state.numpy()
            mask = enc["attention_mask"].numpy()
            cosines.append(cosine_rows(mean_pool(out, mask), mean_pool(ref, mask))[0])
    cosines = np.array(cosines)
    print(
        f"{MODE}: sentences {len(cosines)} mean cosine {cosines.mean():.7f} worst {cosines.min():.7f} "
        f"drop {1 - cosines.mean():.2e}"
    )


if __name__ == "__main__":
    main()
