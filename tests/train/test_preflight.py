"""Every file a run needs is checked before the first step, all missing ones named at once."""
import pytest
import seqio
import tensorflow as tf

from train import preflight

VOCAB = seqio.ByteVocabulary()
FEATURES = {"inputs": seqio.Feature(VOCAB), "targets": seqio.Feature(VOCAB)}


class _ListedSource(seqio.FunctionDataSource):
    """A source that lists its files the way the project's XittSource does."""

    def __init__(self, files):
        self.files = files
        super().__init__(lambda split, shuffle_files, seed=None: tf.data.Dataset.range(1),
                         splits=tuple(files))

    def required_files(self, split):
        return self.files[split]


def _register(name, source):
    seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(name, source=source, output_features=FEATURES)


def test_missing_train_validation_and_checkpoint_files_are_listed_together(tmp_path):
    (tmp_path / "train.tsv").write_text("x\n")
    _register("preflight_listed", _ListedSource({
        "train": [str(tmp_path / "train.tsv")],
        "validation": [str(tmp_path / "dev.tsv"), str(tmp_path / "dev-labels.lst")]}))
    with pytest.raises(FileNotFoundError) as info:
        preflight.check_run_files(mixture_or_task_name="preflight_listed",
                                  eval_split="validation",
                                  init_checkpoint=tmp_path / "checkpoint_1000000")
    message = info.value.strerror
    assert message.startswith("3 file(s) this run needs do not exist")
    for name in ("preflight_listed validation: " + str(tmp_path / "dev.tsv"),
                 str(tmp_path / "dev-labels.lst"),
                 "initial checkpoint: " + str(tmp_path / "checkpoint_1000000")):
        assert name in message
    assert "train.tsv" not in message
    (tmp_path / "dev.tsv").write_text("x\n")
    (tmp_path / "dev-labels.lst").write_text("1\n")
    (tmp_path / "checkpoint_1000000").mkdir()
    preflight.check_run_files(mixture_or_task_name="preflight_listed", eval_split="validation",
                              init_checkpoint=tmp_path / "checkpoint_1000000")


def test_seqio_file_sources_need_a_matching_file(tmp_path):
    (tmp_path / "train-00000.txt").write_text("a\n")
    _register("preflight_textline", seqio.TextLineDataSource({
        "train": str(tmp_path / "train-*.txt"), "validation": str(tmp_path / "dev-*.txt")}))
    assert preflight.missing_task_files("preflight_textline", "train") == []
    assert preflight.missing_task_files("preflight_textline", "validation") == [
        f"preflight_textline validation: {tmp_path}/dev-*.txt"]


def test_mixtures_check_each_task_and_sentencepiece_files(tmp_path):
    missing_model = str(tmp_path / "spm" / "mt5.model")
    sp_features = {"inputs": seqio.Feature(seqio.SentencePieceVocabulary(missing_model)),
                   "targets": seqio.Feature(VOCAB)}
    seqio.TaskRegistry.remove("preflight_sp")
    seqio.TaskRegistry.add("preflight_sp", source=_ListedSource({"train": []}),
                           output_features=sp_features)
    _register("preflight_other", _ListedSource({"train": [str(tmp_path / "b.jsonl")]}))
    seqio.MixtureRegistry.remove("preflight_mix")
    seqio.MixtureRegistry.add("preflight_mix", ["preflight_sp", "preflight_other"],
                              default_rate=1.0)
    with pytest.raises(FileNotFoundError) as info:
        preflight.check_run_files(mixture_or_task_name="preflight_mix", eval_split=None)
    assert f"preflight_other train: {tmp_path}/b.jsonl" in info.value.strerror
    assert f"vocabulary of preflight_mix: {missing_model}" in info.value.strerror


def test_data_fingerprint_names_files_and_sizes_not_directories(tmp_path):
    (tmp_path / "train.jsonl").write_text("{}\n{}\n")
    _register("preflight_fp", _ListedSource({"train": [str(tmp_path / "train.jsonl")]}))
    assert preflight.data_fingerprint("preflight_fp", ["train"]) == {
        "train": [["train.jsonl", 6]]}


def test_unregistered_task_is_named():
    with pytest.raises(ValueError, match="'no_such' is not registered"):
        preflight.check_run_files(mixture_or_task_name="no_such")
