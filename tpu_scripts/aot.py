"""Deviceless ahead-of-time compiles of the project's own steps for a described TPU slice.

Needs libtpu (`pip install -e .[tpu]`, see docs/tpu.md) and JAX_PLATFORMS=cpu: libtpu
describes the topology, XLA compiles for it on this CPU, and the compiled program reports its
per-device memory and FLOPs. The steps come from `train.steps` (what the trainer and
evaluation jit), with the state layout and shardings built as the trainer builds them.

FLOPs: XLA's cost analysis counts a scanned (or looped) body once, so compiled FLOPs come from
unscanned 1- and 2-layer variants, extrapolated linearly to full depth, with one microbatch
(the microbatch loop is a scan too); without remat they are model FLOPs, with the config's
remat hardware FLOPs. Those are four more compiles per phase, so by default the fit check uses
the analytic counts (`train.flops`, every matmul; `analytic_flops` below), which the compiled
extrapolation reproduces (tests/tpu_scripts/test_fit.py; `--compiled_flops` to recheck).
Decoding runs a while loop over positions: its FLOPs are always analytic.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from tpu_scripts import topology
from tpu_scripts.configs import PHASES, TRAIN_TARGET_LENGTHS, TpuConfig, train_batch

_STACK_FLAG = "--fibers_default_thread_stack_size=8388608"  # XXL compiles overflow otherwise

# libtpu's compiler allocates heavily; under glibc's malloc 27-45% of a big compile's CPU time
# was in malloc/free (perf samples of the XXL and Base train-step compiles, docs/tpu.md). A
# thread-caching allocator changes nothing in the compiled program, only how fast it is made.
# Preloaded when installed (`apt-get install libtcmalloc-minimal4`, or libjemalloc2);
# TPU_FIT_MALLOC=system turns it off.
MALLOC_ENV = "TPU_FIT_MALLOC"
_ALLOCATORS = ("tcmalloc_minimal", "tcmalloc", "jemalloc")


def fast_allocator() -> str | None:
    """The shared library of a faster malloc on this machine (for LD_PRELOAD), or None."""
    import ctypes.util

    for name in _ALLOCATORS:
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def preload_env(environ: dict[str, str]) -> dict[str, str] | None:
    """`environ` with a faster malloc preloaded, or None when it already is, none is installed
    or TPU_FIT_MALLOC=system asks for glibc's."""
    if environ.get(MALLOC_ENV, "") == "system":
        return None
    if any(name in environ.get("LD_PRELOAD", "") for name in _ALLOCATORS):
        return None
    lib = fast_allocator()
    if lib is None:
        return None
    preload = " ".join(x for x in (lib, environ.get("LD_PRELOAD", "")) if x)
    return dict(environ, LD_PRELOAD=preload, **{MALLOC_ENV: lib})


def prepare_environment() -> None:
    """CPU host platform; libtpu only as a compiler (call before importing jax)."""
    os.environ["JAX_PLATFORMS"] = "cpu"
    flags = os.environ.get("LIBTPU_INIT_ARGS", "")
    if "fibers_default_thread_stack_size" not in flags:
        os.environ["LIBTPU_INIT_ARGS"] = f"{flags} {_STACK_FLAG}".strip()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def topology_devices(slice_: topology.Slice) -> list[Any]:
    from jax.experimental import topologies

    try:
        topo = topologies.get_topology_desc(
            platform="tpu", topology_name=slice_.name,
            chip_config_name=slice_.chip.chip_config_name,
            chips_per_host_bounds=slice_.chips_per_host_bounds, num_slices=1,
            wrap=(False, False, False))
    except Exception as err:  # libtpu raises RuntimeError / XlaRuntimeError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RuntimeError(f"libtpu cannot describe slice {slice_.name}: {first} (is libtpu "
                           "installed? pip install -e '.[tpu]')") from None
    devices = list(topo.devices)
    if len(devices) != slice_.num_chips:
        raise RuntimeError(f"slice {slice_.name}: libtpu describes {len(devices)} devices, "
                           f"expected {slice_.num_chips} (one per chip)")
    return devices


@dataclasses.dataclass(frozen=True)
class Memory:
    """Per-device bytes of one compiled program."""

    arguments: int
    temporaries: int
    outputs: int
    aliases: int
    code: int

    @property
    def total(self) -> int:
        return self.arguments + self.temporaries + self.outputs - self.aliases + self.code


@dataclasses.dataclass(frozen=True)
class Compiled:
    memory: Memory
    flops_per_device: float   # as cost analysis counts it (scanned bodies once)
    error: str | None = None  # a compile refused (e.g. temporaries beyond HBM)


def _memory(compiled: Any) -> Memory:
    m = compiled.memory_analysis()
    return Memory(int(m.argument_size_in_bytes), int(m.temp_size_in_bytes),
                  int(m.output_size_in_bytes), int(m.alias_size_in_bytes),
                  int(getattr(m, "generated_code_size_in_bytes", 0)))


def _flops(compiled: Any) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


_HBM_ERROR = re.compile(r"RESOURCE_EXHAUSTED.*?(?:\n|$)", re.S)


def compile_lowered(lowered: Any) -> Compiled:
    try:
        compiled = lowered.compile()
    except Exception as err:  # noqa: BLE001 - libtpu's refusal is reported, not raised
        text = str(err)
        match = _HBM_ERROR.search(text)
        line = match.group(0).strip() if match else text.strip().splitlines()[0]
        return Compiled(Memory(0, 0, 0, 0, 0), 0.0, line[:300])
    return Compiled(_memory(compiled), _flops(compiled))


# ---------------------------------------------------------------------------------- phases

def _sds(shape, dtype, sharding):
    import jax

    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)


def _encdec_batch(b: int, lin: int, lout: int, sharding: Any, *, packed: bool,
                  targets: bool = True) -> dict[str, Any]:
    import jax.numpy as jnp

    batch = {"encoder_input_tokens": _sds((b, lin), jnp.int32, sharding)}
    if targets:
        for name in ("decoder_input_tokens", "decoder_target_tokens"):
            batch[name] = _sds((b, lout), jnp.int32, sharding)
        batch["decoder_loss_weights"] = _sds((b, lout), jnp.float32, sharding)
    if packed:
        for side, length in (("encoder", lin), ("decoder", lout)):
            batch[f"{side}_segment_ids"] = _sds((b, length), jnp.int32, sharding)
            batch[f"{side}_positions"] = _sds((b, length), jnp.int32, sharding)
    return batch


def _rng(mesh: Any) -> Any:
    import jax

    from train import partitioning

    shape = jax.eval_shape(lambda: jax.random.key(0))
    return jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=partitioning.replicated(mesh))


def train_mesh(cfg: TpuConfig, devices: list[Any]) -> Any:
    from train import partitioning

    return partitioning.create_mesh(num_partitions=cfg.num_partitions,
                                    model_parallel_submesh=cfg.model_parallel_submesh,
                                    devices=devices)


def infer_mesh(cfg: TpuConfig, devices: list[Any]) -> Any:
    from train import partitioning

    return partitioning.create_mesh(num_partitions=cfg.infer_num_partitions, devices=devices)


def lower_phase(cfg: TpuConfig, phase: str, model_config: Any, devices: list[Any], *,
                num_microbatches: int | None = None) -> Any:
    """The lowered step of `phase` for `model_config` on `devices`."""
    from train import dual_encoder, models, optimizer, schedules, steps


    batch_size, micro = (train_batch(cfg, phase) if phase in TRAIN_TARGET_LENGTHS
                         else (cfg.batch_size, cfg.num_microbatches))
    micro = micro if num_microbatches is None else num_microbatches
    if phase in TRAIN_TARGET_LENGTHS or phase == "retrieval_train":
        mesh = train_mesh(cfg, devices)
        rules = steps.rules_for(cfg.parameter_partitioning, cfg.activation_partitioning_dims)
        adafactor = optimizer.AdafactorConfig()
        if phase == "retrieval_train":
            model = dual_encoder.DualEncoderModel(model_config)
            micro = 1  # in-batch negatives: the whole batch at once
        else:
            model = models.EncoderDecoderModel(model_config)
        layout = steps.state_layout(model, mesh, rules, adafactor)
        tx = optimizer.adafactor(schedules.constant(1e-3), layout.param_axes, adafactor)
        loss_kwargs = ({} if phase == "retrieval_train" else
                       {"z_loss": 1e-4, "loss_normalizing_factor": 234496.0})
        step = steps.jit_train_step(model, tx, layout, mesh, rules, num_microbatches=micro,
                                    track_nonfinite=True, **loss_kwargs)
        data = steps.batch_sharding(mesh)
        if phase == "retrieval_train":
            q, c = cfg.retrieval_lengths
            import jax.numpy as jnp
            batch = {"left_encoder_input_tokens": _sds((cfg.retrieval_batch_size, q),
                                                       jnp.int32, data),
                     "right_encoder_input_tokens": _sds((cfg.retrieval_batch_size, c),
                                                        jnp.int32, data)}
        else:
            batch = _encdec_batch(batch_size, cfg.input_length, TRAIN_TARGET_LENGTHS[phase],
                                  data, packed=True)
        import jax.numpy as jnp

        from train import partitioning
        flag = _sds((), jnp.int32, partitioning.replicated(mesh))
        return step.lower(layout.abstract, batch, _rng(mesh), flag)

    mesh = infer_mesh(cfg, devices)
    rules = steps.rules_for("1d", 1)  # as python -m eval builds them
    data = steps.batch_sharding(mesh)
    if phase == "embed_candidates":
        model = dual_encoder.DualEncoderModel(model_config)
    else:
        model = models.EncoderDecoderModel(model_config)
    shardings = steps.param_shardings(model, mesh, rules)
    params = jax_tree_sds(model.abstract_params(), shardings)
    if phase == "decode":
        fn = steps.jit_predict_step(model, mesh, rules, shardings,
                                    max_decode_len=cfg.decode_length)
        batch = _encdec_batch(cfg.infer_batch_size, cfg.input_length, 0, data, packed=False,
                              targets=False)
        return fn.lower(params, batch)
    if phase == "score":
        fn = steps.jit_score_step(model, mesh, rules, shardings)
        batch = _encdec_batch(cfg.infer_batch_size, cfg.input_length,
                              TRAIN_TARGET_LENGTHS["train_cls"], data, packed=False)
        return fn.lower(params, batch)
    if phase == "embed_candidates":
        import jax.numpy as jnp
        fn = steps.jit_embed_step(model, mesh, rules, shardings)
        tokens = _sds((cfg.embed_batch_size, cfg.retrieval_lengths[1]), jnp.int32, data)
        return fn.lower(params, tokens)
    raise ValueError(f"phase {phase!r}: expected one of {', '.join(PHASES)}")


def jax_tree_sds(shapes: Any, shardings: Any) -> Any:
    import jax

    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        shapes, shardings)


def depth_variant(model_config: Any, layers: int, remat: str) -> Any:
    return dataclasses.replace(model_config, num_encoder_layers=layers,
                               num_decoder_layers=layers, scan_layers=False, remat_policy=remat)


def extrapolated_flops(cfg: TpuConfig, phase: str, devices: list[Any], remat: str) -> float:
    """Total FLOPs of one step (all devices) at full depth, from 1- and 2-layer compiles."""
    per_layer_counts = []
    for layers in (1, 2):
        lowered = lower_phase(cfg, phase, depth_variant(cfg.model_config, layers, remat),
                                 devices, num_microbatches=1)
        result = compile_lowered(lowered)
        if result.error:
            raise RuntimeError(f"{layers}-layer FLOPs variant failed to compile: {result.error}")
        per_layer_counts.append(result.flops_per_device * len(devices))
    one, two = per_layer_counts
    depth = cfg.model_config.num_encoder_layers
    if cfg.model_config.num_decoder_layers != depth:
        raise ValueError("FLOPs extrapolation assumes equal encoder and decoder depth")
    return one + (depth - 1) * (two - one)


def _encoder_forward(config: Any, batch: int, length: int) -> float:
    """Forward FLOPs of the encoder stack alone (the dual encoder's tower)."""
    d, j, f = config.emb_dim, config.joined_kv, config.mlp_dim
    return float(batch * length * config.num_encoder_layers
                 * (8 * d * j + 6 * d * f + 4 * length * j))


def analytic_flops(cfg: TpuConfig, phase: str) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs) of one step of `phase`, from `train.flops`' counts.

    Hardware FLOPs add what rematerialisation recomputes: with remat 'full' every layer's
    forward pass runs again in the backward pass (the output layer is not rematerialised);
    'minimal' saves the matmul outputs, so it recomputes (almost) no matmul FLOPs.
    """
    from train import flops

    mc = cfg.model_config
    if phase in TRAIN_TARGET_LENGTHS:
        fwd = flops.forward_flops(mc, train_batch(cfg, phase)[0], cfg.input_length,
                                  TRAIN_TARGET_LENGTHS[phase])
        model = flops.TRAIN_MULTIPLIER * fwd.total
        recompute = fwd.encoder + fwd.decoder if mc.remat_policy == "full" else 0.0
        return model, model + recompute
    if phase == "retrieval_train":
        q, c = cfg.retrieval_lengths
        b = cfg.retrieval_batch_size
        fwd = _encoder_forward(mc, b, q) + _encoder_forward(mc, b, c)
        model = flops.TRAIN_MULTIPLIER * fwd + 3 * 2 * b * b * mc.emb_dim  # + in-batch scores
        return model, model + (fwd if mc.remat_policy == "full" else 0.0)
    if phase == "decode":
        f = flops.decode_flops(mc, cfg.infer_batch_size, cfg.input_length, cfg.decode_length)
        return f, f
    if phase == "score":
        f = flops.forward_flops(mc, cfg.infer_batch_size, cfg.input_length,
                                TRAIN_TARGET_LENGTHS["train_cls"]).total
        return f, f
    if phase == "embed_candidates":
        f = _encoder_forward(mc, cfg.embed_batch_size, cfg.retrieval_lengths[1])
        return f, f
    raise ValueError(f"phase {phase!r}: no FLOPs count")
