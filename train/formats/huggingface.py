"""Hugging Face mT5 checkpoints (`MT5ForConditionalGeneration`) <-> the t5x parameter tree.

Weights map one-to-one (HF's T5 attention has no 1/sqrt(d) either): PyTorch Linear weights
are [out, in] and are transposed; the relative position table lives only in block 0 as
[32, heads]; decoder block layers 0/1/2 are self-attention / cross-attention / MLP; the
untied `lm_head.weight` [vocab, d] is `decoder/logits_dense/kernel` [d, vocab].

Reading uses safetensors' numpy backend (no torch) and slices each tensor, so with target
shardings a host reads only its shards. PyTorch `.bin` files are pickles and can run code
when loaded: they are read only with allow_pickle=True, through torch.load(weights_only=True).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import ml_dtypes  # noqa: F401  (bfloat16 for safetensors' numpy backend)
import numpy as np

from train.formats import report
from train.formats.result import (
    LoadedCheckpoint,
    build_array,
    check_choice,
    make_result,
    target_leaf,
)
from xitt_common import fs

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"
PICKLE_INDEX = "pytorch_model.bin.index.json"
CONFIG = "config.json"
# Released mT5 checkpoints were pretrained for 1,000,000 steps; t5x steps are absolute, so a
# fine-tuning run from them starts there (TRAIN_STEPS=1_008_000 means 8,000 steps of training).
HF_START_STEP = 1_000_000
# config.json field -> MT5Config field, for the dimensions the weights determine.
_HF_DIMS = {"vocab_size": "vocab_size", "d_model": "emb_dim", "num_heads": "num_heads",
            "d_kv": "head_dim", "d_ff": "mlp_dim", "num_layers": "num_encoder_layers",
            "num_decoder_layers": "num_decoder_layers",
            "relative_attention_num_buckets": "relpos_buckets"}
# Present in HF files but carrying no weights of their own (tied to `shared`, or unused).
TIED_INPUT_EMBEDDINGS = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
IGNORED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)
_ATTN = (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out"))
_MLP = ("wi_0", "wi_1", "wo")


# ---------------------------------------------------------------- names
def name_map(num_encoder_layers: int, num_decoder_layers: int) -> list[tuple[str, str, bool]]:
    """(HF name, t5x name, transposed) for every parameter of an mT5 model."""
    out = [("shared.weight", "token_embedder/embedding", False)]

    def block(stack: str, i: int, sub: int, hf_mod: str, t5x_mod: str, norm: str):
        hf = f"{stack}.block.{i}.layer.{sub}"
        t5x = f"{stack}/layers_{i}"
        out.append((f"{hf}.layer_norm.weight", f"{t5x}/{norm}/scale", False))
        if hf_mod == "DenseReluDense":
            out.extend((f"{hf}.{hf_mod}.{w}.weight", f"{t5x}/mlp/{w}/kernel", True) for w in _MLP)
        else:
            out.extend((f"{hf}.{hf_mod}.{h}.weight", f"{t5x}/{t5x_mod}/{t}/kernel", True)
                       for h, t in _ATTN)

    for stack, n in (("encoder", num_encoder_layers), ("decoder", num_decoder_layers)):
        out.append((f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                    f"{stack}/relpos_bias/rel_embedding", True))
        for i in range(n):
            if stack == "encoder":
                block(stack, i, 0, "SelfAttention", "attention", "pre_attention_layer_norm")
                block(stack, i, 1, "DenseReluDense", "mlp", "pre_mlp_layer_norm")
            else:
                block(stack, i, 0, "SelfAttention", "self_attention",
                      "pre_self_attention_layer_norm")
                block(stack, i, 1, "EncDecAttention", "encoder_decoder_attention",
                      "pre_cross_attention_layer_norm")
                block(stack, i, 2, "DenseReluDense", "mlp", "pre_mlp_layer_norm")
        norm = "encoder_norm" if stack == "encoder" else "decoder_norm"
        out.append((f"{stack}.final_layer_norm.weight", f"{stack}/{norm}/scale", False))
    out.append(("lm_head.weight", "decoder/logits_dense/kernel", True))
    return out


def _num_blocks(names: list[str], stack: str) -> int:
    pattern = re.compile(rf"^{stack}\.block\.(\d+)\.")
    found = [int(m.group(1)) for n in names if (m := pattern.match(n))]
    return max(found) + 1 if found else 0


# ---------------------------------------------------------------- tensor sources
class _Source:
    """Named tensors in one or more files; `read` slices without loading whole tensors."""

    def __init__(self, directory: str, allow_pickle: bool):
        self.directory = directory
        self._handles: dict[str, Any] = {}
        self._where: dict[str, str] = {}
        self._torch: dict[str, Any] = {}

        def exists(name: str) -> bool:
            return fs.path(directory).joinpath(name).exists()

        if exists(SAFETENSORS_INDEX):
            self._open_safetensors(self._index_files(SAFETENSORS_INDEX))
        elif exists(SAFETENSORS):
            self._open_safetensors({SAFETENSORS: None})
        elif exists(PICKLE) or exists(PICKLE_INDEX):
            if not allow_pickle:
                raise ValueError(
                    f"{directory}: only PyTorch pickle weights ({PICKLE}) here. Unpickling can "
                    "run arbitrary code, so they are not read by default. Convert them to "
                    "safetensors (transformers: model.save_pretrained(dir)) or pass "
                    "allow_pickle=True (then read with torch.load(weights_only=True))."
                )
            index = PICKLE_INDEX if exists(PICKLE_INDEX) else None
            self._load_pickles(self._index_files(index) if index else {PICKLE: None})
        else:
            present = fs.listdir(directory) if fs.path(directory).is_dir() else "missing"
            raise FileNotFoundError(
                f"{directory}: no Hugging Face weights (expected {SAFETENSORS}, "
                f"{SAFETENSORS_INDEX} or, with allow_pickle=True, {PICKLE}); found {present}."
            )

    def _index_files(self, index: str) -> dict[str, list[str]]:
        path = fs.join(self.directory, index)
        try:
            weight_map = json.loads(fs.path(path).read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a Hugging Face weight index ({e}).") from e
        files: dict[str, list[str]] = {}
        for name, file in weight_map.items():
            files.setdefault(file, []).append(name)
        return files

    def _open_safetensors(self, files: Mapping[str, list[str] | None]) -> None:
        from safetensors import safe_open

        for file, expected in files.items():
            path = fs.join(self.directory, file)
            if not fs.path(path).exists():
                raise FileNotFoundError(f"{path}: listed in the weight index but missing.")
            try:
                handle = safe_open(fs.local_file(path), framework="numpy")
                names = list(handle.keys())
            except Exception as e:  # noqa: BLE001  (SafetensorError is not exported)
                raise ValueError(f"{path}: unreadable safetensors file, truncated or corrupted "
                                 f"({e}).") from e
            for name in expected or []:
                if name not in names:
                    raise ValueError(f"{path}: the index lists '{name}' in this file, but the "
                                     "file does not hold it (truncated or mismatched shards).")
            self._handles[file] = handle
            self._where.update({n: file for n in names})

    def _load_pickles(self, files: Mapping[str, list[str] | None]) -> None:
        import torch  # optional extra; only reached with allow_pickle=True

        for file in files:
            path = fs.join(self.directory, file)
            try:
                self._torch.update(torch.load(fs.local_file(path), map_location="cpu",
                                              weights_only=True,
                                              mmap=True))
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"{path}: cannot load with torch.load(weights_only=True): "
                                 f"{e}") from e

    def names(self) -> list[str]:
        return list(self._where) + list(self._torch)

    def meta(self, name: str) -> report.Meta:
        if name in self._torch:
            t = self._torch[name]
            return tuple(t.shape), np.dtype(str(t.dtype).removeprefix("torch."))
        s = self._handles[self._where[name]].get_slice(name)
        return tuple(s.get_shape()), np.dtype(_SAFETENSORS_DTYPES[s.get_dtype()])

    def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
        if name in self._torch:
            t = self._torch[name][index]
            if str(t.dtype) == "torch.bfloat16":
                return t.float().numpy().astype(ml_dtypes.bfloat16)
            return t.numpy()
        return self._handles[self._where[name]].get_slice(name)[index]


_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
                       "I64": "int64", "I32": "int32"}


# ---------------------------------------------------------------- reading
def config_from_hf(path: str) -> dict[str, Any]:
    """MT5Config keyword arguments from a Hugging Face `config.json`."""
    file = fs.join(path, CONFIG) if fs.path(path).is_dir() else os.fspath(path)
    try:
        hf = json.loads(fs.path(file).read_text())
        if not isinstance(hf, dict):
            raise ValueError(f"expected a JSON object, got {type(hf).__name__}")
    except (OSError, ValueError) as e:
        raise ValueError(f"{file}: cannot read the Hugging Face config ({e}).") from e
    if hf.get("feed_forward_proj", "gated-gelu") != "gated-gelu":
        raise ValueError(f"{file}: feed_forward_proj={hf['feed_forward_proj']!r}; only mT5 / "
                         "T5.1.1 ('gated-gelu') checkpoints map onto this network.")
    try:
        return {
            "vocab_size": int(hf["vocab_size"]), "emb_dim": int(hf["d_model"]),
            "num_heads": int(hf["num_heads"]), "head_dim": int(hf["d_kv"]),
            "mlp_dim": int(hf["d_ff"]), "num_encoder_layers": int(hf["num_layers"]),
            "num_decoder_layers": int(hf.get("num_decoder_layers") or hf["num_layers"]),
            "relpos_buckets": int(hf.get("relative_attention_num_buckets", 32)),
            "relpos_max_distance": int(hf.get("relative_attention_max_distance", 128)),
            **({"dropout_rate": float(hf["dropout_rate"])} if "dropout_rate" in hf else {}),
        }
    except KeyError as e:
        raise ValueError(f"{file}: missing field {e} (expected an MT5Config).") from e
    except (TypeError, ValueError) as e:
        raise ValueError(f"{file}: a field has a value of the wrong type ({e}).") from e


def _declared_config(path: str) -> dict[str, Any]:
    """MT5Config fields of the directory's config.json; {} when it has none."""
    if not fs.path(path).joinpath(CONFIG).exists():
        return {}
    return config_from_hf(path)


def check_config_matches(declared: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]],
                         source: str) -> None:
    """Raise ValueError naming every config field that the weights' shapes contradict."""
    implied = report.infer_dims(shapes)
    hf_name = {v: k for k, v in _HF_DIMS.items()}
    wrong = [f"{hf_name[k]}={declared[k]} but the weights have {implied[k]}"
             for k in _HF_DIMS.values() if k in declared and k in implied and implied[k]
             and declared[k] != implied[k]]
    if wrong:
        raise ValueError(f"{source} contradicts the weights: {'; '.join(wrong)}. Fix or remove "
                         "config.json (the weights' shapes decide the model size).")


def _index_t(index: tuple[slice, ...], transposed: bool) -> tuple[slice, ...]:
    return tuple(reversed(index)) if transposed else index


def read_huggingface(
    path: str,
    target: Mapping[str, Any] | None = None,
    *,
    allow_pickle: bool = False,
    optimizer_state: str = "reset",
    step: int = HF_START_STEP,
    dtype: Any = None,
) -> LoadedCheckpoint:
    """Load an HF mT5 directory into the t5x tree (see `t5x_legacy.read_t5x_legacy`).

    HF checkpoints carry no optimizer state nor step: optimizer_state must be 'reset', and
    `step` is the absolute step they stand for (default HF_START_STEP = 1,000,000, the
    released models' pretraining steps); it is also the Adafactor decay offset.
    A config.json that contradicts the weights' shapes, and weights with a parameter missing
    (of the layers config.json, or else the weights, declare), are refused with the names.
    """
    check_choice(optimizer_state)
    if optimizer_state != "reset":
        raise ValueError(f"{path}: Hugging Face checkpoints hold no Adafactor statistics; use "
                         "optimizer_state='reset'.")
    source = _Source(os.fspath(path), allow_pickle)
    names = source.names()
    declared = _declared_config(path)
    mapping = name_map(
        declared.get("num_encoder_layers") or _num_blocks(names, "encoder"),
        declared.get("num_decoder_layers") or _num_blocks(names, "decoder"))
    known = {hf for hf, _, _ in mapping} | set(TIED_INPUT_EMBEDDINGS) | set(IGNORED)
    present = set(names)
    found: dict[str, report.Meta] = {}
    plan: dict[str, tuple[str, bool]] = {}
    for hf, t5x, transposed in mapping:
        if hf in present:
            shape, dt = source.meta(hf)
            found[t5x] = (tuple(reversed(shape)) if transposed else shape, dt)
            plan[t5x] = (hf, transposed)
    unknown = {f"(hf) {n}": source.meta(n) for n in names if n not in known}
    if declared:
        check_config_matches(declared, {n: m[0] for n, m in found.items()},
                             fs.join(path, CONFIG))
    missing = [(hf, t5x) for hf, t5x, _ in mapping if t5x not in found]
    if missing and target is None:
        shown = ", ".join(f"{hf} ({t5x})" for hf, t5x in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise ValueError(f"{path}: {len(missing)} tensor(s) missing from the Hugging Face "
                         f"weights: {shown}{more}; a truncated or partial export?")
    if target is not None:
        report.check({**found, **unknown}, report.expected_meta(target), source=path)
    elif unknown:
        report.check({**found, **unknown}, found, source=path)
    _check_tied_inputs(source, present, path)
    targets = report.flatten(target) if target is not None else None
    want_float = None if dtype is None else np.dtype(dtype)
    params = {}
    for t5x, (hf, transposed) in plan.items():
        if targets is not None:
            shape, want, sharding = target_leaf(targets[t5x])
        else:
            shape, want, sharding = found[t5x][0], want_float or found[t5x][1], None

        def read(index, hf=hf, transposed=transposed):
            region = source.read(hf, _index_t(index, transposed))
            return region.T if transposed else region

        params[t5x] = build_array(shape, want, sharding, read)
    return make_result(report.unflatten(params), step, None, "reset", os.fspath(path),
                       "huggingface")


def _check_tied_inputs(source: _Source, present: set[str], path: str) -> None:
    """mT5 ties the encoder/decoder input embeddings to `shared`; a file that stores them
    with other values is not an mT5 layout this tree can hold. Compares the first rows."""
    if "shared.weight" not in present:
        return
    shared = source.read("shared.weight", (slice(0, 8), slice(None)))
    for name in TIED_INPUT_EMBEDDINGS:
        if name in present and not np.array_equal(source.read(name, (slice(0, 8), slice(None))),
                                                  shared):
            raise ValueError(f"{path}: '{name}' differs from 'shared.weight'; the t5x tree has "
                             "one input embedding shared by encoder and decoder.")


# ---------------------------------------------------------------- writing
def hf_config(config: Any, dtype: str = "float32") -> dict[str, Any]:
    """config.json for transformers' MT5Config (untied output layer, as released)."""
    return {
        "architectures": ["MT5ForConditionalGeneration"],
        "model_type": "mt5",
        "d_model": config.emb_dim,
        "d_kv": config.head_dim,
        "d_ff": config.mlp_dim,
        "num_layers": config.num_encoder_layers,
        "num_decoder_layers": config.num_decoder_layers,
        "num_heads": config.num_heads,
        "relative_attention_num_buckets": config.relpos_buckets,
        "relative_attention_max_distance": config.relpos_max_distance,
        "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": False,
        "vocab_size": config.vocab_size,
        "dropout_rate": float(config.dropout_rate),
        "layer_norm_epsilon": 1e-6,
        "initializer_factor": 1.0,
        "is_encoder_decoder": True,
        "use_cache": True,
        "decoder_start_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 0,
        "dtype": dtype,
    }


def _host_array(value: Any) -> np.ndarray:
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(value, tiled=True))
    return np.asarray(value)


def _shards(items: list[tuple[str, str, bool, int]], max_bytes: int) -> list[list]:
    shards: list[list] = [[]]
    size = 0
    for item in items:
        if shards[-1] and size + item[3] > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += item[3]
    return shards


def _tensors(flat: Mapping[str, Any], shard: list, dtype: np.dtype | None) -> Iterator:
    for hf, t5x, transposed, _ in shard:
        arr = _host_array(flat[t5x])
        arr = arr.T if transposed else arr
        yield hf, np.ascontiguousarray(arr.astype(dtype) if dtype is not None else arr)


def write_huggingface(
    directory: str,
    params: Mapping[str, Any],
    config: Any,
    *,
    dtype: Any = None,
    max_shard_bytes: int = 2 * 1024**3,
    overwrite: bool = False,
) -> str:
    """Write an HF mT5 directory (safetensors, sharded with an index when large, config.json).

    `config` is a train.config.MT5Config (or anything with its fields). Everything is written
    into a temporary sibling directory that replaces `directory` only when complete. Host
    memory holds one shard at a time.
    """
    import safetensors.numpy

    directory = os.fspath(directory).rstrip("/")
    if os.path.exists(directory) and os.listdir(directory) and not overwrite:
        raise FileExistsError(f"{directory}: exists and is not empty; pass overwrite=True.")
    flat = report.flatten(params)
    mapping = name_map(config.num_encoder_layers, config.num_decoder_layers)
    mapped = {t for _, t, _ in mapping}
    rep = report.TreeReport(
        missing=[(t, ((), np.dtype("float32"))) for t in sorted(mapped - set(flat))],
        unexpected=[(n, report.meta_of(v)) for n, v in flat.items() if n not in mapped])
    if not rep.ok:
        raise ValueError(rep.format("(params to export)", "mT5 parameter names for this config"))
    want = None if dtype is None else np.dtype(dtype)
    items = [(hf, t5x, tr, int(np.prod(flat[t5x].shape)) * (want or flat[t5x].dtype).itemsize)
             for hf, t5x, tr in mapping]
    shards = _shards(items, max_shard_bytes)
    tmp = f"{directory}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    weight_map = {}
    for i, shard in enumerate(shards):
        file = SAFETENSORS if len(shards) == 1 else (
            f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors")
        safetensors.numpy.save_file(dict(_tensors(flat, shard, want)), os.path.join(tmp, file),
                                    metadata={"format": "pt"})
        weight_map.update({hf: file for hf, *_ in shard})
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(it[3] for it in items)}, "weight_map": weight_map}
        with open(os.path.join(tmp, SAFETENSORS_INDEX), "w") as f:
            json.dump(index, f, indent=2)
    stored = (want or np.dtype(next(iter(flat.values())).dtype)).name
    with open(os.path.join(tmp, CONFIG), "w") as f:
        json.dump(hf_config(config, stored), f, indent=2)
    if os.path.exists(directory):
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory
