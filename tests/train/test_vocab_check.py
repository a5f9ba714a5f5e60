"""The task vocabulary is checked against the model's vocab_size before the first step, with a
SentencePiece model shaped like mT5's (250,100 pieces, generated offline): accepted as it is,
refused with the 100 extra ids the old checkpoint-side module added (250,200 ids), and a
vocabulary far smaller than a pretrained model's table refused on request.

Imports xitt_tasks.vocab (the one module that builds vocabularies): this pins the contract
between the two layers, which the library code itself never crosses."""
import pytest
import seqio

from train.formats import vocabulary
from xitt_tasks import vocab

MT5_ROWS = 250_112


@pytest.fixture(scope="module")
def mt5_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("spm") / "mt5_shaped.model"
    assert vocab.write_mt5_shaped_model(path) == vocab.MT5_VOCAB_SIZE == 250_100
    return str(path)


def test_mt5_vocabulary_fits_the_mt5_embedding(mt5_model):
    v = vocab.get_vocabulary(mt5_model)
    assert vocabulary.check_vocab_fits_model(
        v, MT5_ROWS, max_unused_rows=vocabulary.MT5_ROW_PADDING) == 250_100


def test_extra_ids_added_twice_are_refused(mt5_model):
    doubled = seqio.SentencePieceVocabulary(mt5_model, extra_ids=100)
    with pytest.raises(ValueError) as err:
        vocabulary.check_vocab_fits_model(doubled, MT5_ROWS)
    msg = str(err.value)
    assert mt5_model in msg and "+100 extra ids" in msg and "250200 ids" in msg
    assert "vocab_size is 250112" in msg and "ids >= 250112 have no embedding row" in msg


def test_a_much_smaller_vocabulary_is_refused_only_for_pretrained_tables():
    cpu = vocab.get_vocabulary("cpu")
    assert vocabulary.check_vocab_fits_model(cpu, MT5_ROWS) == cpu.vocab_size  # from scratch
    with pytest.raises(ValueError, match=rf"has {cpu.vocab_size} ids, {MT5_ROWS - cpu.vocab_size}"
                                         r" fewer .* trained with\?"):
        vocabulary.check_vocab_fits_model(cpu, MT5_ROWS,
                                          max_unused_rows=vocabulary.MT5_ROW_PADDING)


def test_unreadable_vocabulary_is_named(tmp_path):
    bad = tmp_path / "broken.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="broken.model: not a readable vocabulary"):
        vocabulary.check_vocab_fits_model(seqio.SentencePieceVocabulary(str(bad)), MT5_ROWS)


def test_every_feature_of_a_registered_task_is_checked(mt5_model, tmp_path):
    name = "test_vocab_check_task"
    v = vocab.get_vocabulary(mt5_model)
    seqio.TaskRegistry.add(
        name, source=seqio.FunctionDataSource(lambda split, shuffle_files: None, ["train"]),
        output_features={"inputs": seqio.Feature(v), "targets": seqio.Feature(v)})
    try:
        assert vocabulary.check_task_vocabularies(name, MT5_ROWS) == {
            "inputs": 250_100, "targets": 250_100}
        with pytest.raises(ValueError, match=f"task '{name}' feature 'inputs'.*250100 ids.*"
                                             "vocab_size is 250000"):
            vocabulary.check_task_vocabularies(name, 250_000)
    finally:
        seqio.TaskRegistry.remove(name)
