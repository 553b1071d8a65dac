"""How much accuracy a precision or sparsity option costs, for report.json["accuracy"].

Sentence encoders (all-MiniLM-L6-v2 built in, or a Hugging Face text folder with a tokenizer):
mean-pooled sentence embeddings of held-out real sentences (`data/evaluation_sentences.txt`, never
used for calibration) from the compiled artifact vs PyTorch FP32 on the same padded inputs; reports
mean and worst cosine similarity and the Spearman correlation between the two sets of sentence-pair
similarities (1.0: the ranking of which sentences are alike is preserved).

Other models: outputs of the artifact vs the FP32 ONNX model in ONNX Runtime on sample inputs; for a
classifier ([batch, classes] scores) also the top-1 agreement over 32 seeded inputs.

Either way `accuracy_drop` = 1 - mean cosine similarity, the number `--max-accuracy-drop` bounds.

With sparse attention the inputs fill the whole sequence: held-out sentences joined into passages of
at least seq_len tokens, or random inputs with every position real. A sentence shorter than one
window sees every key it has under any pattern, so padded sentences showed no cost at all (MiniLM-L6
at 512 tokens: a drop of 4e-13 reported, while real 512-token text gave embedding cosine 0.94, worst
token 0.42).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgecc.measure.verification import max_finite_error, special_values
from edgecc.passes.precision.calibration import DATA_DIR

EVALUATION_SENTENCES = DATA_DIR / "evaluation_sentences.txt"
TOP1_SAMPLES = 32
FILLED_PASSAGES = 4  # at least, with sparse attention: pair similarities need a few embeddings to rank


def evaluation_sentences() -> list[str]:
    return [line.strip() for line in EVALUATION_SENTENCES.read_text().splitlines() if line.strip()]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row pair, over the elements finite in both (a NaN or infinity on both
    sides is the same value there); a row that has one on one side only scores -1, as far apart as
    two rows can be, so it can never pass for agreement."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    finite, _ = special_values(a, b)
    mismatched_rows = np.array([special_values(x, y)[1] > 0 for x, y in zip(a, b)], dtype=bool)
    a, b = np.where(finite, a, 0.0), np.where(finite, b, 0.0)
    denominator = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(mismatched_rows, -1.0, np.sum(a * b, axis=1) / np.maximum(denominator, 1e-30))


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float64)
    return (hidden * weights).sum(axis=-2) / np.maximum(weights.sum(axis=-2), 1e-9)


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    for value in np.unique(values):  # ties share their mean rank
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _ranks(np.asarray(a)), _ranks(np.asarray(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def pair_similarities(embeddings: np.ndarray) -> np.ndarray:
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    upper = np.triu_indices(len(embeddings), k=1)
    return (unit @ unit.T)[upper]


def embedding_agreement(candidate: np.ndarray, reference: np.ndarray) -> dict:
    cosines = cosine_rows(candidate, reference)
    return {
        "sentences": int(len(cosines)),
        "mean_cosine": float(cosines.mean()),
        "worst_cosine": float(cosines.min()),
        "spearman_pair_similarity": spearman(pair_similarities(candidate), pair_similarities(reference)),
        "accuracy_drop": float(1.0 - cosines.mean()),
    }


def passages(sentences: list[str], tokenizer, seq_len: int, count: int) -> list[str]:
    """`count` texts of consecutive sentences (wrapping round), each long enough to fill `seq_len` tokens."""
    lengths = [max(len(tokenizer.tokenize(s)), 1) for s in sentences]
    texts, index = [], 0
    for _ in range(count):
        parts, tokens = [], 0
        while tokens < seq_len:
            parts.append(sentences[index % len(sentences)])
            tokens += lengths[index % len(sentences)]
            index += 1
        texts.append(" ".join(parts))
    return texts


def sentence_embedding_accuracy(
    run,
    hf_folder: Path,
    input_names: list[str],
    batch: int,
    seq_len: int,
    sentences: list[str] | None = None,
    fill: bool = False,
) -> dict:
    """`run`: inputs dict -> outputs dict (first output: last_hidden_state [batch, seq, hidden]).
    `fill`: passages that fill every token (sparse attention) instead of one padded sentence each."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel, AutoTokenizer

    sentences = sentences or evaluation_sentences()
    tokenizer = AutoTokenizer.from_pretrained(str(hf_folder))
    what = "held-out real sentences"
    if fill:  # enough passages for the pair-similarity ranking, each filling the sequence
        total = sum(len(tokenizer.tokenize(s)) for s in sentences)
        count = max(FILLED_PASSAGES, -(-total // seq_len))
        sentences = passages(sentences, tokenizer, seq_len, count + (-count) % batch)
        what = f"passages of held-out real sentences filling all {seq_len} tokens (every attention window holds text)"
    sentences = sentences[: len(sentences) - len(sentences) % batch]
    model = AutoModel.from_pretrained(str(hf_folder)).eval()
    compiled, reference, token_cosines, filled = [], [], [], []
    for start in range(0, len(sentences), batch):
        encoded = tokenizer(
            sentences[start : start + batch],
            padding="max_length",
            truncation=True,
            max_length=seq_len,
            return_tensors="np",
        )
        inputs = {
            name: (encoded[name] if name in encoded else np.zeros((batch, seq_len))).astype(np.int64)
            for name in input_names
        }
        hidden = next(iter(run(inputs).values()))
        mask = encoded["attention_mask"]
        compiled.append(mean_pool(hidden, mask))
        with torch.no_grad():
            torch_hidden = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state.numpy()
        reference.append(mean_pool(torch_hidden, mask))
        real = mask.astype(bool)  # each real token's hidden state: where a dropped key hurts most
        token_cosines.append(cosine_rows(np.asarray(hidden)[real], torch_hidden[real]))
        filled.append(int(mask.sum(axis=-1).min()))
    result = embedding_agreement(np.concatenate(compiled), np.concatenate(reference))
    tokens = np.concatenate(token_cosines)
    return {
        "method": f"sentence embeddings (mean pooling) of {what} vs PyTorch FP32",
        "reference": f"PyTorch FP32 ({Path(hf_folder).name})",
        "seq_len": seq_len,
        "fewest_real_tokens": min(filled),
        **result,
        "mean_token_cosine": float(tokens.mean()),
        "worst_token_cosine": float(tokens.min()),
    }


def filled_samples(specs, index_bounds: dict, count: int, seed: int) -> list[dict]:
    """Random inputs in valid ranges with every position real (masks all ones)."""
    from edgecc.frontend.inputs import sample_inputs

    samples = [sample_inputs(specs, index_bounds, seed=seed + i) for i in range(count)]
    for sample in samples:
        for name, array in sample.items():
            if "mask" in name.lower():
                sample[name] = np.ones_like(array)
    return samples


def output_error_accuracy(run, onnx_path: Path, samples: list[dict]) -> dict:
    """Artifact vs the FP32 ONNX model in ONNX Runtime, per output and overall."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    cosines, max_abs, max_ref, top1 = [], 0.0, 0.0, []
    for sample in samples:
        actual = run(sample)
        expected = dict(zip(names, session.run(names, sample)))
        for name in names:
            a, e = np.asarray(actual[name], np.float64), np.asarray(expected[name], np.float64)
            cosines.append(float(cosine_rows(a.reshape(1, -1), e.reshape(1, -1))[0]))
            finite, mismatched = special_values(a, e)
            max_abs = max(max_abs, max_finite_error(a, e, finite) if not mismatched else math.inf)
            max_ref = max(max_ref, float(np.max(np.abs(e), where=np.isfinite(e), initial=0.0)))
            if is_class_scores(e.shape):
                top1 += list(a.argmax(axis=1) == e.argmax(axis=1))
    mean_cosine = float(np.mean(cosines))
    result = {
        "method": "model outputs vs the FP32 ONNX model in ONNX Runtime",
        "samples": len(samples),
        "mean_cosine": mean_cosine,
        "worst_cosine": float(np.min(cosines)),
        "max_abs_error": max_abs,
        "max_relative_error": max_abs / max(max_ref, 1e-30),
        "accuracy_drop": 1.0 - mean_cosine,
    }
    if top1:  # a classifier: does the compiled model pick the reference's class?
        result["top1_agreement"] = float(np.mean(top1))
        result["top1_rows"] = len(top1)
    return result


def is_class_scores(shape) -> bool:
    """[batch, classes] scores (a classifier head), as opposed to hidden states or feature maps."""
    return len(shape) == 2 and shape[1] >= 10


def sentence_model_folder(source) -> Path | None:
    """The Hugging Face folder whose PyTorch FP32 model is the sentence-embedding reference, if any."""
    from edgecc.frontend.builtin import minilm_folder

    if source.kind == "builtin" and source.name == "minilm-l6":
        folder = minilm_folder()
        return folder if folder is not None and "pretrained" in source.weights else None
    return None


def evaluate(ctx) -> dict:
    """report.json["accuracy"] for a compile (a pipeline CompileContext with a runnable artifact)."""
    specs = ctx.imported.inputs
    names = [s.name for s in specs]
    folder = _hf_folder(ctx) if ctx.source.kind == "hf-folder" else sentence_model_folder(ctx.source)
    text = {"input_ids", "attention_mask"} <= set(names)
    sparse = bool(ctx.options.sparse_attention)
    if folder is not None and text:
        batch, seq_len = next(s.shape for s in specs if s.name == "input_ids")
        result = sentence_embedding_accuracy(ctx.artifact.run, folder, names, batch, seq_len, fill=sparse)
    elif sparse:  # every window populated: padding would hide the keys the pattern drops
        samples = filled_samples(specs, ctx.imported.index_bounds, 4, ctx.options.seed + 1)
        result = output_error_accuracy(ctx.artifact.run, ctx.source.onnx_path, samples)
        result["inputs"] = (
            f"{len(samples)} seeded random inputs with every position real (masks all ones), so every "
            "sparse-attention window is populated"
        )
    else:
        from edgecc.passes.precision.calibration import builtin_samples

        # a classifier's top-1 agreement needs more than a few rows to mean anything
        classifier = any(is_class_scores(tuple(o.shape)) for o in ctx.imported.outputs)
        count = TOP1_SAMPLES - 1 if classifier else 3
        samples = [ctx.sample_inputs] + builtin_samples(
            ctx.imported.relax_module, count=count, seed=ctx.options.seed + 1
        )
        result = output_error_accuracy(ctx.artifact.run, ctx.source.onnx_path, samples)
        if classifier:
            result["inputs"] = (
                f"{len(samples)} seeded random inputs (no labelled image set ships with edgecc): "
                "top-1 agreement says how often the compiled model picks the FP32 model's class"
            )
    result["precision"] = ctx.applied_precision.effective if ctx.applied_precision else ctx.options.precision
    result["sparse_attention"] = ctx.options.sparse_attention
    stats = ctx.pass_stats
    if "choose_layer_precisions" in stats:
        result["layers"] = stats["choose_layer_precisions"].choices
    if "quantize_dense_weights_int8" in stats:
        result["int8"] = asdict(stats["quantize_dense_weights_int8"])
    if "quantize_dense_layers_int8" in stats:  # INT8 math on the dot-product instruction
        result["int8"] = asdict(stats["quantize_dense_layers_int8"])
    if "cast_matmuls_to_fp16" in stats:  # FP16 arithmetic, or FP16 storage only and why
        result["fp16"] = asdict(stats["cast_matmuls_to_fp16"])
    if "cast_dense_layers_bf16" in stats:
        result["bf16"] = asdict(stats["cast_dense_layers_bf16"])
    if "choose_mixed_precisions" in stats:  # per-layer choices and the Pareto front they came from
        mixed = asdict(stats["choose_mixed_precisions"])
        result["layers"], result["pareto_front"] = mixed["layers"], mixed["pareto_front"]
    if "rewrite_attention_sparse" in stats:
        result["sparse_attention_summary"] = asdict(stats["rewrite_attention_sparse"])
    return result


def _hf_folder(ctx) -> Path | None:
    """A Hugging Face folder compiled directly is its own reference when it carries a tokenizer."""
    folder = Path(ctx.model)
    return folder if folder.is_dir() and (folder / "tokenizer_config.json").exists() else None
