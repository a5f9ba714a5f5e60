"""Compare a checkpoint's tree with the tree a model expects, before any array is read.

A wrong checkpoint (Base into a Large config, a vocabulary of another size, a truncated
export) should fail with one message that names the offending parameters and their shapes,
not with a shape error deep inside the first matmul.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from train.tree_paths import SEP, flatten, unflatten  # noqa: F401  (re-exported)

_SHOW = 8  # names listed per category in a report

Meta = tuple[tuple[int, ...], np.dtype]


def meta_of(leaf: Any) -> Meta:
    """(shape, dtype) of an array, a ShapeDtypeStruct, an orbax metadata or a Python scalar."""
    if isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
        return (), np.asarray(leaf).dtype
    return tuple(int(d) for d in leaf.shape), np.dtype(leaf.dtype)


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _dtypes_compatible(got: np.dtype, want: np.dtype) -> bool:
    """Floats convert to any float (bf16 <-> f32 is the usual cast); integers to integers."""

    def kind(dt: np.dtype) -> str:
        return "f" if dt.kind in "fV" or dt.name == "bfloat16" else dt.kind

    return kind(got) == kind(want) or {kind(got), kind(want)} <= {"i", "u"}


@dataclasses.dataclass
class TreeReport:
    """What differs between a checkpoint tree and the expected tree (flat '/' names)."""

    missing: list[tuple[str, Meta]] = dataclasses.field(default_factory=list)
    unexpected: list[tuple[str, Meta]] = dataclasses.field(default_factory=list)
    mismatched: list[tuple[str, Meta, Meta]] = dataclasses.field(default_factory=list)
    unreadable: list[tuple[str, Meta, str]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.unreadable)

    def format(self, source: str, what: str, hints: list[str] | None = None) -> str:
        lines = [
            f"Checkpoint {source} does not match the expected {what}: "
            f"{len(self.mismatched)} with the wrong shape or dtype, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.unreadable)} unreadable."
        ]
        if self.mismatched:
            lines.append("  wrong shape or dtype (checkpoint -> expected):")
            # Model-wide parameters (embedding, relpos, norms) first: they tell the size.
            shown = sorted(self.mismatched, key=lambda m: "/layers_" in m[0])[:_SHOW]
            for name, (gs, gd), (ws, wd) in shown:
                lines.append(f"    {name}: {_shape(gs)} {gd.name} -> {_shape(ws)} {wd.name}")
            if len(self.mismatched) > _SHOW:
                lines.append(f"    ... and {len(self.mismatched) - _SHOW} more")
        for title, items in (
            ("missing (expected, not in the checkpoint)", self.missing),
            ("unexpected (in the checkpoint, not expected)", self.unexpected),
        ):
            if items:
                lines.append(f"  {title}:")
                lines += [f"    {n} {_shape(s)} {d.name}" for n, (s, d) in items[:_SHOW]]
                if len(items) > _SHOW:
                    lines.append(f"    ... and {len(items) - _SHOW} more")
        if self.unreadable:
            lines.append("  unreadable (truncated or corrupted data):")
            for name, (s, d), why in self.unreadable[:_SHOW]:
                lines.append(f"    {name} {_shape(s)} {d.name}: {why}")
        lines += [f"  {h}" for h in hints or []]
        return "\n".join(lines)


def compare(found: Mapping[str, Meta], expected: Mapping[str, Meta]) -> TreeReport:
    """Missing / unexpected / mismatched names, in the expected tree's order."""
    report = TreeReport()
    for name, want in expected.items():
        if name not in found:
            report.missing.append((name, want))
        elif found[name][0] != want[0] or not _dtypes_compatible(found[name][1], want[1]):
            report.mismatched.append((name, found[name], want))
    report.unexpected = [(n, m) for n, m in found.items() if n not in expected]
    return report


def infer_dims(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """Model dimensions implied by a flat t5x parameter tree (names without 'target/')."""
    dims: dict[str, int] = {}
    emb = shapes.get("token_embedder/embedding")
    if emb is not None and len(emb) == 2:
        dims["vocab_size"], dims["emb_dim"] = emb
    rel = shapes.get("encoder/relpos_bias/rel_embedding")
    if rel is not None and len(rel) == 2:
        dims["num_heads"], dims["relpos_buckets"] = rel
    query = shapes.get("encoder/layers_0/attention/query/kernel")
    if query is not None and len(query) == 2 and dims.get("num_heads"):
        dims["head_dim"] = query[1] // dims["num_heads"]
    wi = shapes.get("encoder/layers_0/mlp/wi_0/kernel")
    if wi is not None and len(wi) == 2:
        dims["mlp_dim"] = wi[1]
    for stack in ("encoder", "decoder"):
        layers = {n.split(SEP)[1] for n in shapes if n.startswith(f"{stack}/layers_")}
        dims[f"num_{stack}_layers"] = len(layers)
    return dims


def _hints(found: Mapping[str, Meta], expected: Mapping[str, Meta]) -> list[str]:
    hints = []
    got = infer_dims({n: m[0] for n, m in found.items()})
    want = infer_dims({n: m[0] for n, m in expected.items()})
    differs = {k: (got[k], want[k]) for k in want if k in got and got[k] != want[k]}
    if "vocab_size" in differs and len(differs) == 1:
        g, w = differs["vocab_size"]
        hints.append(
            f"vocabulary size differs: the checkpoint's token_embedder/embedding has {g} rows, "
            f"the config's vocab_size is {w} (wrong vocabulary or wrong config)."
        )
    elif differs:
        text = ", ".join(f"{k}={g} (expected {w})" for k, (g, w) in differs.items())
        hints.append(f"the checkpoint holds a model of another size: {text}.")
    return hints


def check(
    found: Mapping[str, Meta],
    expected: Mapping[str, Meta],
    *,
    source: str,
    what: str = "parameters",
) -> None:
    """Raise one ValueError listing every difference; silent when the trees agree."""
    report = compare(found, expected)
    if not report.ok:
        raise ValueError(report.format(source, what, _hints(found, expected)))


def expected_meta(abstract: Mapping[str, Any]) -> dict[str, Meta]:
    """Flat (shape, dtype) of an abstract tree (ShapeDtypeStruct or array leaves)."""
    return {n: meta_of(leaf) for n, leaf in flatten(abstract).items()}
