"""Dynamic shapes: one artifact for every sequence length up to --max-seq-len (and batch up to
--max-batch), with the speed of static-shape kernels.

TVM's MetaSchedule cannot tune symbolic shapes, and edgecc's default schedules assume static ones.
So a dynamic compile is several static compiles in one library:

  plan.py      which buckets (static shapes): powers of two from 16 up to the maximum by default
  shapes.py    which input / output axes follow the batch and the sequence; the checks a caller's
               tensors pass (any size 1..maximum on a dynamic axis, equal across inputs)
  compile.py   the pipeline's `buckets` step: the pipeline's own import, graph passes, lower and
               schedule steps run once per bucket at that static shape (so every pass, schedule rule
               and tuning record applies unchanged: tuning records are per kernel shape), then
  merge.py     every bucket's functions renamed with its tag (main_s64, fused_matmul_add_s64) into
               one IRModule; the Relax VM stores identical constants once, so the weights are shared
  dispatch.py  a `main` with symbolic sizes that asserts 1 <= size <= maximum, picks the smallest
               bucket that holds the input, pads the inputs to it and cuts the outputs back
  kernels.py   the pad (0: token ids, token types and, what keeps results equal to an unpadded run,
               the attention mask) and cut kernels
  check.py     the `bucket checks` step: verification at sizes inside every bucket against ONNX
               Runtime at the true size, and each bucket's latency

A model whose inputs have no attention mask cannot be padded along the sequence without changing
its results: it is refused for --max-seq-len (batch padding still works).
"""
