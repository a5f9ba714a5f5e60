"""The two settings that choose a run's data: $XITT_DATA_DIR (the data root) and $XITT_VOCAB
(the vocabulary). Launchers forward both to every host, so a pod reads what the user
prepared and never falls back to the shipped sample and CPU vocabulary unnoticed. No heavy
imports: the TPU scripts use this on a laptop."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

DATA_DIR_ENV = "XITT_DATA_DIR"
VOCAB_ENV = "XITT_VOCAB"
FORWARDED = (DATA_DIR_ENV, VOCAB_ENV)


def forwarded(environ: Mapping[str, str] | None = None) -> list[str]:
    """`NAME=value` for each data setting set here (unset ones stay unset on the hosts)."""
    env = os.environ if environ is None else environ
    return [f"{name}={env[name]}" for name in FORWARDED if env.get(name)]


def with_data_env(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """`argv` run under `env XITT_DATA_DIR=... XITT_VOCAB=...` when either is set."""
    pairs = forwarded(environ)
    return ["env", *pairs, *argv] if pairs else list(argv)
