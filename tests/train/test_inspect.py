"""`python -m train.inspect`: parameter table, totals and mesh errors, with nothing allocated."""
import os
import subprocess
import sys
from pathlib import Path

import gin
import pytest

from train import inspect as inspect_cli

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "train.inspect", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_small_totals_and_t5x_names():
    proc = _run("--gin_file=gin/models/mt5_small.gin")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "Total parameters: 300.2M (300,176,768)"
    text = proc.stdout
    for name in ("token_embedder/embedding", "encoder/layers_7/attention/query/kernel",
                 "decoder/layers_0/encoder_decoder_attention/out/kernel",
                 "decoder/logits_dense/kernel", "encoder/relpos_bias/rel_embedding"):
        assert name in text
    assert "mesh: {'data': 1, 'model': 1} (1 devices)" in text


def test_xxl_on_a_fake_2x4_mesh_with_2d_sharding():
    proc = _run("--gin_file=gin/models/mt5_xxl.gin", "--devices", "8", "--mesh", "2,4",
                "--parameter_partitioning", "2d")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("Total parameters: 12,921.1M (12,921,")
    embedding = next(line for line in lines if line.startswith("token_embedder/embedding"))
    # [250112, 4096] f32 over model=4 (vocab) x data=2 (embed).
    assert "P('model', 'data')" in embedding
    assert embedding.split()[-1] == f"{250112 * 4096 * 4 // 8:,}"
    assert "mesh: {'data': 2, 'model': 4} (8 devices)" in proc.stdout


@pytest.fixture
def in_process():
    yield inspect_cli.main
    gin.clear_config()


def test_indivisible_mesh_names_the_parameter(in_process, capsys):
    rc = in_process(["--gin_file=gin/models/mt5_small.gin", "--devices", "3", "--mesh", "1,3"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "mesh {'data': 1, 'model': 3} does not divide 50 parameter(s)" in err
    # One line per problem: the embedding and logits share (vocab=250112), 48 kernels mlp=1024.
    assert ("decoder/logits_dense/kernel dim 1 (vocab=250112) is not divisible by mesh axis "
            "'model' of size 3 (and 1 more like it)") in err
    assert ("decoder/layers_0/mlp/wi_0/kernel dim 1 (mlp=1024) is not divisible by mesh axis "
            "'model' of size 3 (and 47 more like it)") in err


@pytest.mark.parametrize("flag, message", [
    ("--gin.EMBED_DIMS=256", "no macro EMBED_DIMS is defined in gin/models/mt5_small.gin"),
    ("--gin.config.MT5Config.foo=1", "doesn't have a parameter named 'foo'"),
    ("--gin.EMBED_DIM=-1", "MT5Config.emb_dim=-1: expected a positive int"),
    ("--model_parallel_submesh=1,2,1", "expected 4 comma-separated ints"),
])
def test_bad_bindings_and_flags_are_named(in_process, capsys, flag, message):
    assert in_process(["--gin_file=gin/models/mt5_small.gin", flag]) == 2
    assert message in capsys.readouterr().err


def test_gin_override_changes_the_model(in_process, capsys):
    rc = in_process(["--gin_file=gin/models/mt5_tiny.gin", "--gin.NUM_ENCODER_LAYERS=1",
                     "--no-optimizer_state"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "encoder/layers_0/" in out and "encoder/layers_1/" not in out
    assert "Adafactor" not in out


def test_split_gin_flags():
    from train.gin_utils import split_gin_flags

    bindings, rest = split_gin_flags(["--gin.A=1", "--mesh", "2,4", "--gin.b.c='x'"])
    assert bindings == ["A = 1", "b.c = 'x'"] and rest == ["--mesh", "2,4"]
    with pytest.raises(ValueError, match="expected --gin.NAME=VALUE"):
        split_gin_flags(["--gin.A"])
