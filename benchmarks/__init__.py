"""Speed and memory of divnorm against flax.linen, a copy, and the paper's implementation.

One command: ``python -m benchmarks`` (``--quick`` for CI: tiny shapes, one repetition).
Every number is a ratio of interleaved repetitions (A B A B ...), as a median with its
min-max, because a lone time on a shared CPU means nothing.
"""
