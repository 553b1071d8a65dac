"""Measuring a compiled artifact: latency (one timing loop), per-kernel profile, energy, the machine's
state, verification against ONNX Runtime, and accuracy of reduced precision or sparsity."""
