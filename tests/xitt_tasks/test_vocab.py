"""The project vocabulary: the shipped CPU model is reproducible, mT5-compatible in its special
ids, small, and round-trips every sample language."""
import pytest
import sentencepiece as spm
import seqio

from xitt_tasks import languages as L
from xitt_tasks import vocab
from xitt_tasks.data import make_sample
from xitt_tasks.data.lexicon import LEXICONS


def test_regenerating_gives_the_shipped_model_bytes():
    assert vocab.train_cpu_model(make_sample.build().texts) == vocab.CPU_MODEL_PATH.read_bytes()


def test_special_ids_and_size():
    sp = spm.SentencePieceProcessor(model_file=str(vocab.CPU_MODEL_PATH))
    assert [sp.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    v = vocab.get_vocabulary("cpu")
    assert (v.pad_id, v.eos_id, v.unk_id) == (0, 1, 2)
    assert v.vocab_size == sp.get_piece_size() + vocab.CPU_EXTRA_IDS <= vocab.CPU_MAX_VOCAB
    # Sentinels at the end, counted down from the last id, as in mT5.
    assert v.decode([v.vocab_size - 1]) == "<extra_id_0>"


def test_every_sample_text_round_trips_without_unknowns():
    v = vocab.get_vocabulary("cpu")
    texts = make_sample.build().texts
    for text in texts:
        ids = v.encode(text)
        assert v.decode(ids) == text
        assert v.unk_id not in ids
    for lang in L.XTREME_R_LANGUAGES:
        lex = LEXICONS[lang]
        sentence = " ".join([lex.persons[0], lex.verbs[0], *lex.nouns, lex.places[1], "?"])
        assert v.decode(v.encode(sentence)) == sentence, lang


def test_unseen_text_falls_back_to_bytes():
    v = vocab.get_vocabulary("cpu")
    text = "Ünïcödé 😀 ქართული"
    assert v.decode(v.encode(text)) == text


def test_setting_selects_the_vocabulary(monkeypatch, tmp_path):
    monkeypatch.delenv(vocab.VOCAB_ENV, raising=False)
    assert vocab.vocabulary_spec() == "cpu"
    assert vocab.get_vocabulary() is vocab.get_vocabulary("cpu")
    mt5 = vocab.get_vocabulary("mt5")  # not loaded: no network is touched
    assert isinstance(mt5, seqio.SentencePieceVocabulary)
    assert mt5.sentencepiece_model_file == vocab.MT5_VOCAB_PATH and mt5.extra_ids == 0
    copy = tmp_path / "spm.model"
    copy.write_bytes(vocab.CPU_MODEL_PATH.read_bytes())
    monkeypatch.setenv(vocab.VOCAB_ENV, str(copy))
    assert vocab.get_vocabulary().sentencepiece_model_file == str(copy)
    assert vocab.get_vocabulary().encode("John") == vocab.get_vocabulary("cpu").encode("John")
    monkeypatch.setenv(vocab.VOCAB_ENV, str(tmp_path / "missing.model"))
    with pytest.raises(ValueError, match="XITT_VOCAB.*missing.model.*expected 'mt5', 'cpu'"):
        vocab.get_vocabulary()


def test_mt5_shaped_model_yields_250100_ids(tmp_path):
    # The released model holds its 100 sentinels: read with no extra ids, like mT5's tasks.
    path = tmp_path / "mt5_shaped.model"
    assert vocab.write_mt5_shaped_model(path) == 250_100
    sp = spm.SentencePieceProcessor(model_file=str(path))
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    v = vocab.get_vocabulary(str(path))
    assert v.extra_ids == 0 and v.vocab_size == vocab.MT5_VOCAB_SIZE == 250_100
    assert v.decode([250_099]) == "<extra_id_0>" and v.decode([250_000]) == "<extra_id_99>"
    assert v.encode("w5 w17") == [8, 20]  # ordinary pieces after pad, eos, unk
