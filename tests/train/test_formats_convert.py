"""The converter's checks: a tensor missing from Hugging Face input fails with its name (it
used to write a checkpoint and exit 0); --to hf keeps non-default config fields
(relpos_buckets from the shapes, others from the input config.json or --set); a config.json
or --set value that contradicts the weights is refused; HF input starts at step 1,000,000."""
import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from train import network
from train.config import MT5Config
from train.formats import convert, huggingface, t5x_legacy

ODD = MT5Config(vocab_size=256, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=32,
                num_encoder_layers=1, num_decoder_layers=2, dtype="float32",
                relpos_buckets=16, relpos_max_distance=64, dropout_rate=0.1)
WO = "decoder.block.1.layer.2.DenseReluDense.wo.weight"


@pytest.fixture(scope="module")
def params():
    return jax.tree.map(np.asarray, network.init_params(ODD, jax.random.key(0)))


@pytest.fixture()
def hf_dir(tmp_path, params):
    return huggingface.write_huggingface(str(tmp_path / "hf"), params, ODD)


def _config(path):
    return json.load(open(os.path.join(path, huggingface.CONFIG)))


def _convert(capsys, *argv):
    capsys.readouterr()
    rc = convert.main(list(argv))
    return rc, capsys.readouterr().err


def test_missing_tensor_fails_with_its_name(tmp_path, hf_dir, capsys):
    import safetensors.numpy

    file = os.path.join(hf_dir, huggingface.SAFETENSORS)
    tensors = safetensors.numpy.load_file(file)
    del tensors[WO]
    safetensors.numpy.save_file(tensors, file, metadata={"format": "pt"})
    rc, err = _convert(capsys, "--from", "hf", "--to", "t5x", "--input", hf_dir,
                       "--output", str(tmp_path / "out"))
    assert rc == 1 and not (tmp_path / "out").exists()
    assert err.startswith("convert: error: ") and err.count("\n") == 1
    assert f"1 tensor(s) missing from the Hugging Face weights: {WO} " in err
    assert "(decoder/layers_1/mlp/wo/kernel)" in err
    # Without config.json the layer count comes from the weights: a wholly missing last block
    # is then invisible, but a missing tensor of a present block is still named.
    os.remove(os.path.join(hf_dir, huggingface.CONFIG))
    with pytest.raises(ValueError, match=f"missing from the Hugging Face weights: {WO}"):
        huggingface.read_huggingface(hf_dir)


def test_to_hf_keeps_every_non_default_field(tmp_path, hf_dir, params, capsys):
    # hf -> hf: relpos_buckets from the shapes, relpos_max_distance and dropout from config.json.
    rc, _ = _convert(capsys, "--from", "hf", "--to", "hf", "--input", hf_dir,
                     "--output", str(tmp_path / "again"))
    cfg = _config(tmp_path / "again")
    assert rc == 0 and cfg == _config(hf_dir)
    assert (cfg["relative_attention_num_buckets"], cfg["relative_attention_max_distance"],
            cfg["dropout_rate"], cfg["num_decoder_layers"]) == (16, 64, 0.1, 2)
    # t5x -> hf: t5x checkpoints hold no config; what shapes cannot tell comes from --set.
    t5x_legacy.write_t5x_legacy(str(tmp_path / "t5x"), 9, params)
    rc, _ = _convert(capsys, "--from", "t5x", "--to", "hf", "--optimizer-state", "reset",
                     "--input", str(tmp_path / "t5x" / "checkpoint_9"),
                     "--output", str(tmp_path / "hf2"), "--set", "relpos_max_distance=64",
                     "--set", "dropout_rate=0.1")
    assert rc == 0 and _config(tmp_path / "hf2") == _config(hf_dir)


def test_config_contradicting_the_weights_is_refused(tmp_path, hf_dir, capsys):
    cfg = _config(hf_dir)
    cfg.update(d_model=48, num_layers=3, relative_attention_num_buckets=32)
    json.dump(cfg, open(os.path.join(hf_dir, huggingface.CONFIG), "w"))
    rc, err = _convert(capsys, "--from", "hf", "--to", "t5x", "--input", hf_dir,
                       "--output", str(tmp_path / "out"))
    assert rc == 1 and not (tmp_path / "out").exists()
    assert "config.json contradicts the weights: " in err
    for wrong in ("d_model=48 but the weights have 16", "num_layers=3 but the weights have 1",
                  "relative_attention_num_buckets=32 but the weights have 16"):
        assert wrong in err


def test_bad_overrides_are_refused(tmp_path, hf_dir, capsys):
    base = ["--from", "hf", "--input", hf_dir, "--output", str(tmp_path / "o")]
    cases = {("--to", "hf", "--set", "emb_dim=48"): "emb_dim=48 but the weights have 16",
             ("--to", "hf", "--set", "relpos_max=3"): "expected FIELD=VALUE with FIELD one of",
             ("--to", "hf", "--set", "relpos_max_distance=x"): "relpos_max_distance expects "
                                                              "a int",
             ("--to", "t5x", "--set", "dropout_rate=0.2"): "--set applies to --to hf only"}
    for extra, message in cases.items():
        rc, err = _convert(capsys, *base, *extra)
        assert rc == 1 and message in err, (extra, err)
    assert not (tmp_path / "o").exists()


def test_hf_input_starts_at_the_pretraining_step(tmp_path, hf_dir, capsys):
    rc, _ = _convert(capsys, "--from", "hf", "--to", "t5x", "--input", hf_dir,
                     "--output", str(tmp_path / "t5x"))
    assert rc == 0 and os.listdir(tmp_path / "t5x") == ["checkpoint_1000000"]
    assert dataclasses.asdict(ODD)["relpos_buckets"] == 16  # the non-default config in use
