"""The real XQuAD and XCOPA releases (../shared/real_data, copied unchanged from
github.com/deepmind/xquad and github.com/cambridgeltl/xcopa) through the whole path: served in
their release layouts by a mirror on 127.0.0.1 under their official URLs, prepared, checked
against the official counts, and every language read through the registered tasks."""
import os
from pathlib import Path

import pytest
import seqio

from tests.xitt_tasks import prepare_fixtures
from xitt_tasks.prepare import __main__ as cli
from xitt_tasks.prepare import releases
from xitt_tasks.sources import DATA_DIR_ENV

REAL = Path(os.environ.get("XITT_REAL_DATA",
                           Path(__file__).resolve().parents[2].parent / "shared" / "real_data"))
LENGTHS = {"inputs": 512, "targets": 64}
pytestmark = pytest.mark.skipif(not (REAL / "xquad").is_dir(),
                                reason=f"no real data at {REAL} (set XITT_REAL_DATA)")


def _release_files() -> dict[str, bytes]:
    files = {}
    for r in releases.releases():
        if r.name == "xquad":
            files[r.url] = (REAL / "xquad" / r.url.rsplit("/", 1)[1]).read_bytes()
        elif r.name == "xcopa":
            rel = r.url.split("/master/", 1)[1]          # data/{l}/{split}.{l}.jsonl
            files[r.url] = (REAL / "xcopa" / rel).read_bytes()
    return files


@pytest.mark.slow
def test_real_xquad_and_xcopa_prepare_check_and_read(tmp_path, monkeypatch, capsys):
    root = tmp_path / "root"
    args = ["--data_dir", str(root), "--only", "xquad,xcopa", "--eval_only"]
    with prepare_fixtures.Mirror(_release_files()) as mirror:
        assert cli.main([*args, "--mirror", mirror.url, "--cache_dir", str(tmp_path / "c"),
                         "--no_progress", "--backoff", "0.01"]) == 0
    assert cli.main(["--check", *args]) == 0
    out = capsys.readouterr().out
    assert "34 checked: 34 complete, 0 missing, 0 wrong" in out
    assert out.count(" 1190 ") >= 24 and out.count(" 500 ") >= 22 and out.count(" 100 ") >= 22
    monkeypatch.setenv(DATA_DIR_ENV, str(root))
    for task, split, n in [*((f"xitt.xquad.{lang}", "test", 1190) for lang in
                             "en es de el ru tr ar vi th zh hi ro".split()),
                           *((f"xitt.xcopa.{lang}", s, n) for lang in
                             "et ht id it qu sw ta th tr vi zh".split()
                             for s, n in (("validation", 100), ("test", 500)))]:
        ds = seqio.get_mixture_or_task(task).get_dataset(LENGTHS, split, shuffle=False)
        examples = list(ds.as_numpy_iterator())
        assert len(examples) == n, task
        assert all(ex["inputs_pretokenized"] and ex["targets_pretokenized"] for ex in examples)
