"""Tiny seqio tasks for runtime tests: copy and reverse synthetic sentences.

Byte vocabulary (pad 0, eos 1, unk 2, bytes from 3; 259 ids, fits the tiny model's 2048), no
files and no network. Importing this module registers the tasks.
"""
import numpy as np
import seqio
import tensorflow as tf

COPY_TASK = "xitt_test_copy"
REVERSE_TASK = "xitt_test_reverse"
MIXTURE = "xitt_test_copy_and_reverse"
VOCAB = seqio.ByteVocabulary()
SPLIT_SIZES = {"train": 384, "validation": 48}
_WORDS = ("ab", "ba", "cab", "dab", "bad", "ace", "dec", "fade", "bead", "cafe", "deed", "face")


def sentences(split: str) -> list[str]:
    """Deterministic sentences of 2 to 5 words; different per split."""
    rng = np.random.RandomState({"train": 0, "validation": 1}[split])
    return [" ".join(rng.choice(_WORDS, size=rng.randint(2, 6)))
            for _ in range(SPLIT_SIZES[split])]


def _dataset_fn(reverse: bool):
    def fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
        del shuffle_files, seed
        src = sentences(split)
        tgt = [s[::-1] for s in src] if reverse else src
        return tf.data.Dataset.from_tensor_slices({"inputs": src, "targets": tgt})
    return fn


def _register() -> None:
    features = {"inputs": seqio.Feature(VOCAB, add_eos=True),
                "targets": seqio.Feature(VOCAB, add_eos=True)}
    for name, reverse in ((COPY_TASK, False), (REVERSE_TASK, True)):
        if name in seqio.TaskRegistry.names():
            continue
        seqio.TaskRegistry.add(
            name,
            source=seqio.FunctionDataSource(_dataset_fn(reverse), splits=tuple(SPLIT_SIZES)),
            preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
            output_features=features,
            shuffle_buffer_size=1000,
        )
    if MIXTURE not in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.add(MIXTURE, [COPY_TASK, REVERSE_TASK], default_rate=1.0)


_register()
