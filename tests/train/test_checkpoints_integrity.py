"""Damaged checkpoints are detected and the newest intact one is used, loudly: flipped bytes,
a truncated array file, a garbage `_METADATA`, arrays that restore as NaN; leftovers of
interrupted saves are removed; NaN metrics never reach a checkpoint or the metrics file."""
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from train import checkpoint_integrity, checkpoints


def _tree(value: float, step: int) -> dict:
    return {"target": {"dense": {"kernel": jnp.full((64, 32), value)}, "scale": jnp.ones(4)},
            "state": {"step": jnp.asarray(step, jnp.int32)}}


ABSTRACT = {"target": {"dense": {"kernel": jax.ShapeDtypeStruct((64, 32), jnp.float32)},
                       "scale": jax.ShapeDtypeStruct((4,), jnp.float32)}}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model directory with checkpoint_1 (kernel 1.0) and checkpoint_2 (kernel 2.0)."""
    root = tmp_path_factory.mktemp("saved")
    ckpts = checkpoints.Checkpoints(str(root), keep=5)
    for step in (1, 2):
        ckpts.save(step, _tree(float(step), step))
    return root


@pytest.fixture()
def model_dir(saved, tmp_path):
    shutil.copytree(saved, tmp_path / "run")
    return tmp_path / "run"


def _largest_data_file(step_dir):
    files = [p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
    return max(files, key=lambda p: p.stat().st_size)


def _kernel(model_dir) -> float:
    params = checkpoints.load_params(str(model_dir), ABSTRACT["target"])
    return float(np.asarray(params["dense"]["kernel"])[0, 0])


def _assert_falls_back(model_dir, capsys, *words):
    step, problems = checkpoints.latest_intact_step(str(model_dir))
    assert step == 1 and len(problems) == 1
    assert "damaged checkpoint" in problems[0] and "checkpoint_2" in problems[0]
    assert "\n" not in problems[0] and all(w in problems[0] for w in words), problems[0]
    capsys.readouterr()
    assert _kernel(model_dir) == 1.0  # the model directory resolves to the intact step
    err = capsys.readouterr().err
    assert "WARNING: damaged checkpoint" in err and "checkpoint_2" in err
    with pytest.raises(checkpoints.CorruptCheckpointError, match="checkpoint_2"):
        checkpoints.load_params(str(model_dir / "checkpoint_2"), ABSTRACT["target"])


def test_intact_checkpoints_verify_and_restore(model_dir):
    assert (model_dir / "checkpoint_2" / checkpoint_integrity.MANIFEST).exists()
    assert checkpoints.latest_intact_step(str(model_dir)) == (2, [])
    step, tree, problems = checkpoints.restore_latest_intact(str(model_dir), ABSTRACT)
    assert (step, problems) == (2, [])
    np.testing.assert_array_equal(np.asarray(tree["target"]["dense"]["kernel"]),
                                  np.full((64, 32), 2.0))


def test_flipped_bytes_fall_back(model_dir, capsys):
    data = _largest_data_file(model_dir / "checkpoint_2")
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    _assert_falls_back(model_dir, capsys, data.name, "sha256")


def test_truncated_array_file_falls_back(model_dir, capsys):
    data = _largest_data_file(model_dir / "checkpoint_2")
    size = data.stat().st_size
    data.write_bytes(data.read_bytes()[: size // 2])
    _assert_falls_back(model_dir, capsys, data.name, f"{size // 2} bytes", "truncated")


def test_garbage_metadata_falls_back(model_dir, capsys):
    (model_dir / "checkpoint_2" / "_METADATA").write_text("garbage{")
    _assert_falls_back(model_dir, capsys, "_METADATA")


def test_garbage_metadata_without_manifest_falls_back(model_dir, capsys):
    (model_dir / "checkpoint_2" / checkpoint_integrity.MANIFEST).unlink()
    (model_dir / "checkpoint_2" / "_METADATA").write_text("garbage{")
    _assert_falls_back(model_dir, capsys, "_METADATA is unreadable")


def test_nan_arrays_are_caught_on_restore(model_dir, capsys):
    # Bytes that decode to NaN in a step without a manifest (saved before checksums existed):
    # only the finiteness check on restore can catch them.
    shutil.rmtree(model_dir / "checkpoint_2")
    ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).save(
        model_dir / "checkpoint_2", args=ocp.args.PyTreeSave(_tree(float("nan"), 2)))
    assert checkpoints.latest_intact_step(str(model_dir)) == (2, [])  # files look fine
    capsys.readouterr()
    step, tree, problems = checkpoints.restore_latest_intact(str(model_dir), ABSTRACT)
    assert step == 1 and len(problems) == 1 and "NaN or inf" in problems[0]
    assert "checkpoint_2" in capsys.readouterr().err
    assert float(np.asarray(tree["target"]["dense"]["kernel"])[0, 0]) == 1.0


def test_every_checkpoint_damaged_is_an_error_not_a_fresh_start(model_dir):
    for step in (1, 2):
        (model_dir / f"checkpoint_{step}" / "_METADATA").write_text("garbage{")
    assert checkpoints.latest_intact_step(str(model_dir))[0] is None
    with pytest.raises(checkpoints.CorruptCheckpointError,
                       match="every checkpoint in .* is damaged.*checkpoint_2.*checkpoint_1"):
        checkpoints.restore_latest_intact(str(model_dir), ABSTRACT)


def test_leftovers_of_interrupted_saves_are_removed(model_dir, capsys):
    deleting = model_dir / "checkpoint_0.deleting"
    shutil.copytree(model_dir / "checkpoint_1", deleting)
    tmp = model_dir / "checkpoint_3.orbax-checkpoint-tmp-1712345678"
    tmp.mkdir()
    (tmp / "_METADATA").write_text("{}")
    (model_dir / "checkpoint_metrics.json.tmp").write_text("{")
    ckpts = checkpoints.Checkpoints(str(model_dir))
    assert ckpts.removed_stale == sorted([deleting.name, tmp.name, "checkpoint_metrics.json.tmp"])
    assert not deleting.exists() and not tmp.exists()
    assert "removed leftovers of interrupted saves" in capsys.readouterr().err
    assert checkpoints.committed_steps(str(model_dir)) == [1, 2]


def _strict_json(path):
    def refuse(constant):
        raise ValueError(f"{path}: {constant} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_nan_metrics_refuse_the_save(model_dir):
    ckpts = checkpoints.Checkpoints(str(model_dir), keep=5, best_metric="loss")
    ckpts.record_metrics(2, {"loss": 1.5})
    with pytest.raises(checkpoints.NonFiniteMetricsError,
                       match=r"checkpoint_3 .* not finite \(loss=nan\)"):
        ckpts.save(3, _tree(3.0, 3), metrics={"loss": float("nan"), "accuracy": 0.5})
    assert not (model_dir / "checkpoint_3").exists()
    with pytest.raises(checkpoints.NonFiniteMetricsError, match="accuracy=inf"):
        ckpts.record_metrics(2, {"accuracy": float("inf")})
    assert _strict_json(model_dir / checkpoints.METRICS_FILE) == {"2": {"loss": 1.5}}
