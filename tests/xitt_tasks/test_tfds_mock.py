"""TFDS-backed tasks read pinned builders through seqio with no download (XITT_SOURCE=tfds)."""
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

import xitt_tasks  # noqa: F401
from xitt_tasks import sources
from xitt_tasks.targets_qa import TYDIQA_NAMES

LENGTHS = {"inputs": 32, "targets": 16}
MISSING_DIR = "/nonexistent-tfds-dir"
TFDS_TASKS = sorted(n for n in seqio.TaskRegistry.names() if n.startswith("xitt.")
                    and getattr(seqio.get_mixture_or_task(n).source, "tfds", None) is not None)


def _builder(task_name):
    return seqio.get_mixture_or_task(task_name).source.tfds.name.split(":")[0].split("/")[0]


# One task per builder (all configs of a builder share its adapter) by default.
ONE_PER_BUILDER = sorted({_builder(n): n for n in TFDS_TASKS
                          if _builder(n) != "tydi_qa"}.values())


@pytest.fixture(autouse=True)
def tfds_source(monkeypatch):
    monkeypatch.setenv(sources.SOURCE_ENV, "tfds")
    monkeypatch.setenv("TFDS_DATA_DIR", MISSING_DIR)


def _examples(name, n=1):
    task = seqio.get_mixture_or_task(name)
    assert task.source.resolved_kind() == "tfds"
    split = task.splits[0]
    ds = seqio.get_dataset(name, LENGTHS, feature_converter=seqio.EncDecFeatureConverter(
        pack=False), dataset_split=split, shuffle=False)
    return list(ds.take(n).as_numpy_iterator())


def _check(name):
    examples = _examples(name)
    assert examples, f"{name} yielded nothing under mock data"
    assert examples[0]["encoder_input_tokens"].any()


def test_tfds_backed_tasks_cover_each_builder():
    assert {_builder(n) for n in TFDS_TASKS} >= {
        "anli", "multi_nli", "snli", "glue", "squad", "hellaswag", "cosmos_qa", "xnli",
        "super_glue", "xtreme_pos", "wikiann", "xquad", "mlqa", "tydi_qa"}


@pytest.mark.parametrize("name", ONE_PER_BUILDER)
def test_one_task_per_builder_under_mock_data(name):
    # max_value keeps mock integer labels inside each task's choice range.
    with tfds.testing.mock_data(num_examples=2, max_value=2, data_dir=MISSING_DIR):
        _check(name)


def test_xnli_picks_the_hypothesis_of_its_language():
    def as_dataset(self, *args, **kwargs):
        langs = ["de", "fr"]
        ex = {"premise": {lang: f"p-{lang}" for lang in self.info.features["premise"].languages},
              "hypothesis": {"language": langs, "translation": ["h-de", "h-fr"]}, "label": 2}
        return tf.data.Dataset.from_tensors(ex)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset, data_dir=MISSING_DIR):
        ex = next(seqio.get_mixture_or_task("xitt.xnli.fr").get_dataset(
            LENGTHS, "validation", shuffle=False).as_numpy_iterator())
    assert ex["inputs_pretokenized"] == b"xnli: premise: p-fr hypothesis: h-fr"
    assert ex["targets_pretokenized"] == b"contradiction"


def _tydiqa_as_dataset(self, *args, **kwargs):
    ids = [f"{name}-{i}" for i, name in enumerate(TYDIQA_NAMES.values())]
    return tf.data.Dataset.from_tensor_slices({
        "id": ids, "title": ["t"] * len(ids), "context": [f"ctx {i}" for i in ids],
        "question": ["q"] * len(ids),
        "answers": {"text": [["ctx"]] * len(ids), "answer_start": [[0]] * len(ids)}})


def test_tydiqa_keeps_only_its_language():
    with tfds.testing.mock_data(as_dataset_fn=_tydiqa_as_dataset, data_dir=MISSING_DIR):
        rows = list(seqio.get_mixture_or_task("xitt.tydiqa.ko").source.get_dataset(
            "validation", shuffle=False).as_numpy_iterator())
        _check("xitt.tydiqa.train.en")
    assert [r["id"] for r in rows] == [b"korean-5"]


def test_mock_never_touches_the_missing_data_dir():
    import os
    with tfds.testing.mock_data(num_examples=1, data_dir=MISSING_DIR):
        _check("xitt.inter.mnli")
    assert not os.path.exists(MISSING_DIR)


@pytest.mark.slow
@pytest.mark.parametrize("name", TFDS_TASKS)
def test_every_tfds_task_under_mock_data(name):
    if _builder(name) == "tydi_qa":
        with tfds.testing.mock_data(as_dataset_fn=_tydiqa_as_dataset, data_dir=MISSING_DIR):
            _check(name)
        return
    with tfds.testing.mock_data(num_examples=2, max_value=2, data_dir=MISSING_DIR):
        _check(name)
