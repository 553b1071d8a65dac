"""What INT8 QK^T and PV would cost all-MiniLM-L6-v2's embeddings: the integer math simulated in PyTorch.

    python bench/int8_attention_accuracy.py          # writes bench/INT8_ATTENTION.md

Decides whether attention may join the dense layers in INT8 (issue 13: "where accuracy allows,
measured"). Q and K: symmetric int8 per token and head; QK^T summed exactly in integers and
dequantized. P (softmax, in 0..1): uint8 per row, scale max/255. V: symmetric int8 per head-dim
channel over the tokens. PV summed in integers. The dense layers either FP32 or INT8 the way
edgecc computes them (dynamic per-row asymmetric uint8 activations, per-channel symmetric int8
weights). Reference: the FP32 PyTorch model; metrics as edgecc's accuracy report (mean-pooled
embedding cosine on the evaluation sentences, Spearman of pair similarities).
"""

from pathlib import Path

import numpy as np
import torch
import transformers.models.bert.modeling_bert as bert
from scipy.stats import spearmanr
from transformers import AutoModel, AutoTokenizer

from edgecc.frontend.builtin import minilm_folder


def q_sym(x, dim):
    scale = x.abs().amax(dim=dim, keepdim=True).clamp_min(1e-12) / 127
    return torch.round(x / scale).clamp(-127, 127), scale


def q_u8_rows(p):
    scale = p.amax(dim=-1, keepdim=True).clamp_min(1e-12) / 255
    return torch.round(p / scale).clamp(0, 255), scale


original = bert.eager_attention_forward


def int8_attention(mode):
    return lambda *args, **kwargs: _int8_attention(mode, *args, **kwargs)


def _int8_attention(mode, module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
    scaling = scaling or query.size(-1) ** -0.5
    if "qk" in mode:
        qi, qs = q_sym(query.double(), -1)
        ki, ks = q_sym(key.double(), -1)
        scores = (qi @ ki.transpose(2, 3)) * qs * ks.transpose(2, 3)
        scores = scores.float() * scaling
    else:
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    p = torch.softmax(scores, dim=-1)
    if "pv" in mode:
        pi, ps = q_u8_rows(p.double())
        vi, vs = q_sym(value.double(), -2)  # per head-dim channel over the tokens
        out = ((pi @ vi) * ps * vs).float()
    else:
        out = torch.matmul(p, value)
    return out.transpose(1, 2).contiguous(), p


class Int8Linear(torch.nn.Module):
    def __init__(self, lin):
        super().__init__()
        w = lin.weight.detach().double()  # [out, in]
        self.wi, self.ws = q_sym(w, 1)
        self.bias = lin.bias.detach().double() if lin.bias is not None else None

    def forward(self, x):
        x = x.double()
        lo, hi = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
        scale = (hi - lo).clamp_min(1e-12) / 255
        zero = torch.round(-lo / scale)
        xi = torch.round(x / scale + zero).clamp(0, 255)
        y = ((xi - zero) @ self.wi.T) * scale * self.ws.T
        if self.bias is not None:
            y = y + self.bias
        return y.float()


def measure(mode: str, dense_int8: bool, enc, ref, folder, sentences) -> str:
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    if dense_int8:
        for module in list(model.modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, torch.nn.Linear):
                    setattr(module, child_name, Int8Linear(child))
    bert.eager_attention_forward = original if mode == "FP32" else int8_attention(mode)
    try:
        out = embed(model, enc)
    finally:
        bert.eager_attention_forward = original
    cos = (ref * out).sum(1)
    upper = np.triu_indices(len(sentences), 1)
    rho = spearmanr((ref @ ref.T)[upper], (out @ out.T)[upper]).correlation
    dense = "INT8" if dense_int8 else "FP32"
    return f"| {dense} | {mode} | {cos.mean():.5f} | {cos.min():.5f} | {rho:.5f} |"


def embed(model, enc):
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


def main():
    folder = minilm_folder()
    tok = AutoTokenizer.from_pretrained(folder)
    data = Path(__file__).resolve().parents[1] / "edgecc" / "data" / "evaluation_sentences.txt"
    sentences = [s for s in data.read_text().splitlines() if s.strip()]
    enc = tok(sentences, padding="max_length", truncation=True, max_length=128, return_tensors="pt")
    ref = embed(AutoModel.from_pretrained(folder, attn_implementation="eager").eval(), enc)
    rows = [
        measure(mode, dense, enc, ref, folder, sentences)
        for dense in (False, True)
        for mode in ("FP32", "qk", "pv", "qk+pv")
    ]
    text = "\n".join(
        [
            f"all-MiniLM-L6-v2, {len(sentences)} evaluation sentences, seq 128, against PyTorch FP32 "
            "(bench/int8_attention_accuracy.py; simulated integer math, see its docstring).",
            "",
            "| dense layers | attention in INT8 | mean cosine | min cosine | Spearman |",
            "|---|---|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    print(text)
    (Path(__file__).parent / "INT8_ATTENTION.md").write_text(text)


if __name__ == "__main__":
    main()
