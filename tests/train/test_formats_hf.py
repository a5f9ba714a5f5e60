"""Hugging Face mT5: name mapping, safetensors write/read identity (sharded, per-shard reads),
and (with the optional torch + transformers extra) numerical parity with
MT5ForConditionalGeneration: logits, greedy decoding, and export reloaded by transformers."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from train import inference, network
from train.config import MT5Config
from train.formats import convert, huggingface, report, t5x_legacy

TINY = MT5Config(vocab_size=2048, emb_dim=64, num_heads=4, head_dim=16, mlp_dim=128,
                 num_encoder_layers=2, num_decoder_layers=2, dtype="float32")


@pytest.fixture(scope="module")
def params():
    return jax.tree.map(np.asarray, network.init_params(TINY, jax.random.key(3)))


def _assert_trees_equal(got, want):
    got, want = report.flatten(got), report.flatten(want)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]), name)


def test_name_map_covers_the_t5x_tree_once():
    mapping = huggingface.name_map(2, 2)
    t5x_names = [t for _, t, _ in mapping]
    assert sorted(t5x_names) == sorted(report.flatten(network.abstract_params(TINY)))
    assert len({hf for hf, _, _ in mapping}) == len(mapping)
    table = {hf: (t, tr) for hf, t, tr in mapping}
    assert table["decoder.block.1.layer.1.EncDecAttention.o.weight"] == (
        "decoder/layers_1/encoder_decoder_attention/out/kernel", True)
    assert table["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] == (
        "encoder/relpos_bias/rel_embedding", True)
    assert table["decoder.block.0.layer.2.layer_norm.weight"] == (
        "decoder/layers_0/pre_mlp_layer_norm/scale", False)


def test_write_read_identity_sharded_files_and_per_shard_reads(tmp_path, params):
    out = huggingface.write_huggingface(str(tmp_path / "hf"), params, TINY,
                                        max_shard_bytes=300_000)
    files = sorted(os.listdir(out))
    shards = [f for f in files if f.startswith("model-")]
    assert len(shards) > 1 and huggingface.SAFETENSORS_INDEX in files
    from safetensors import safe_open

    index = json.load(open(os.path.join(out, huggingface.SAFETENSORS_INDEX)))["weight_map"]
    with safe_open(os.path.join(out, index["lm_head.weight"]), framework="numpy") as f:
        np.testing.assert_array_equal(f.get_tensor("lm_head.weight"),
                                      params["decoder"]["logits_dense"]["kernel"].T)
    assert huggingface.config_from_hf(out) == {
        k: getattr(TINY, k) for k in huggingface.config_from_hf(out)}
    loaded = huggingface.read_huggingface(out)
    # No step in HF files: the released models' 1,000,000 pretraining steps by default.
    assert (loaded.step, loaded.optimizer_state, loaded.param_states) == (
        huggingface.HF_START_STEP, "reset", None) == (1_000_000, "reset", None)
    _assert_trees_equal(loaded.params, params)

    mesh = jax.make_mesh((2, 4), ("data", "model"))
    target = network.abstract_params(TINY)
    sharding = NamedSharding(mesh, P("data", "model"))  # transposed on disk: [vocab, embed]
    target["decoder"]["logits_dense"]["kernel"] = jax.ShapeDtypeStruct(
        (64, 2048), jnp.bfloat16, sharding=sharding)
    sharded = huggingface.read_huggingface(out, target, step=5)
    kernel = sharded.params["decoder"]["logits_dense"]["kernel"]
    assert kernel.sharding == sharding and kernel.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(kernel, np.float32), np.asarray(
        params["decoder"]["logits_dense"]["kernel"].astype(jnp.bfloat16), np.float32))
    assert sharded.step == sharded.decay_step_offset == 5


def test_convert_cli_t5x_to_hf_to_t5x(tmp_path, params):
    t5x_legacy.write_t5x_legacy(str(tmp_path / "a"), 7, params)
    assert convert.main(["--from", "t5x", "--to", "hf", "--input",
                         str(tmp_path / "a" / "checkpoint_7"), "--output",
                         str(tmp_path / "hf")]) == 0
    assert convert.main(["--from", "hf", "--to", "t5x", "--input", str(tmp_path / "hf"),
                         "--output", str(tmp_path / "b"), "--step", "7"]) == 0
    back = t5x_legacy.read_t5x_legacy(str(tmp_path / "b" / "checkpoint_7"),
                                      optimizer_state="reset")
    _assert_trees_equal(back.params, params)


# ------------------------------------------------------------------ parity with transformers
def _hf_model(seed: int = 0):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.MT5Config(
        vocab_size=TINY.vocab_size, d_model=TINY.emb_dim, d_kv=TINY.head_dim,
        d_ff=TINY.mlp_dim, num_layers=TINY.num_encoder_layers,
        num_decoder_layers=TINY.num_decoder_layers, num_heads=TINY.num_heads,
        dropout_rate=0.0)
    cfg.tie_word_embeddings = False  # transformers 5 forces True; mT5 is untied
    model = transformers.MT5ForConditionalGeneration(cfg).eval()
    model.set_input_embeddings(model.shared)  # encoder/decoder inputs stay tied to `shared`
    model.lm_head.weight = torch.nn.Parameter(torch.randn(TINY.vocab_size, TINY.emb_dim) * 0.05)
    for p in model.parameters():  # HF's init is near-uniform; spread the norms and biases
        if p.ndim == 1:
            p.data.uniform_(0.5, 1.5)
    rel = model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
    rel.data.normal_(0, 1.0)
    model.decoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight.data.normal_(0, 1)
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    return model


def _inputs():
    rng = np.random.default_rng(0)
    enc = rng.integers(2, TINY.vocab_size, (3, 9)).astype(np.int32)
    enc[1, 6:] = 0
    enc[2, 3:] = 0
    targets = rng.integers(2, TINY.vocab_size, (3, 6)).astype(np.int32)
    dec_in = np.concatenate([np.zeros((3, 1), np.int32), targets[:, :-1]], axis=1)
    return enc, dec_in, targets


def _hf_logits(model, enc, dec_in):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor(enc, dtype=torch.long),
                     attention_mask=torch.tensor(enc > 0),
                     decoder_input_ids=torch.tensor(dec_in, dtype=torch.long)).logits.numpy()


def _our_logits(p, enc, dec_in, targets):
    return np.asarray(network.Transformer(TINY).apply(
        {"params": p}, jnp.asarray(enc), jnp.asarray(dec_in), jnp.asarray(targets),
        enable_dropout=False))


@pytest.mark.hf
def test_parity_logits_and_greedy_decode(tmp_path):
    model = _hf_model()
    model.save_pretrained(str(tmp_path / "hf"))
    loaded = huggingface.read_huggingface(str(tmp_path / "hf"), network.abstract_params(TINY))
    enc, dec_in, targets = _inputs()
    ours = _our_logits(loaded.params, enc, dec_in, targets)
    theirs = _hf_logits(model, enc, dec_in)
    assert np.abs(ours - theirs).max() < 1e-4, np.abs(ours - theirs).max()

    import torch

    steps = 8
    with torch.no_grad():
        generated = model.generate(
            input_ids=torch.tensor(enc, dtype=torch.long), attention_mask=torch.tensor(enc > 0),
            do_sample=False, num_beams=1, max_new_tokens=steps, min_new_tokens=0).numpy()
    hf_tokens = np.zeros((enc.shape[0], steps), np.int64)
    hf_tokens[:, : generated.shape[1] - 1] = generated[:, 1:]  # drop the start token 0
    assert len(np.unique(hf_tokens)) > steps  # a real sequence, not a run of one token
    ours = inference.predict_batch(network.Transformer(TINY), loaded.params,
                                   {"encoder_input_tokens": jnp.asarray(enc)},
                                   max_decode_len=steps)
    np.testing.assert_array_equal(np.asarray(ours), hf_tokens)


@pytest.mark.hf
def test_export_reloads_in_transformers_with_same_logits(tmp_path, params):
    transformers = pytest.importorskip("transformers")
    out = huggingface.write_huggingface(str(tmp_path / "export"), params, TINY)
    model = transformers.MT5ForConditionalGeneration.from_pretrained(out).eval()
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    enc, dec_in, targets = _inputs()
    diff = np.abs(_hf_logits(model, enc, dec_in) - _our_logits(params, enc, dec_in, targets))
    assert diff.max() < 1e-4, diff.max()
