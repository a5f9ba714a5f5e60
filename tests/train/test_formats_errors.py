"""Wrong checkpoints fail with one message naming the offending parameters and shapes:
another model size, another vocabulary, truncated or missing arrays, truncated safetensors,
pickle-only directories and bad options (vocabularies: test_vocab_check.py)."""
from __future__ import annotations

import dataclasses
import os
import shutil

import jax
import numpy as np
import pytest

from train import network
from train.config import MT5Config
from train.formats import huggingface, load_checkpoint, t5x_legacy

SMALL = MT5Config(vocab_size=512, emb_dim=32, num_heads=2, head_dim=16, mlp_dim=64,
                  num_encoder_layers=2, num_decoder_layers=2, dtype="float32")
LARGER = dataclasses.replace(SMALL, emb_dim=48, num_heads=3, num_encoder_layers=3,
                             num_decoder_layers=3)
QUERY = "encoder/layers_0/attention/query/kernel"


@pytest.fixture(scope="module")
def params():
    return jax.tree.map(np.asarray, network.init_params(SMALL, jax.random.key(0)))


@pytest.fixture()
def legacy(tmp_path, params):
    return t5x_legacy.write_t5x_legacy(str(tmp_path), 5, params)


def test_smaller_model_into_larger_config_lists_parameters_and_sizes(legacy):
    with pytest.raises(ValueError) as err:
        load_checkpoint(legacy, network.abstract_params(LARGER), optimizer_state="reset")
    msg = str(err.value)
    assert legacy in msg
    assert "token_embedder/embedding: [512, 32] float32 -> [512, 48] float32" in msg
    assert "encoder/relpos_bias/rel_embedding: [2, 32] float32 -> [3, 32] float32" in msg
    assert "23 missing" in msg  # layers_2 of both stacks: 9 + 14 parameters
    assert "decoder/layers_2/encoder_decoder_attention/key/kernel [48, 48] float32" in msg
    assert "emb_dim=32 (expected 48)" in msg and "num_encoder_layers=2 (expected 3)" in msg


def test_wrong_vocabulary_size_is_named(legacy):
    with pytest.raises(ValueError) as err:
        load_checkpoint(legacy, network.abstract_params(
            dataclasses.replace(SMALL, vocab_size=1024)), optimizer_state="reset")
    msg = str(err.value)
    assert "token_embedder/embedding: [512, 32] float32 -> [1024, 32] float32" in msg
    assert "decoder/logits_dense/kernel: [32, 512] float32 -> [32, 1024] float32" in msg
    assert "vocabulary size differs" in msg and "512 rows" in msg and "1024" in msg


def _array_dir(ckpt, name):
    return os.path.join(ckpt, "target." + name.replace("/", "."))


def test_truncated_chunk_is_named(legacy):
    chunk = os.path.join(_array_dir(legacy, QUERY), "0.0")
    data = open(chunk, "rb").read()
    open(chunk, "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError) as err:
        load_checkpoint(legacy, network.abstract_params(SMALL), optimizer_state="reset")
    msg = str(err.value)
    assert f"{QUERY} [32, 32] float32" in msg and "truncated" in msg and "unreadable" in msg


def test_missing_chunk_is_an_error_not_zeros(legacy):
    os.remove(os.path.join(_array_dir(legacy, QUERY), "0.0"))
    with pytest.raises(ValueError, match=f"(?s){QUERY} \\[32, 32\\].*missing"):
        load_checkpoint(legacy, optimizer_state="reset")


def test_missing_array_directory_is_named(legacy):
    shutil.rmtree(_array_dir(legacy, "decoder/decoder_norm/scale"))
    with pytest.raises(ValueError) as err:
        load_checkpoint(legacy, network.abstract_params(SMALL), optimizer_state="reset")
    assert "decoder/decoder_norm/scale [32] float32: cannot open the array" in str(err.value)


def test_restore_without_statistics_and_bad_choice(legacy):
    with pytest.raises(ValueError, match="holds no Adafactor param_states; use "
                                         "optimizer_state='reset'"):
        load_checkpoint(legacy)
    with pytest.raises(ValueError, match="optimizer_state='keep'"):
        load_checkpoint(legacy, optimizer_state="keep")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "checkpoint").write_bytes(b"\x00not msgpack")
    with pytest.raises(ValueError, match="checkpoint: not a readable msgpack"):
        t5x_legacy.read_t5x_legacy(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nothing-here: no such checkpoint directory"):
        load_checkpoint(str(tmp_path / "nothing-here"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a t5x .* nor a Hugging Face.*an empty directory"):
        load_checkpoint(str(tmp_path / "empty"))


# ------------------------------------------------------------------ Hugging Face
@pytest.fixture()
def hf_dir(tmp_path, params):
    return huggingface.write_huggingface(str(tmp_path / "hf"), params, SMALL)


def test_truncated_safetensors_names_the_file(hf_dir):
    file = os.path.join(hf_dir, huggingface.SAFETENSORS)
    data = open(file, "rb").read()
    open(file, "wb").write(data[:-100])
    with pytest.raises(ValueError, match="model.safetensors: unreadable safetensors file, "
                                         "truncated"):
        load_checkpoint(hf_dir, optimizer_state="reset")


def test_missing_tensor_in_safetensors_is_named(hf_dir):
    import safetensors.numpy

    file = os.path.join(hf_dir, huggingface.SAFETENSORS)
    tensors = safetensors.numpy.load_file(file)
    del tensors["decoder.block.1.layer.2.DenseReluDense.wo.weight"]
    safetensors.numpy.save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(ValueError) as err:
        load_checkpoint(hf_dir, network.abstract_params(SMALL), optimizer_state="reset")
    assert "decoder/layers_1/mlp/wo/kernel [64, 32] float32" in str(err.value)
    assert "1 missing" in str(err.value)


def test_hf_has_no_optimizer_state(hf_dir):
    with pytest.raises(ValueError, match="hold no Adafactor statistics"):
        load_checkpoint(hf_dir)


def test_pickle_only_directory_is_refused_unless_allowed(tmp_path, params):
    (tmp_path / huggingface.PICKLE).write_bytes(b"not read")
    with pytest.raises(ValueError, match="only PyTorch pickle weights .* allow_pickle=True"):
        huggingface.read_huggingface(str(tmp_path))


@pytest.mark.hf
def test_pickle_directory_loads_with_allow_pickle(tmp_path, hf_dir, params):
    torch = pytest.importorskip("torch")
    import safetensors.numpy

    tensors = safetensors.numpy.load_file(os.path.join(hf_dir, huggingface.SAFETENSORS))
    torch.save({k: torch.from_numpy(v) for k, v in tensors.items()},
               str(tmp_path / huggingface.PICKLE))
    loaded = huggingface.read_huggingface(str(tmp_path), allow_pickle=True)
    np.testing.assert_array_equal(loaded.params["decoder"]["logits_dense"]["kernel"],
                                  params["decoder"]["logits_dense"]["kernel"])
