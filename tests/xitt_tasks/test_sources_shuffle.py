"""File sources at real size: a full seeded shuffle (not seqio's 1,000-example window) and a
two-host read that covers every example exactly once per epoch.

The file is SQuAD-shaped and ordered by article, as the real SQuAD is: with the window, the
examples of a batch come from the few articles inside the window.
"""
import json

import numpy as np
import pytest
import seqio

from xitt_tasks import sources
from xitt_tasks.targets_qa import read_qa

# ~200 questions per article, as in SQuAD v1.1 (87,599 questions, 442 articles).
ARTICLES, PER_ARTICLE, BATCH, WINDOW = 20, 200, 32, 1000


@pytest.fixture()
def squad_source(tmp_path, monkeypatch):
    data = {"version": "1.1", "data": [
        {"title": f"article{a}", "paragraphs": [{
            "context": f"Text of article {a} .",
            "qas": [{"id": f"a{a}-q{q}", "question": f"Question {q} ?",
                     "answers": [{"text": "Text", "answer_start": 0}]}
                    for q in range(PER_ARTICLE)]}]}
        for a in range(ARTICLES)]}
    (tmp_path / "squad").mkdir()
    (tmp_path / "squad" / "train.json").write_text(json.dumps(data))
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(sources.SOURCE_ENV, "files")
    return sources.XittSource("qa", {"train": "squad/train.json"}, read_qa)


def _articles(ds, count):
    ids = [ex["id"].decode() for ex in ds.take(count).as_numpy_iterator()]
    return [int(i.split("-")[0][1:]) for i in ids]


def _mean_articles_per_batch(articles):
    batches = np.asarray(articles).reshape(-1, BATCH)
    return float(np.mean([len(set(b)) for b in batches]))


def test_batches_draw_from_many_articles_unlike_the_window(squad_source):
    n = ARTICLES * PER_ARTICLE // BATCH * BATCH
    full = _mean_articles_per_batch(_articles(
        squad_source.get_dataset("train", shuffle=True, seed=0), n))
    # Baseline: the file order through seqio's default 1,000-example shuffle window.
    window = _mean_articles_per_batch(_articles(
        squad_source.get_dataset("train", shuffle=False).shuffle(WINDOW, seed=0), n))
    # Expected distinct articles among 32 uniform draws from 20: 20 * (1 - (19/20)**32) ~ 16.1;
    # the window holds ~5 articles at a time (plus stragglers): ~10.9 measured for seeds 0-2.
    expected = ARTICLES * (1 - (1 - 1 / ARTICLES) ** BATCH)
    assert full == pytest.approx(expected, abs=0.7)
    assert window < 12.5
    assert full > window + 3.5


def test_each_epoch_is_a_new_permutation_from_the_seed(squad_source):
    n = ARTICLES * PER_ARTICLE
    ds = squad_source.get_dataset("train", shuffle=True, seed=5).repeat(2)
    ids = [ex["id"] for ex in ds.as_numpy_iterator()]
    first, second = ids[:n], ids[n:]
    assert sorted(first) == sorted(second) and len(set(first)) == n
    assert first != second
    again = [ex["id"] for ex in squad_source.get_dataset(
        "train", shuffle=True, seed=5).repeat(2).as_numpy_iterator()]
    assert again == ids  # deterministic for the seed
    other = [ex["id"] for ex in squad_source.get_dataset(
        "train", shuffle=True, seed=6).as_numpy_iterator()]
    assert other != first


def test_two_hosts_cover_every_example_exactly_once_per_epoch(squad_source):
    n = ARTICLES * PER_ARTICLE
    everything = sorted(ex["id"] for ex in squad_source.get_dataset(
        "train", shuffle=False).as_numpy_iterator())
    per_host = []
    for index in (0, 1):
        ds = squad_source.get_dataset("train", shuffle=True, seed=11,
                                      shard_info=seqio.ShardInfo(index, 2)).repeat(2)
        per_host.append([ex["id"] for ex in ds.as_numpy_iterator()])
    for epoch in (0, 1):
        half = n // 2
        union = per_host[0][epoch * half:(epoch + 1) * half] + \
            per_host[1][epoch * half:(epoch + 1) * half]
        assert sorted(union) == everything  # each example once, none twice
    # and each host's shard is a mix of articles, not a contiguous half of the file
    assert _mean_articles_per_batch(
        [int(i.decode().split("-")[0][1:]) for i in per_host[0][:n // 2 // BATCH * BATCH]]) > 12


def test_sharded_shuffle_without_a_seed_is_refused(squad_source):
    with pytest.raises(ValueError, match="needs a seed shared by every host"):
        squad_source.get_dataset("train", shuffle=True, seed=None,
                                 shard_info=seqio.ShardInfo(0, 2))


def test_malformed_file_fails_when_the_dataset_is_created(squad_source, tmp_path):
    (tmp_path / "squad" / "train.json").write_text('{"version": "1.1", "data": [{"title": 1,')
    with pytest.raises(ValueError, match=r"squad/train\.json"):
        squad_source.get_dataset("train", shuffle=True, seed=0)


def test_required_files_and_the_layout_hint(squad_source, tmp_path):
    assert squad_source.required_files("train") == [str(tmp_path / "squad" / "train.json")]
    (tmp_path / "squad" / "train.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"layout in xitt_tasks/data/README\.md"):
        squad_source.get_dataset("train")
    from pathlib import Path
    assert (Path(sources.__file__).parent / "data" / "README.md").exists()
