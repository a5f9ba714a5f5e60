"""The conversions that change content: XNLI 1.0 split per language and
GLUE MNLI as XNLI's English training file, both read back by the registered XNLI tasks."""
import seqio

from tests.xitt_tasks import prepare_fixtures
from xitt_tasks.prepare import pipeline, releases, units
from xitt_tasks.sources import DATA_DIR_ENV

XNLI_HEADER = ("language\tgold_label\tsentence1_binary_parse\tsentence2_binary_parse\t"
               "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tpromptID\tpairID\tgenre")
MNLI_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
               "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")


def _xnli(split: str) -> bytes:
    rows = [XNLI_HEADER]
    for lang in ("ar bg de el en es fr hi ru sw th tr ur vi zh".split()):
        for i, label in enumerate(("entailment", "neutral", "contradiction")):
            rows.append(f"{lang}\t{label}\t(x)\t(y)\t(x)\t(y)\t{lang} {split} \"premise\" {i}\t"
                        f"{lang} hypothesis {i}\t1\t{i}\tfiction")
    return ("\n".join(rows) + "\n").encode()


def _mnli() -> bytes:
    rows = [MNLI_HEADER, "0\t1\t1e\tgov\t(a)\t(b)\t(a)\t(b)\tA \"quoted\" premise.\tA hyp.\t"
            "neutral\tneutral", "1\t2\t2c\tgov\t(a)\t(b)\t(a)\t(b)\tAnother.\tNot so.\t"
            "contradiction\tcontradiction"]
    return ("\n".join(rows) + "\n").encode()


def test_xnli_and_mnli_conversions_read_back(tmp_path, monkeypatch):
    by_url = {r.url: r for r in releases.releases()}
    xnli = next(u for u in by_url if u.endswith("XNLI-1.0.zip"))
    mnli = next(u for u in by_url if u.endswith("MNLI.zip"))
    files = {xnli: prepare_fixtures._zip({"XNLI-1.0/xnli.dev.tsv": _xnli("dev"),
                                          "XNLI-1.0/xnli.test.tsv": _xnli("test")}),
             mnli: prepare_fixtures._zip({"MNLI/train.tsv": _mnli(),
                                          "MNLI/dev_matched.tsv": _mnli()})}
    root = tmp_path / "root"
    with prepare_fixtures.Mirror(files) as mirror:
        report = pipeline.prepare(units.units({"xnli"}), pipeline.Options(
            str(root), cache_dir=str(tmp_path / "c"), mirror=mirror.url, attempts=1,
            timeout=5, progress=False))
    assert not report.failed and not report.manual
    assert not (root / "glue").exists()  # only what the selected tasks read
    monkeypatch.setenv(DATA_DIR_ENV, str(root))
    lengths = {"inputs": 128, "targets": 16}
    dev_de = list(seqio.get_mixture_or_task("xitt.xnli.de").get_dataset(
        lengths, "validation", shuffle=False).as_numpy_iterator())
    assert [ex["targets_pretokenized"] for ex in dev_de] == [b"entailment", b"neutral",
                                                            b"contradiction"]
    assert dev_de[0]["inputs_pretokenized"] == (b'xnli: premise: de dev "premise" 0 '
                                                b"hypothesis: de hypothesis 0")
    train = list(seqio.get_mixture_or_task("xitt.xnli.train.en").get_dataset(
        lengths, "train", shuffle=False).as_numpy_iterator())
    assert [ex["inputs_pretokenized"] for ex in train] == [
        b'xnli: premise: A "quoted" premise. hypothesis: A hyp.',
        b"xnli: premise: Another. hypothesis: Not so."]
