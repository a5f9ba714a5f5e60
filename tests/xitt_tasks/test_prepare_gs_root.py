"""A gs:// data root is read by the registered tasks through xitt_common.fs (etils.epath).

GCS is emulated by `prepare_gcs` (epath's TF backend with gfile served from TF's ram://), so
the tasks, sources, readers and epath run exactly as for a bucket."""
import uuid

import numpy as np
import pytest
import seqio

from tests.xitt_tasks import prepare_gcs
from xitt_common import fs
from xitt_tasks import sources

LENGTHS = {"inputs": 512, "targets": 64}
# One task per reader family: TSV (quoted), CoNLL, SQuAD JSON, JSONL, parallel lines, CSV.
TASKS = [("xitt.xnli.de", "validation"), ("xitt.udpos.de", "validation"),
         ("xitt.xquad.de", "test"), ("xitt.xcopa.et", "validation"),
         ("xitt.inter.cosmos_qa", "train")]


@pytest.fixture()
def gs_root(monkeypatch):
    prepare_gcs.install(monkeypatch)
    url = f"gs://fake-bucket-{uuid.uuid4().hex[:8]}/xtreme"
    assert prepare_gcs.upload(str(sources.SAMPLE_ROOT), url) > 50
    return url


def _examples(name, split):
    ds = seqio.get_mixture_or_task(name).get_dataset(LENGTHS, split, shuffle=False)
    return [{k: v for k, v in ex.items() if k.endswith("_pretokenized")}
            for ex in ds.as_numpy_iterator()]


def test_gs_data_root_is_read_by_the_registered_tasks(gs_root, monkeypatch):
    local = {t: _examples(*t) for t in TASKS}
    monkeypatch.setenv(sources.DATA_DIR_ENV, gs_root)
    assert str(sources.data_root()) == gs_root and not fs.is_local(sources.data_root())
    for task, split in TASKS:
        source = seqio.get_mixture_or_task(task).source
        assert all(str(p).startswith(gs_root) for p in source.paths(split)), task
        remote = _examples(task, split)
        assert remote and len(remote) == len(local[(task, split)]), task
        for a, b in zip(remote, local[(task, split)]):
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), task


def test_gs_missing_file_names_the_gs_path(gs_root, monkeypatch):
    monkeypatch.setenv(sources.DATA_DIR_ENV, gs_root + "/nothing-here")
    with pytest.raises(FileNotFoundError, match=f"{gs_root}/nothing-here/xnli/dev-de.tsv"):
        _examples("xitt.xnli.de", "validation")


def test_fs_lines_keep_crlf_and_last_line_on_gs(gs_root):
    url = gs_root + "/crlf.txt"
    fs.write_bytes_atomic(url, b"a\r\nb\nc")
    assert list(fs.lines(url)) == [b"a\r\n", b"b\n", b"c"]
    assert fs.is_file(url) and fs.signature(url)[0] == 6
    assert not fs.is_local(url) and fs.listdir(gs_root).count("crlf.txt") == 1


def test_prepare_and_check_a_gs_data_root(monkeypatch, tmp_path):
    """prepare writes a gs:// root (files, lock) and --check reads it, through the fake GCS."""
    from tests.xitt_tasks import prepare_fixtures
    from xitt_tasks.prepare import check, counts, lock, pipeline, units

    prepare_gcs.install(monkeypatch)
    root = f"gs://fake-bucket-{uuid.uuid4().hex[:8]}/xtreme"
    with prepare_fixtures.Mirror(prepare_fixtures.release_files()) as mirror:
        report = pipeline.prepare(units.units({"xcopa"}), pipeline.Options(
            root, cache_dir=str(tmp_path / "cache"), mirror=mirror.url, attempts=1, timeout=5,
            progress=False))
    assert not report.failed and report.written
    assert fs.path(f"{root}/xcopa/val-et.jsonl").read_bytes() == prepare_fixtures.sample(
        "xcopa/val-et.jsonl")
    assert len(lock.lock_hash(root)) == 64 and not list(tmp_path.glob("xtreme*"))
    monkeypatch.setattr(counts, "OFFICIAL", {})
    results = check.check(root, units.units({"xcopa"}))
    assert check.all_complete(results), check.table(results)
