"""`python -m xitt_tasks.prepare` against a release mirror on 127.0.0.1 (prepare_fixtures):
a full prepare, a resume, a kill and a resume, and every failure the network can produce."""
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.xitt_tasks import prepare_fixtures
from xitt_tasks.prepare import check, counts, lock, pipeline, releases, units

ONLY = {"xquad", "xcopa", "tydiqa"}
XQUAD_DE = "https://raw.githubusercontent.com/deepmind/xquad/master/xquad.de.json"
COPA_ZIP = "https://dl.fbaipublicfiles.com/glue/superglue/data/v2/COPA.zip"


@pytest.fixture()
def mirror():
    with prepare_fixtures.Mirror(prepare_fixtures.release_files()) as m:
        yield m


def _opts(tmp_path, mirror, **kw):
    return pipeline.Options(str(tmp_path / "root"), cache_dir=str(tmp_path / "cache"),
                            mirror=mirror.url, jobs=4, attempts=3, timeout=5, backoff=0.01,
                            progress=False, **kw)


def _prepare(tmp_path, mirror, only=ONLY, **kw):
    return pipeline.prepare(units.units(only), _opts(tmp_path, mirror, **kw))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_full_prepare_converts_every_release_and_resumes(tmp_path, mirror, monkeypatch):
    report = _prepare(tmp_path, mirror)
    assert not report.failed and not report.unsourced and not report.manual, report
    root = tmp_path / "root"
    needed = units.files_of(units.units(ONLY))
    assert sorted(report.written) == needed
    for rel in needed:
        if rel != "tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json":
            assert (root / rel).read_bytes() == prepare_fixtures.sample(rel), rel
    # the XCOPA quirk (val.et -> val-et), COPA from a zip, TyDiQA dev from a .tgz, renamed
    assert (root / "xcopa/val-et.jsonl").exists() and (root / "xcopa/train-en.jsonl").exists()
    train = json.loads((root / "tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json")
                       .read_bytes())
    ids = [qa["id"] for a in train["data"] for p in a["paragraphs"] for qa in p["qas"]]
    assert ids and all(i.startswith("english-") for i in ids)
    locked = json.loads((root / lock.LOCK_NAME).read_text())["files"]
    planned = {r.url for r in pipeline.plan(needed)[0]}
    assert set(locked) == planned and all(len(e["sha256"]) == 64 for e in locked.values())
    assert {u for u, n in mirror.requests.items() if n} == planned
    monkeypatch.setattr(counts, "OFFICIAL", {})  # the sample is small: presence and parsing
    results = check.check(str(root), units.units(ONLY))
    assert check.all_complete(results), check.table(results)
    before = sum(mirror.requests.values())
    again = _prepare(tmp_path, mirror)
    assert not again.written and sorted(again.present) == needed
    assert sum(mirror.requests.values()) == before  # nothing downloaded twice


def test_http_404_is_one_clear_error_and_the_rest_completes(tmp_path, mirror):
    mirror.misbehave(XQUAD_DE, "http404")
    report = _prepare(tmp_path, mirror, only={"xquad"})
    assert report.failed == [f"xquad: {mirror.url}/raw.githubusercontent.com/deepmind/xquad/"
                             "master/xquad.de.json: HTTP 404 Not Found"]
    assert mirror.requests[XQUAD_DE] == 1  # a 404 is not retried
    root = tmp_path / "root"
    assert not (root / "xquad/xquad.de.json").exists()
    assert (root / "xquad/xquad.es.json").exists()
    assert XQUAD_DE not in json.loads((root / lock.LOCK_NAME).read_text())["files"]


@pytest.mark.parametrize("mode", ["http503", "reset", "truncate"])
def test_transient_failures_are_retried_a_bounded_number_of_times(tmp_path, mirror, mode):
    mirror.misbehave(COPA_ZIP, mode)
    report = _prepare(tmp_path, mirror, only={"xcopa"})
    [failure] = report.failed
    assert failure.startswith("copa: ") and "COPA.zip" in failure
    assert mirror.requests[COPA_ZIP] == 3  # attempts=3 (a 503: 1 try + 2 retries)
    root, cache = tmp_path / "root", tmp_path / "cache"
    assert not any((root / "xcopa" / f"{s}-en.jsonl").exists() for s in ("train", "val"))
    assert not [p for p in cache.iterdir() if p.name.endswith(".partial")]
    assert (root / "xcopa/val-et.jsonl").exists()  # the other releases completed


@pytest.mark.parametrize("mode", ["http503", "reset", "truncate"])
def test_a_transient_failure_then_success_completes(tmp_path, mirror, mode):
    members = {f"COPA/{s}.jsonl": prepare_fixtures.sample(f"xcopa/{s}-en.jsonl")
               for s in ("train", "val")}
    pad = random.Random(0).randbytes(400_000)  # larger than a few download chunks
    mirror.files[COPA_ZIP] = prepare_fixtures._zip({**members, "COPA/pad.bin": pad})
    mirror.misbehave(COPA_ZIP, mode, times=1)
    report = _prepare(tmp_path, mirror, only={"xcopa"})
    assert not report.failed and mirror.requests[COPA_ZIP] == 2
    assert (tmp_path / "root/xcopa/train-en.jsonl").read_bytes() == prepare_fixtures.sample(
        "xcopa/train-en.jsonl")
    # a body cut in the middle is continued from where it stopped, not fetched again
    answered = mirror.ranges[COPA_ZIP]  # Range headers of the requests answered with data
    if mode == "truncate":  # resumed after the whole chunks it had received
        first, second = answered
        start = int(second[len("bytes="):-1])
        assert first is None and 0 < start <= len(mirror.files[COPA_ZIP]) // 2
    else:
        assert answered == [None]


def test_a_changed_upstream_file_is_an_error_naming_it(tmp_path, mirror):
    assert not _prepare(tmp_path, mirror, only={"xquad"}).failed
    root = tmp_path / "root"
    lock_before = (root / lock.LOCK_NAME).read_bytes()
    (root / "xquad/xquad.de.json").unlink()
    for p in (tmp_path / "cache").iterdir():
        p.unlink()
    mirror.files[XQUAD_DE] += b"\n"  # still valid JSON, another checksum
    report = _prepare(tmp_path, mirror, only={"xquad"})
    [failure] = report.failed
    assert XQUAD_DE in failure and "the upstream file changed" in failure
    assert not (root / "xquad/xquad.de.json").exists()  # the data root is untouched
    assert (root / lock.LOCK_NAME).read_bytes() == lock_before
    assert lock.lock_hash(str(root)) == hashlib.sha256(lock_before).hexdigest()


def test_manual_steps_are_printed_and_the_rest_completes(tmp_path, mirror):
    todo, manual, unsourced = pipeline.plan(units.files_of(units.units({"wikiann", "ccg"})))
    assert not todo and not unsourced
    assert [m.name for m in manual] == ["wikiann", "ccg"]
    text = pipeline.summary(pipeline.Report(manual=manual), "gs://b/root")
    assert "XITT_SOURCE=tfds" in text and "gs://b/root/ccg/train.tsv" in text


def test_every_needed_file_has_a_release_or_a_manual_step():
    todo, manual, unsourced = pipeline.plan(units.files_of(units.units()))
    assert unsourced == []
    assert {m.name for m in manual} == {"wikiann", "udpos", "mewslix", "ccg"}
    needed = set(units.files_of(units.units()))
    assert [o.dest for r in releases.releases() for o in r.outputs if o.dest not in needed] == []
    dests = [o.dest for r in releases.releases() for o in r.outputs]
    assert len(dests) == len(set(dests))  # no two downloads write one file
    urls = [r.url for r in releases.releases()]
    assert len(urls) == len(set(urls)) and all(u.startswith("https://") for u in urls)


@pytest.mark.slow
def test_a_killed_prepare_resumes_without_half_files(tmp_path, mirror):
    mirror.misbehave(XQUAD_DE, "stall")
    root, cache = tmp_path / "root", tmp_path / "cache"
    cmd = [sys.executable, "-m", "xitt_tasks.prepare", "--data_dir", str(root), "--only",
           "xquad", "--cache_dir", str(cache), "--mirror", mirror.url, "--jobs", "2",
           "--no_progress", "--timeout", "60"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": os.getcwd()},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list(cache.glob("*xquad.de.json.partial")) and time.time() < deadline:
            time.sleep(0.2)
        assert list(cache.glob("*xquad.de.json.partial")), "the stalled download never began"
        time.sleep(1.0)
    finally:
        proc.kill()
        proc.wait()
    kept = sum(p.stat().st_size for p in cache.glob("*xquad.de.json.partial"))
    expected = {rel: prepare_fixtures.sample(rel) for rel in units.files_of(units.units({"xquad"}))}
    written = {k: v for k, v in _files(root).items() if k != lock.LOCK_NAME}
    assert "xquad/xquad.de.json" not in written
    assert all(written[k] == expected[k] for k in written)  # whatever is there is whole
    served = dict(mirror.requests)
    mirror.modes.clear()
    report = _prepare(tmp_path, mirror, only={"xquad"})
    assert not report.failed
    assert all((root / k).read_bytes() == v for k, v in expected.items())
    assert mirror.requests[XQUAD_DE] == served[XQUAD_DE] + 1
    assert not list(cache.glob("*.partial"))  # renamed when done
    # the killed download continued from the bytes it had on disk
    assert mirror.ranges[XQUAD_DE][-1] == (f"bytes={kept}-" if kept else None)
    done_before = [u for u in served if u != XQUAD_DE]
    assert all(mirror.requests[u] == served[u] for u in done_before)  # not fetched again
