"""A shuffled read of seqio's cache (`train/cached_source.py`): each host reads only its cache
files, draws a full seeded permutation of them per epoch (not seqio's file shuffle + 1,000-example
window), and the training iterator resumes from its saved state exactly, with a state of a few
counters instead of a shuffle window.

Caches are written without Beam, as in test_seqio_cache.py (`write_cache`, several files in
source order): an article-ordered synthetic task for the shuffle statistic, the shipped sample
of `xitt.xnli.train.en` / `xitt.inter.mnli` for the two-host cover and the resume.
"""
import os
from collections import Counter

import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf

from tests.train.test_seqio_cache import write_cache
from train import cached_source, input_pipeline, partitioning

ARTICLES, PER_ARTICLE, BATCH = 20, 200, 32  # SQuAD-like: ~200 questions per article
ARTICLE_TASK = "xitt_test_cached_articles"
ARTICLE_LENGTHS = {"inputs": 16, "targets": 8}
VOCAB = seqio.ByteVocabulary()
SAMPLE_TASK = "xitt.xnli.train.en"
SAMPLE_MIXTURE = "xitt_test_cached_sample_mixture"
SAMPLE_LENGTHS = {"inputs": 64, "targets": 8}


def _register_articles() -> seqio.Task:
    seqio.TaskRegistry.remove(ARTICLE_TASK)

    def fn(split, shuffle_files, seed=None):
        del split, shuffle_files, seed
        text = [f"a{a:02d} q{q:03d}" for a in range(ARTICLES) for q in range(PER_ARTICLE)]
        return tf.data.Dataset.from_tensor_slices({"inputs": text, "targets": text})

    features = {k: seqio.Feature(VOCAB, add_eos=True) for k in ("inputs", "targets")}
    return seqio.TaskRegistry.add(
        ARTICLE_TASK, source=seqio.FunctionDataSource(fn, splits=("train",)),
        preprocessors=[seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                       seqio.preprocessors.append_eos_after_trim],
        output_features=features)  # seqio's default window: 1,000 examples


@pytest.fixture()
def caches(tmp_path):
    """Writes caches on demand into tmp_path (one of seqio's cache dirs for the test) and
    forgets them afterwards: the xitt tasks are shared with the rest of the session."""
    import xitt_tasks  # noqa: F401  (registers the tasks; tests sit above xitt_tasks)

    before = list(seqio.utils.get_global_cache_dirs())
    seqio.add_global_cache_dirs([str(tmp_path)])
    written = []

    def write(name, num_files):
        task = seqio.get_mixture_or_task(name)
        task._cache_dir = None
        written.append(task)
        return write_cache(task, str(tmp_path), "train", num_files)

    yield write
    seqio.utils.set_global_cache_dirs(before)
    for task in written:
        task._cache_dir = None
    seqio.MixtureRegistry.remove(SAMPLE_MIXTURE)
    seqio.TaskRegistry.remove(ARTICLE_TASK)


def _mesh():
    return partitioning.create_mesh(devices=jax.devices()[:1])


def _article(tokens) -> int:
    return int(VOCAB.decode([int(t) for t in tokens if t > 1])[1:3])


def _mean_articles_per_batch(ds, num_batches):
    counts = [len({_article(row) for row in b["encoder_input_tokens"]})
              for b in ds.take(num_batches).as_numpy_iterator()]
    assert len(counts) == num_batches
    return float(np.mean(counts))


def _state_bytes(ds, directory) -> int:
    """Bytes of a tf.data iterator checkpoint after one batch."""
    directory.mkdir()
    it = iter(ds)
    next(it)
    prefix = tf.train.Checkpoint(ds=it).write(os.path.join(directory, "state"))
    return sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory)
               if f.startswith(os.path.basename(prefix)))


@pytest.mark.parametrize("num_files", [1, 4])
def test_cached_batches_draw_from_many_articles_unlike_seqios_window(caches, tmp_path,
                                                                     num_files):
    _register_articles()
    caches(ARTICLE_TASK, num_files)
    num_batches = ARTICLES * PER_ARTICLE // BATCH
    cfg = input_pipeline.DatasetConfig(ARTICLE_TASK, ARTICLE_LENGTHS, "train", BATCH,
                                       shuffle=True, seed=0, pack=False, use_cached=True)
    full_ds = input_pipeline.host_dataset(cfg, _mesh(), repeat=True)
    full = _mean_articles_per_batch(full_ds, num_batches)
    # Baseline: what host_dataset read before, seqio's own shuffled cached read (file order
    # shuffled, 16 files interleaved in blocks of 16, then a 1,000-example window).
    window_ds = seqio.get_dataset(
        ARTICLE_TASK, ARTICLE_LENGTHS, seqio.EncDecFeatureConverter(pack=False),
        use_cached=True, shuffle=True, seed=0, num_epochs=None,
        shard_info=seqio.ShardInfo(0, 1), verbose=False).batch(BATCH, drop_remainder=True)
    window = _mean_articles_per_batch(window_ds, num_batches)
    # 32 uniform draws from 20 articles: 20 * (1 - (19/20)**32) ~ 16.1 distinct articles.
    expected = ARTICLES * (1 - (1 - 1 / ARTICLES) ** BATCH)
    print(f"\n{num_files} file(s): distinct articles per batch of {BATCH}: full permutation "
          f"{full:.2f} (uniform {expected:.2f}), seqio window {window:.2f}")
    assert full == pytest.approx(expected, abs=0.7)
    assert full > window + 3.5
    # The state is a few counters; seqio's window state holds up to 1,000 examples.
    full_bytes = _state_bytes(full_ds, tmp_path / "full")
    window_bytes = _state_bytes(window_ds, tmp_path / "window")
    print(f"iterator state: full permutation {full_bytes} B, seqio window {window_bytes} B")
    assert full_bytes < 65_536 and 20 * full_bytes < window_bytes


def _token_rows(ds, feature="inputs"):
    """Each example's `feature` tokens (EOS dropped) as a tuple."""
    return [tuple(int(t) for t in ex[feature] if t != 1) for ex in ds.as_numpy_iterator()]


def _file_rows(path):
    out = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        ex = tf.train.Example.FromString(record)
        out.append(tuple(ex.features.feature["inputs"].int64_list.value))
    return out


def test_two_hosts_cover_every_cached_example_once_per_epoch_from_their_own_files(caches):
    cache_dir = caches(SAMPLE_TASK, 4)
    task = seqio.get_mixture_or_task(SAMPLE_TASK)
    files = sorted(tf.io.gfile.glob(os.path.join(cache_dir, "train.tfrecord-*")))
    assert len(files) == 4
    everything = Counter(r for f in files for r in _file_rows(f))
    assert sum(everything.values()) == 64
    shuffled = cached_source.shuffled_cached_provider(task)
    per_host = []
    for index in (0, 1):
        shard = seqio.ShardInfo(index, 2)
        mine, stride = cached_source.host_cache_files(task, "train", shard)
        assert mine == files[index::2] and not stride  # seqio's file sharding: i, i+2
        ds = shuffled.get_dataset(None, "train", shuffle=True, seed=11, shard_info=shard,
                                  num_epochs=2)
        rows = _token_rows(ds)
        own = Counter(r for f in mine for r in _file_rows(f))
        n = sum(own.values())
        assert len(rows) == 2 * n
        for epoch in (rows[:n], rows[n:]):
            assert Counter(epoch) == own  # only its files, each example once per epoch
        assert rows[:n] != rows[n:]  # a new permutation each epoch
        order = [r for f in mine for r in _file_rows(f)]
        assert rows[:n] != order
        per_host.append(rows[:n])
    assert Counter(per_host[0]) + Counter(per_host[1]) == everything


def test_fewer_files_than_hosts_shard_the_permutation(caches):
    caches(SAMPLE_TASK, 1)
    task = seqio.get_mixture_or_task(SAMPLE_TASK)
    shuffled = cached_source.shuffled_cached_provider(task)
    everything = Counter(_token_rows(task.get_dataset(None, "train", use_cached=True,
                                                      shuffle=False)))
    hosts = []
    for index in (0, 1):
        files, stride = cached_source.host_cache_files(task, "train", seqio.ShardInfo(index, 2))
        assert len(files) == 1 and stride
        hosts.append(Counter(_token_rows(shuffled.get_dataset(
            None, "train", shuffle=True, seed=3, shard_info=seqio.ShardInfo(index, 2)))))
    assert hosts[0] + hosts[1] == everything and sum(hosts[0].values()) == 32
    with pytest.raises(ValueError, match="needs a seed shared by every host"):
        shuffled.get_dataset(None, "train", shuffle=True, seed=None,
                             shard_info=seqio.ShardInfo(0, 2))


def _batches(name, count, start_step=0, restore_dir=None, save_dir=None, pack=True):
    cfg = input_pipeline.DatasetConfig(name, SAMPLE_LENGTHS, "train", 4, seed=0, pack=pack,
                                       use_cached=True)
    with input_pipeline.train_iterator(cfg, _mesh(), start_step, restore_dir) as it:
        out = [{k: np.asarray(v) for k, v in next(it).items()} for _ in range(count)]
        if save_dir is not None:
            assert it.save(save_dir) is not None
        return out, it.replayed_batches, it.restored_from


@pytest.mark.parametrize("name,pack", [(SAMPLE_TASK, False), (SAMPLE_TASK, True),
                                       (SAMPLE_MIXTURE, True)])
def test_shuffled_cached_stream_resumes_exactly_from_its_saved_state(caches, tmp_path, name,
                                                                     pack):
    caches(SAMPLE_TASK, 2)
    if name == SAMPLE_MIXTURE:
        caches("xitt.inter.mnli", 2)
        seqio.MixtureRegistry.remove(SAMPLE_MIXTURE)
        seqio.MixtureRegistry.add(SAMPLE_MIXTURE, [SAMPLE_TASK, "xitt.inter.mnli"],
                                  default_rate=1.0)
    # 40 batches of 4 rows cross several epochs of the 64 (or 128) cached examples.
    stream, _, _ = _batches(name, 40, pack=pack)
    _batches(name, 23, save_dir=tmp_path, pack=pack)
    resumed, replayed, restored_from = _batches(name, 17, start_step=23, restore_dir=tmp_path,
                                                pack=pack)
    assert replayed == 0 and restored_from is not None
    for a, b in zip(resumed, stream[23:], strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # and it is not the unshuffled stream
    ordered_cfg = input_pipeline.DatasetConfig(name, SAMPLE_LENGTHS, "train", 4, shuffle=False,
                                               pack=pack, use_cached=True)
    with input_pipeline.train_iterator(ordered_cfg, _mesh()) as it:
        first = np.asarray(next(it)["decoder_target_tokens"])
    assert not np.array_equal(first, stream[0]["decoder_target_tokens"])
