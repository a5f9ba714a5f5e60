"""The baseline: transformers' MT5ForConditionalGeneration on PyTorch (CPU), same weights.

Weights come from the Hugging Face directory `jax_side.write_weights` wrote (so both
frameworks start from identical numbers); the optimizer is transformers' Adafactor with the
t5x settings (factored, update clipping 1.0, parameter scale, decay 0.8, constant LR).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks import timing
from benchmarks.jax_side import LEARNING_RATE, random_batch
from benchmarks.shapes import Shape


def _model(weights_dir: str, train: bool):
    import transformers

    config = transformers.MT5Config.from_pretrained(weights_dir)
    config.tie_word_embeddings = False  # transformers 5 forces True; mT5 is untied
    model = transformers.MT5ForConditionalGeneration.from_pretrained(weights_dir, config=config)
    # Untied config: transformers then leaves the encoder/decoder input embeddings out of the
    # checkpoint mapping (freshly initialised); mT5 ties them to `shared`.
    model.set_input_embeddings(model.shared)
    if model.encoder.embed_tokens.weight.data_ptr() != model.shared.weight.data_ptr():
        raise RuntimeError("encoder input embedding is not tied to `shared`")
    if model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr():
        raise RuntimeError(f"{weights_dir}: transformers tied lm_head to the embedding; "
                           "mT5 is untied")
    return model.train() if train else model.eval()


def train(shape: Shape, weights_dir: str, warmup: int, reps: int) -> dict[str, Any]:
    import torch
    from transformers.optimization import Adafactor

    model = _model(weights_dir, train=True)
    opt = Adafactor(model.parameters(), lr=LEARNING_RATE, relative_step=False,
                    scale_parameter=True, warmup_init=False, clip_threshold=1.0,
                    decay_rate=-0.8, beta1=None, weight_decay=0.0)
    b = {k: torch.from_numpy(np.asarray(v)) for k, v in random_batch(shape).items()}
    inputs = dict(input_ids=b["encoder_input_tokens"].long(),
                  attention_mask=torch.ones_like(b["encoder_input_tokens"]),
                  decoder_input_ids=b["decoder_input_tokens"].long(),
                  labels=b["decoder_target_tokens"].long())
    losses = []

    def one_step():
        opt.zero_grad(set_to_none=True)
        loss = model(**inputs).loss
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))

    seconds = timing.repeat(one_step, warmup, reps)
    from benchmarks.jax_side import peak_rss_bytes

    return {"step_seconds": seconds, "first_loss_per_token": losses[0],
            "threads": torch.get_num_threads(), "peak_rss_bytes": peak_rss_bytes()}


def decode(weights_dir: str, encoder_input_tokens: list, decode_length: int, warmup: int,
           reps: int) -> dict[str, Any]:
    """Greedy `generate` with the same stop rule as ours (EOS, or decode_length tokens)."""
    import torch

    model = _model(weights_dir, train=False)
    ids = torch.tensor(encoder_input_tokens, dtype=torch.long)
    out = {}

    def call():
        with torch.no_grad():
            out["ids"] = model.generate(input_ids=ids, attention_mask=ids > 0, do_sample=False,
                                        num_beams=1, max_new_tokens=decode_length,
                                        min_new_tokens=0).numpy()

    seconds = timing.repeat(call, warmup, reps)

    def encode():
        with torch.no_grad():
            model.encoder(input_ids=ids, attention_mask=ids > 0)

    encoder_seconds = timing.repeat(encode, 1, reps)
    generated = out["ids"][:, 1:]  # drop the decoder start token 0
    tokens = np.zeros((ids.shape[0], decode_length), np.int64)
    tokens[:, :generated.shape[1]] = generated
    return {"seconds": seconds, "encoder_seconds": encoder_seconds, "tokens": tokens.tolist()}


def peak_matmul(dtype: str, n: int, reps: int) -> dict[str, Any]:
    import torch

    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    a = torch.randn(n, n).to(dt)
    b = torch.randn(n, n).to(dt)
    seconds = timing.repeat(lambda: torch.matmul(a, b), 2, reps)
    return {"seconds": seconds, "flops": 2.0 * n ** 3}
