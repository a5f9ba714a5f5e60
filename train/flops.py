"""Exact model FLOPs of the mT5 encoder-decoder: every matmul, attention included.

Why not 6 * params * tokens: the shared embedding is a lookup (a gather, no FLOPs), and the
attention score and value matmuls (q.k over every key, weights.v) are not parameter matmuls;
cross-attention's key/value projections run over encoder tokens, not decoder tokens.

Counted per token at the padded feature lengths (what the hardware computes: every query meets
every key of its row), with 2 FLOPs per multiply-add:

- encoder layer, per input token: q, k, v, out projections 4 * 2 d J; gated-GELU MLP
  3 * 2 d F; scores and values 2 * 2 L_in J.
- decoder layer, per target token: self-attention 4 * 2 d J + 2 * 2 L_t J; cross-attention
  query and out 2 * 2 d J + scores/values 2 * 2 L_in J; MLP 3 * 2 d F.
  Per input token: cross-attention key and value 2 * 2 d J (per decoder layer).
- output layer, per target token: 2 d V.

A train step is 3 x the forward pass: the backward pass computes, for every matmul, the
gradient of both operands (the first layer's input gradient feeds the embedding gradient, so
none is skipped). Rematerialisation adds hardware FLOPs but no model FLOPs (MFU convention).
d = emb_dim, J = heads * head_dim, F = mlp_dim, V = vocab_size. Norms, softmax, relative
position buckets and the loss are elementwise and not counted.
"""
from __future__ import annotations

import dataclasses

from train.config import MT5Config

TRAIN_MULTIPLIER = 3.0  # forward + backward (two matmuls per forward matmul)


@dataclasses.dataclass(frozen=True)
class ForwardFlops:
    """Forward-pass FLOPs of one batch, split by where they are spent."""

    encoder: float
    decoder: float            # self- and cross-attention (incl. cross K/V) and MLP
    output_layer: float       # logits_dense: 2 d V per target token
    attention_scores: float   # the part of encoder + decoder spent in q.k and weights.v

    @property
    def total(self) -> float:
        return self.encoder + self.decoder + self.output_layer


def _check(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r}: expected a positive int")
    return value


def per_token_forward(config: MT5Config, input_length: int,
                      target_length: int) -> tuple[float, float]:
    """(FLOPs per input token, FLOPs per target token) of the forward pass at padded lengths
    `input_length` / `target_length` (the attention spans)."""
    li, lt = _check("input_length", input_length), _check("target_length", target_length)
    d, j, f, v = config.emb_dim, config.joined_kv, config.mlp_dim, config.vocab_size
    enc_layer = 8 * d * j + 6 * d * f + 4 * li * j
    per_input = config.num_encoder_layers * enc_layer + config.num_decoder_layers * 4 * d * j
    dec_layer = (8 * d * j + 4 * lt * j) + (4 * d * j + 4 * li * j) + 6 * d * f
    per_target = config.num_decoder_layers * dec_layer + 2 * d * v
    return float(per_input), float(per_target)


def per_token_train(config: MT5Config, input_length: int,
                    target_length: int) -> tuple[float, float]:
    """(FLOPs per input token, per target token) of a train step (3 x forward)."""
    fi, ft = per_token_forward(config, input_length, target_length)
    return TRAIN_MULTIPLIER * fi, TRAIN_MULTIPLIER * ft


def forward_flops(config: MT5Config, batch_size: int, input_length: int,
                  target_length: int) -> ForwardFlops:
    """Forward FLOPs of a [batch, input_length] -> [batch, target_length] batch, padding
    included (it is computed)."""
    b = _check("batch_size", batch_size)
    li, lt = _check("input_length", input_length), _check("target_length", target_length)
    d, j, f, v = config.emb_dim, config.joined_kv, config.mlp_dim, config.vocab_size
    ne, nd = config.num_encoder_layers, config.num_decoder_layers
    enc = b * li * ne * (8 * d * j + 6 * d * f + 4 * li * j)
    dec = (b * lt * nd * ((8 * d * j + 4 * lt * j) + (4 * d * j + 4 * li * j) + 6 * d * f)
           + b * li * nd * 4 * d * j)
    scores = b * li * ne * 4 * li * j + b * lt * nd * (4 * lt * j + 4 * li * j)
    return ForwardFlops(float(enc), float(dec), float(b * lt * 2 * d * v), float(scores))


def train_step_flops(config: MT5Config, batch_size: int, input_length: int,
                     target_length: int) -> float:
    """Model FLOPs of one train step on a full (padded) batch."""
    return TRAIN_MULTIPLIER * forward_flops(config, batch_size, input_length, target_length).total


def decode_flops(config: MT5Config, batch_size: int, input_length: int,
                 decode_length: int) -> float:
    """Forward FLOPs of greedy decoding with a KV cache of `decode_length` (fixed shapes):
    the encoder once, then per step one query over the whole cache and the encoder."""
    b = _check("batch_size", batch_size)
    li, lt = _check("input_length", input_length), _check("decode_length", decode_length)
    d, j, f, v = config.emb_dim, config.joined_kv, config.mlp_dim, config.vocab_size
    per_input, _ = per_token_forward(config, li, lt)
    per_step = config.num_decoder_layers * ((8 * d * j + 4 * lt * j)
                                            + (4 * d * j + 4 * li * j) + 6 * d * f) + 2 * d * v
    return float(b * li * per_input + b * lt * per_step)
