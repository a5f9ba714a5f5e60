"""`xitt.mc4`: every language sampled with exponent 0.3 over its size, as mT5 did; span-corrupted
examples; the `*_mlm` mixtures; the TFDS path under `tfds.testing.mock_data` (no download)."""
import collections
import json

import pytest
import seqio
import tensorflow_datasets as tfds

import xitt_tasks  # noqa: F401
from xitt_tasks import intermediate, mc4, sources
from xitt_tasks.data import make_sample

LENGTHS = {"inputs": 64, "targets": 16}


def _source() -> mc4.Mc4Source:
    return seqio.get_mixture_or_task(mc4.TASK).source


def test_sample_corpus_languages_and_weights():
    src = _source()
    assert src.resolved_kind() == "files"
    assert src.sizes("train") == make_sample.MC4_DOCS
    w = mc4.language_weights(src.sizes("train"))
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["en"] / w["sw"] == pytest.approx((48 / 4) ** 0.3)  # not 12x: flattened by 0.3
    with pytest.raises(ValueError, match="needs documents"):
        mc4.language_weights({"en": 3, "xx": 0})


def test_training_stream_samples_languages_by_weight():
    src = _source()
    lang_of = {}
    for (lang, _), paths in src._files().items():
        for line in paths[0].read_text(encoding="utf-8").splitlines():
            lang_of[json.loads(line)["text"]] = lang
    n = 3000
    ds = src.get_dataset("train", shuffle=True, seed=5).take(n)
    counts = collections.Counter(lang_of[t.decode()] for t in
                                 ds.map(lambda ex: ex["text"]).as_numpy_iterator())
    for lang, w in mc4.language_weights(src.sizes("train")).items():
        assert abs(counts[lang] / n - w) < 0.03, (lang, counts[lang] / n, w)
    validation = list(src.get_dataset("validation", shuffle=False).as_numpy_iterator())
    assert len(validation) == src.count("validation") == 2 * len(make_sample.MC4_DOCS)


def test_mc4_task_yields_span_corrupted_examples():
    task = seqio.get_mixture_or_task(mc4.TASK)
    vocab = task.output_features["targets"].vocabulary
    ds = task.get_dataset(LENGTHS, "train", shuffle=True, seed=1)
    for ex in ds.take(4).as_numpy_iterator():
        assert len(ex["inputs"]) <= LENGTHS["inputs"] and len(ex["targets"]) <= 16
        assert ex["inputs"][-1] == ex["targets"][-1] == 1  # EOS
        assert ex["targets"][0] == vocab.vocab_size - 1  # <extra_id_0>
        assert vocab.vocab_size - 1 in ex["inputs"].tolist()


def test_mlm_mixture_for_every_intermediate_condition():
    mc4_task = seqio.get_mixture_or_task(mc4.TASK)
    for name in (*intermediate.INTERMEDIATE_TASKS, "multitask"):
        mixture = seqio.get_mixture_or_task(mc4.mlm_mixture_name(name))
        inter = seqio.get_mixture_or_task(intermediate.PREFIX + name)
        assert mixture.get_rate(mc4_task) == pytest.approx(mc4.MLM_SHARE)
        own = sum(mixture.get_rate(t) for t in mixture.tasks if t is not mc4_task)
        assert own == pytest.approx(1 - mc4.MLM_SHARE), name
        members = inter.tasks if isinstance(inter, seqio.Mixture) else [inter]
        assert {t.name for t in mixture.tasks} == {mc4.TASK, *(t.name for t in members)}
    with pytest.raises(ValueError, match="strictly between"):
        mc4.register(share=1.0)


def test_bad_files_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="XITT_SOURCE=tfds"):
        mc4.Mc4Source().languages()
    shard = tmp_path / mc4.FILE_DIR / "c4-de.tfrecord-00000-of-00001.json"
    shard.parent.mkdir(parents=True)
    shard.write_text('{"text": "Hallo Welt"}\n{"url": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"c4-de\.tfrecord-00000-of-00001\.json:2: expected"):
        mc4.Mc4Source().sizes("train")


def test_tfds_path_reads_the_pinned_builder_under_mock_data(monkeypatch):
    monkeypatch.setenv(sources.SOURCE_ENV, "tfds")
    assert len(mc4._tfds_languages()) == 107 and "sw" in mc4._tfds_languages()
    assert mc4.TFDS_NAME == "c4/multilingual:3.1.0"
    # Mock data has no split statistics: stand in for the prepared builder's split sizes.
    monkeypatch.setattr(mc4, "_tfds_languages", lambda: ("de", "sw"))
    def split_size(self, split):
        return 1000 if self.tfds_dataset._split_map[split].startswith("de") else 10

    monkeypatch.setattr(seqio.TfdsDataSource, "num_input_examples", split_size)
    src = mc4.Mc4Source()
    assert src.resolved_kind() == "tfds" and src.sizes("train") == {"de": 1000, "sw": 10}
    with tfds.testing.mock_data(num_examples=3, data_dir="/nonexistent-tfds-dir"):
        ds = seqio.get_mixture_or_task(mc4.TASK).get_dataset(LENGTHS, "train", shuffle=True,
                                                             seed=0)
        examples = list(ds.take(4).as_numpy_iterator())
    assert len(examples) == 4 and all(ex["targets"].size for ex in examples)


def test_required_files_for_the_preflight_check(tmp_path, monkeypatch):
    src = _source()
    assert len(src.required_files("validation")) == len(make_sample.MC4_DOCS)
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path))
    assert src.required_files("train") == [str(tmp_path / mc4.FILE_DIR)]
    monkeypatch.setenv(sources.SOURCE_ENV, "tfds")
    assert src.required_files("train") == []


def test_gzipped_release_shards_are_read(tmp_path, monkeypatch):
    import gzip

    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path))
    folder = tmp_path / mc4.FILE_DIR
    folder.mkdir(parents=True)
    for i, texts in enumerate((["a b", "c d"], ["e f"])):
        lines = "".join(json.dumps({"text": t, "url": "u"}) + "\n" for t in texts)
        (folder / f"c4-sw.tfrecord-0000{i}-of-00002.json.gz").write_bytes(
            gzip.compress(lines.encode("utf-8")))
    src = mc4.Mc4Source()
    assert src.languages() == ("sw",) and src.sizes("train") == {"sw": 3}
    ds = src.get_dataset("train", shuffle=False).take(3).map(lambda ex: ex["text"])
    texts = [t.decode() for t in ds.as_numpy_iterator()]
    assert sorted(texts) == ["a b", "c d", "e f"]
