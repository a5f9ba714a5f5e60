"""Every reader goes through one filesystem layer (xitt_common.fs, etils.epath) and format
detection reads the directory. GCS cannot be reached from tests: a fake `gs://` bucket is
mapped onto a local directory inside `fs.path`, so the same code path runs (epath calls, the
remote branch that copies files for safetensors) on local files; TensorStore's gcs driver for
legacy arrays is pinned separately (test_formats_t5x.py::test_gcs_paths_map_to_the_gcs_kvstore)."""
import os

import jax
import numpy as np
import pytest
from etils import epath

from train import checkpoints, network
from train.config import MT5Config
from train.formats import (
    detect_format,
    huggingface,
    load_checkpoint,
    t5x_legacy,
    t5x_orbax,
)
from xitt_common import fs

SMALL = MT5Config(vocab_size=256, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=32,
                  num_encoder_layers=1, num_decoder_layers=1, dtype="float32")
BUCKET = "gs://fake-bucket/"


@pytest.fixture(scope="module")
def params():
    return jax.tree.map(np.asarray, network.init_params(SMALL, jax.random.key(0)))


@pytest.fixture()
def bucket(tmp_path, monkeypatch):
    """gs://fake-bucket/... -> tmp_path/... for every path the readers open through fs."""
    real = fs.path

    def mapped(p):
        text = os.fspath(p)
        return real(tmp_path / text[len(BUCKET):] if text.startswith(BUCKET) else text)

    monkeypatch.setattr(fs, "path", mapped)
    monkeypatch.setattr(fs, "_COPIES", {})
    return tmp_path


@pytest.fixture()
def three_formats(bucket, params):
    t5x_legacy.write_t5x_legacy(str(bucket / "legacy"), 3, params)
    huggingface.write_huggingface(str(bucket / "hf"), params, SMALL)
    checkpoints.Checkpoints(str(bucket / "orbax")).save(
        4, {"target": params, "state": {"step": np.asarray(4, np.int32)}})
    return bucket


def test_detection_reads_the_directory_local_and_gs(three_formats):
    for root in (str(three_formats) + "/", BUCKET):
        assert detect_format(root + "legacy/checkpoint_3") == "t5x_legacy"
        assert detect_format(root + "legacy/checkpoint_3/checkpoint") == "t5x_legacy"
        assert detect_format(root + "hf") == "huggingface"  # gs:// used to mean legacy
        assert detect_format(root + "orbax/checkpoint_4") == "t5x_orbax"
        with pytest.raises(FileNotFoundError, match="missing: no such checkpoint directory"):
            detect_format(root + "missing")
        with pytest.raises(ValueError, match=r"not a t5x .*found \['checkpoint_3'\]"):
            detect_format(root + "legacy")


def test_gs_paths_load_through_the_same_layer(three_formats, params):
    kernel = params["decoder"]["logits_dense"]["kernel"]
    hf = load_checkpoint(BUCKET + "hf", optimizer_state="reset")
    np.testing.assert_array_equal(hf.params["decoder"]["logits_dense"]["kernel"], kernel)
    assert hf.format == "huggingface" and hf.step == 1_000_000
    # safetensors memory-maps local files: the remote file was copied once, under fs's control.
    [(remote, local)] = fs._COPIES.items()
    assert remote == BUCKET + "hf/" + huggingface.SAFETENSORS and os.path.isfile(local)
    assert not fs.is_local(remote) and fs.is_local(local)
    # Orbax opens gs:// itself and the legacy zarr arrays go through TensorStore's gcs driver:
    # neither can be redirected to the fake bucket. Pinned here: the Orbax item directory is
    # found through fs, and the legacy msgpack is read through fs.
    assert t5x_orbax.find_pytree_dir(BUCKET + "orbax/checkpoint_4") == (
        BUCKET + "orbax/checkpoint_4")
    state = t5x_legacy.read_msgpack(BUCKET + "legacy/checkpoint_3")
    assert int(np.asarray(state["optimizer"]["state"]["step"])) == 3


def test_hf_start_step_is_a_setting(three_formats):
    root = str(three_formats)
    assert load_checkpoint(root + "/hf", optimizer_state="reset").step == 1_000_000
    loaded = load_checkpoint(root + "/hf", optimizer_state="reset", hf_start_step=0)
    assert (loaded.step, loaded.decay_step_offset) == (0, 0)


def test_fs_helpers_on_local_paths(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text("x")
    assert fs.listdir(tmp_path) == ["a.txt", "b"] and fs.listdir(tmp_path / "nope") == []
    assert fs.join(str(tmp_path), "a.txt") == str(tmp_path / "a.txt")
    assert fs.local_file(str(tmp_path / "a.txt")) == str(tmp_path / "a.txt")  # no copy
    assert isinstance(fs.path(str(tmp_path)), epath.Path)
