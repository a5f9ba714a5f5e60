"""Throughput benchmarks of the runtime against PyTorch/transformers and the machine's peak.

`python -m benchmarks [--quick] [--only train,decode,input,eval,memory,peak]` writes
BENCHMARKS.md. Every figure is a ratio of two medians measured in the same run.
"""
