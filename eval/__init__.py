"""Evaluation: decode or score seqio tasks from a checkpoint (`python -m eval`), metrics."""
