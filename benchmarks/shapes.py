"""The benchmarked model shapes and batches (same batch and lengths for both frameworks)."""
from __future__ import annotations

import dataclasses

from train.config import MT5Config


@dataclasses.dataclass(frozen=True)
class Shape:
    """A model config plus the train batch and lengths it is benchmarked at."""

    name: str
    config: MT5Config
    batch_size: int
    input_length: int
    target_length: int


def _cfg(vocab: int, d: int, heads: int, mlp: int, layers: int, dtype: str) -> MT5Config:
    return MT5Config(vocab_size=vocab, emb_dim=d, num_heads=heads, head_dim=64, mlp_dim=mlp,
                     num_encoder_layers=layers, num_decoder_layers=layers, dropout_rate=0.0,
                     dtype=dtype)


def train_shapes(quick: bool, dtype: str = "float32") -> list[Shape]:
    """mT5-Small (vocab 250,112, 8+8 layers) and a 70M shape (vocab 32k, 6+6, d 512); --quick
    shrinks both so the harness runs in about a minute."""
    if quick:
        return [Shape("tiny-32k", _cfg(32_000, 128, 2, 256, 2, dtype), 4, 64, 16),
                Shape("tiny-4k", _cfg(4096, 128, 2, 256, 2, dtype), 4, 64, 16)]
    return [Shape("mt5-small", _cfg(250_112, 512, 6, 1024, 8, dtype), 4, 256, 64),
            Shape("70M", _cfg(32_000, 512, 8, 1024, 6, dtype), 8, 256, 64)]
