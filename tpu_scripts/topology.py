"""Cloud TPU slices: the names users book, the topology libtpu compiles for, and chip figures.

A slice is named here as libtpu names its topology (`v5e:4x8`, `v4:2x2x4`, `v5p:2x2x2`); gcloud
books it by accelerator type (`v5litepod-32`, `v4-32`, `v5p-16`: v4 and v5p count TensorCores,
two per chip, v5e counts chips). Peak bf16 FLOP/s per chip are Google's published figures;
usable HBM per chip is what libtpu reports as available when a compile runs out
(`... exceeds available HBM (30.75G)`), measured once per generation on this CPU (docs/tpu.md).
"""
from __future__ import annotations

import dataclasses
import math

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    generation: str             # 'v4' | 'v5e' | 'v5p'
    peak_bf16_flops: float      # per chip, FLOP/s
    usable_hbm_bytes: int       # per chip, what the compiler may allocate
    chip_config_name: str       # libtpu's name for one JAX device per chip
    cores_per_chip_in_name: int  # gcloud accelerator types count TensorCores (v4, v5p) or chips
    gcloud_prefix: str          # 'v4' -> v4-32, 'v5litepod' -> v5litepod-16
    runtime_version: str        # TPU VM software version for `gcloud ... tpu-vm create`
    chips_per_host: int         # in a multi-host slice
    default_zone: str


CHIPS = {
    "v4": Chip("v4", 275e12, int(30.75 * GIB), "megacore", 2, "v4", "tpu-ubuntu2204-base", 4,
               "us-central2-b"),
    "v5e": Chip("v5e", 197e12, int(15.75 * GIB), "default", 1, "v5litepod",
                "v2-alpha-tpuv5-lite", 4, "us-west4-a"),
    "v5p": Chip("v5p", 459e12, int(95.74 * GIB), "megachip_tccontrol", 2, "v5p",
                "v2-alpha-tpuv5", 4, "us-east5-a"),
}


@dataclasses.dataclass(frozen=True)
class Slice:
    """One TPU slice, e.g. `Slice.parse('v5e:4x8')`."""

    generation: str
    dims: tuple[int, ...]

    @classmethod
    def parse(cls, name: str) -> Slice:
        gen, sep, shape = name.partition(":")
        if not sep or gen not in CHIPS:
            raise ValueError(f"slice {name!r}: expected GENERATION:SHAPE with generation one of "
                             f"{sorted(CHIPS)}, e.g. 'v5e:4x8' or 'v4:2x2x4'")
        try:
            dims = tuple(int(d) for d in shape.split("x"))
        except ValueError:
            raise ValueError(f"slice {name!r}: shape {shape!r} is not like 4x8 or 2x2x4") from None
        want = 2 if gen == "v5e" else 3
        if len(dims) != want or min(dims) < 1:
            raise ValueError(f"slice {name!r}: a {gen} shape has {want} positive dims "
                             f"(e.g. {'4x8' if want == 2 else '2x2x4'})")
        return cls(gen, dims)

    @property
    def name(self) -> str:
        return f"{self.generation}:{'x'.join(map(str, self.dims))}"

    @property
    def chip(self) -> Chip:
        return CHIPS[self.generation]

    @property
    def num_chips(self) -> int:
        return math.prod(self.dims)

    @property
    def accelerator_type(self) -> str:
        """gcloud's `--accelerator-type`, e.g. v5litepod-32, v4-32, v5p-16."""
        return f"{self.chip.gcloud_prefix}-{self.num_chips * self.chip.cores_per_chip_in_name}"

    @property
    def chips_per_host_bounds(self) -> tuple[int, int, int]:
        """Chips of one host as an (x, y, z) box, for libtpu's topology description."""
        if self.generation == "v5e" and self.num_chips <= 8:
            return (self.dims[0], self.dims[1], 1)  # v5litepod-1/4/8 are single hosts
        if self.num_chips < 4:
            raise ValueError(f"slice {self.name}: fewer than 4 chips is not a multi-chip host")
        return (2, 2, 1)

    @property
    def num_hosts(self) -> int:
        bounds = self.chips_per_host_bounds
        return max(1, self.num_chips // math.prod(bounds))

    @property
    def peak_flops(self) -> float:
        """Peak bf16 FLOP/s of the whole slice."""
        return self.num_chips * self.chip.peak_bf16_flops


def parse_slice(name: str) -> Slice:
    return Slice.parse(name)
