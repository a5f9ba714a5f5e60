"""The project vocabulary, chosen by one setting: $XITT_VOCAB (default `cpu`).

- `mt5`: the released mT5 SentencePiece model (250,000 pieces + 100 sentinels baked into the
  model, 250,100 ids; mT5's own tasks build it as `SentencePieceVocabulary(path)` with no
  extra ids, and so do we). Needs access to gs:// (or copy it and pass the path).
- `cpu` (default): a small multilingual SentencePiece model shipped in xitt_tasks/vocab/,
  trained deterministically on the sample data; pad 0, eos 1, unk 2 like mT5, byte fallback,
  plus 100 extra ids (sentinels) so that the whole vocabulary is at most 2,048 ids.
- any other value: a path to a SentencePiece model, used like the mT5 one (no extra ids added).

Real runs set XITT_VOCAB=mt5 (or a local copy's path); the default exists for offline tests and
the CPU study, whose models are trained from scratch with it.

This is the only module that builds vocabularies, for tasks and checkpoints alike; the runtime
takes the task's vocabulary object and checks that it fits the model
(`train.formats.vocabulary.check_vocab_fits_model`). `write_mt5_shaped_model` writes an offline
stand-in with the released model's shape (250,100 pieces, same special and sentinel ids).
"""

import functools
import io
import os
from pathlib import Path

import seqio

VOCAB_ENV = "XITT_VOCAB"
DEFAULT_VOCAB = "cpu"
MT5_VOCAB_PATH = "gs://t5-data/vocabs/mc4.250000.100extra/sentencepiece.model"
MT5_PIECES = 250_000  # ordinary pieces, pad/eos/unk included
MT5_SENTINELS = 100  # <extra_id_99> ... <extra_id_0>, the model's last pieces
MT5_VOCAB_SIZE = MT5_PIECES + MT5_SENTINELS  # 250,100 ids (the embedding has 250,112 rows)
CPU_MODEL_PATH = Path(__file__).resolve().parent / "vocab" / "cpu_sentencepiece.model"
CPU_EXTRA_IDS = 100
CPU_MAX_VOCAB = 2048
# Requested piece count; the unigram trainer may return fewer on the tiny corpus.
CPU_PIECES = CPU_MAX_VOCAB - CPU_EXTRA_IDS


def vocabulary_spec(name_or_path: str | None = None) -> str:
    """The spec in force: the argument, else $XITT_VOCAB, else 'cpu'."""
    return name_or_path or os.environ.get(VOCAB_ENV) or DEFAULT_VOCAB


def get_vocabulary(name_or_path: str | None = None) -> seqio.SentencePieceVocabulary:
    """The seqio vocabulary for 'mt5', 'cpu' or a SentencePiece model path (see module doc)."""
    return _vocabulary(vocabulary_spec(name_or_path))


@functools.cache
def _vocabulary(spec: str) -> seqio.SentencePieceVocabulary:
    if spec == "mt5":
        return seqio.SentencePieceVocabulary(MT5_VOCAB_PATH)
    if spec == "cpu":
        if not CPU_MODEL_PATH.is_file():
            raise FileNotFoundError(
                f"the shipped CPU vocabulary is missing: {CPU_MODEL_PATH} (regenerate it with "
                "`python -m xitt_tasks.data.make_sample`)")
        return seqio.SentencePieceVocabulary(str(CPU_MODEL_PATH), extra_ids=CPU_EXTRA_IDS)
    if "://" not in spec and not os.path.isfile(spec):
        raise ValueError(f"${VOCAB_ENV} / vocabulary {spec!r}: expected 'mt5', 'cpu' or the path "
                         "of a SentencePiece model file, and no such file exists")
    return seqio.SentencePieceVocabulary(spec)


def train_cpu_model(sentences: list[str]) -> bytes:
    """Trains the CPU SentencePiece model on `sentences` (the sample data's texts, in
    generation order: `xitt_tasks.data.make_sample`, which regenerates both); same corpus, same
    bytes (single-threaded)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        model_type="unigram",
        vocab_size=CPU_PIECES,
        hard_vocab_limit=False,
        character_coverage=1.0,
        byte_fallback=True,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        normalization_rule_name="identity",  # exact round trips (NFKC rewrites Thai)
        minloglevel=2,
    )
    return model.getvalue()


def write_cpu_model(sentences: list[str], path: Path = CPU_MODEL_PATH) -> int:
    """Regenerates the shipped model from `sentences` atomically; returns its piece count."""
    import sentencepiece as spm

    data = train_cpu_model(sentences)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    _vocabulary.cache_clear()
    return spm.SentencePieceProcessor(model_proto=data).get_piece_size()



def write_mt5_shaped_model(path: Path) -> int:
    """Write a SentencePiece model shaped like the released mT5 one, built offline from its
    protobuf (training 250,000 pieces would take long): pad 0, eos 1, unk 2, no bos,
    250,000 pieces, then the 100 sentinels as user-defined pieces ending with <extra_id_0>.
    Returns the piece count. For tests of code that must handle the real vocabulary's size."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = pb.ModelProto()
    model.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    model.trainer_spec.vocab_size = MT5_VOCAB_SIZE
    model.trainer_spec.pad_id, model.trainer_spec.eos_id = 0, 1
    model.trainer_spec.unk_id, model.trainer_spec.bos_id = 2, -1
    model.normalizer_spec.name = "identity"
    model.normalizer_spec.add_dummy_prefix = True
    piece = pb.ModelProto.SentencePiece
    for text, kind in (("<pad>", piece.CONTROL), ("</s>", piece.CONTROL),
                       ("<unk>", piece.UNKNOWN)):
        model.pieces.add(piece=text, type=kind, score=0.0)
    for i in range(MT5_PIECES - 3):
        model.pieces.add(piece=f"\u2581w{i}", score=-i / 1000.0)
    for i in reversed(range(MT5_SENTINELS)):
        model.pieces.add(piece=f"<extra_id_{i}>", type=piece.USER_DEFINED, score=0.0)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(model.SerializeToString())
    os.replace(tmp, path)
    return len(model.pieces)
