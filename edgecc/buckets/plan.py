"""Which static shapes (buckets) a dynamic-shape compile builds, from --max-seq-len, --seq-buckets
and --max-batch.

Default sequence buckets are the powers of two from 16 up to the maximum, with the maximum itself
last (--max-seq-len 256: 16, 32, 64, 128, 256; 200: 16, 32, 64, 128, 200). A length runs in the
smallest bucket that holds it, so padding wastes at most half the tokens a run computes (a quarter
on average over uniform lengths), while each bucket costs only its code in the library (the weights
are shared): five buckets took MiniLM-L6's library from 90.5 to 92.0 MB here. Lengths below 16 pad
to 16: the fixed per-call work (runtime dispatch, small kernels) dominates that short.
Batch buckets are the powers of two up to --max-batch, the maximum last (4: 1, 2, 4).
With both, every (batch, sequence) pair is a bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecc.errors import EdgeccError

SMALLEST_SEQ_BUCKET = 16


@dataclass(frozen=True)
class Bucket:
    """One static shape compiled into the artifact. A None field is not bucketed: it stays as the
    options fix it (the batch), or the model has none to bucket (vision models: no sequence)."""

    batch: int | None
    seq_len: int | None

    @property
    def tag(self) -> str:
        """The suffix of this bucket's functions in the library: main_s64, fused_matmul_b2_s64, ..."""
        parts = ([f"b{self.batch}"] if self.batch is not None else []) + (
            [f"s{self.seq_len}"] if self.seq_len is not None else []
        )
        return "_".join(parts)

    def __str__(self) -> str:
        parts = ([f"batch {self.batch}"] if self.batch is not None else []) + (
            [f"length {self.seq_len}"] if self.seq_len is not None else []
        )
        return ", ".join(parts)


@dataclass(frozen=True)
class BucketPlan:
    batches: tuple[int, ...] | None  # ascending; None: the batch is fixed (options.batch)
    seq_lens: tuple[int, ...] | None  # ascending; None: the sequence length is fixed (options.seq_len)

    @property
    def buckets(self) -> list[Bucket]:
        """Every bucket, smallest first; the largest (last) is compiled by the pipeline's own steps."""
        return [Bucket(b, s) for b in (self.batches or (None,)) for s in (self.seq_lens or (None,))]

    @property
    def largest(self) -> Bucket:
        return self.buckets[-1]

    def to_dict(self) -> dict:
        return {
            "batch": list(self.batches) if self.batches else None,
            "sequence": list(self.seq_lens) if self.seq_lens else None,
        }


def powers_of_two_up_to(maximum: int, smallest: int = 1) -> tuple[int, ...]:
    values, value = [], smallest
    while value < maximum:
        values.append(value)
        value *= 2
    return (*values, maximum)


def parse_seq_buckets(text) -> tuple[int, ...]:
    """`16,32,64` (a string from the command line) or a sequence of ints -> sorted unique lengths."""
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    try:
        values = [int(p) for p in parts if p != ""]
    except (TypeError, ValueError):
        raise EdgeccError(f"bad --seq-buckets '{text}': expected lengths like 16,32,64,128") from None
    if not values or any(isinstance(v, bool) or v < 1 for v in values):
        raise EdgeccError(f"bad --seq-buckets '{text}': lengths must be whole numbers >= 1")
    return tuple(sorted(set(values)))


def bucket_plan(options) -> BucketPlan | None:
    """The buckets these options ask for; None for a static compile (no --max-seq-len,
    --seq-buckets or --max-batch). Raises EdgeccError for values that do not fit together."""
    max_seq, seq_buckets, max_batch = options.max_seq_len, tuple(options.seq_buckets), options.max_batch
    if max_seq is None and not seq_buckets and max_batch is None:
        return None
    for name, value in (("--max-seq-len", max_seq), ("--max-batch", max_batch)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise EdgeccError(f"{name} must be a whole number >= 1, not {value!r}")
    if options.input_specs:
        raise EdgeccError(
            "--input fixes one shape; with --max-seq-len/--seq-buckets/--max-batch the shapes come "
            "from the buckets (give the model's other fixed dimensions in the ONNX file)"
        )
    if options.calibration is not None:  # its arrays have one shape; each bucket calibrates at its own
        raise EdgeccError(
            "--calibration FILE holds inputs of one shape, and buckets compile several; leave it out "
            "(each bucket calibrates on built-in samples of its shape) or compile one length"
        )
    seq_lens = None
    if seq_buckets:
        seq_lens = parse_seq_buckets(seq_buckets)
        if max_seq is not None and seq_lens[-1] != max_seq:
            raise EdgeccError(
                f"the largest of --seq-buckets ({seq_lens[-1]}) must equal --max-seq-len ({max_seq}); "
                "give one of them, or make them agree"
            )
    elif max_seq is not None:
        seq_lens = powers_of_two_up_to(max_seq, SMALLEST_SEQ_BUCKET) if max_seq > SMALLEST_SEQ_BUCKET else (max_seq,)
    return BucketPlan(powers_of_two_up_to(max_batch) if max_batch is not None else None, seq_lens)
