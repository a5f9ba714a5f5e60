"""Every registered task and mixture yields examples from the shipped sample; names and
language lists match the reference; bad settings fail with messages that say what to fix."""
import pytest
import seqio

import xitt_tasks
from xitt_tasks import intermediate, languages, sources

LENGTHS = {"inputs": 32, "targets": 16}
REFERENCE_50 = set("""af ar az bg bn de el en es et eu fa fi fr gu he hi ht hu id it ja jv ka kk
ko lt ml mr ms my nl pa pl pt qu ro ru sw ta te th tl tr uk ur vi wo yo zh""".split())
TASKS = sorted(n for n in seqio.TaskRegistry.names() if n.startswith("xitt."))
MIXTURES = sorted(n for n in seqio.MixtureRegistry.names() if n.startswith("xitt."))
# One task per format and module, and mixtures of every kind, go through the full seqio path
# by default; the sweep over everything is @slow (about 0.6 s per task on one core).
REPRESENTATIVE_TASKS = [
    "xitt.inter.mnli", "xitt.inter.qqp", "xitt.inter.squad_v2", "xitt.inter.ccg",
    "xitt.inter.hellaswag", "xitt.inter.commonsense_qa.rank", "xitt.xcopa.train.siqa",
    "xitt.xcopa.sw", "xitt.udpos.ja", "xitt.wikiann.train.en", "xitt.mlqa.zh",
    "xitt.tydiqa.train.en", "xitt.mewslix.de", "xitt.mewslix.candidates", "xitt.lareqa.th",
    "xitt.tatoeba.kk",
]
REPRESENTATIVE_MIXTURES = [("xitt.inter.multitask", "train"), ("xitt.xnli.zeroshot", "train"),
                           ("xitt.xcopa.all_langs", "validation")]


def _first_example(name, split):
    ds = seqio.get_dataset(name, LENGTHS, feature_converter=seqio.EncDecFeatureConverter(
        pack=False), dataset_split=split, shuffle=False)
    return next(iter(ds.take(1).as_numpy_iterator()))


def _check_model_features(ex):
    for key in ("encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens"):
        assert ex[key].shape == (LENGTHS["targets" if "decoder" in key else "inputs"],)
    assert ex["encoder_input_tokens"].any() and ex["decoder_target_tokens"].any()


def test_registry_size_and_naming_scheme():
    assert len(TASKS) > 200
    for target in xitt_tasks.TARGETS:
        evals = {f"xitt.{target}.{lang}" for lang in languages.languages(target)}
        assert evals <= set(TASKS)
        members = {t.name for t in seqio.get_mixture_or_task(f"xitt.{target}.all_langs").tasks}
        assert members == evals
        if target == "tatoeba":  # no target training in the recipe
            assert "xitt.tatoeba.zeroshot" not in MIXTURES
            continue
        zeroshot = {t.name for t in seqio.get_mixture_or_task(f"xitt.{target}.zeroshot").tasks}
        train = zeroshot - evals
        assert train and all(".train." in t for t in train), train
    assert {t.name for t in seqio.get_mixture_or_task("xitt.xcopa.zeroshot").tasks} >= {
        "xitt.xcopa.train.copa"}
    assert "xitt.xcopa.train.siqa" in TASKS


def test_every_task_yields_a_formatted_example_on_every_split():
    """Cheap check of all tasks: source and formatting, without tokenization."""
    for name in TASKS:
        task = seqio.get_mixture_or_task(name)
        for split in task.splits:
            ds = task.source.get_dataset(split, shuffle=False)
            steps = task.preprocessors[:2] if name.endswith(".rank") else task.preprocessors[:1]
            for step in steps:
                ds = step(ds)
            ex = next(iter(ds.take(1).as_numpy_iterator()), None)
            assert ex is not None, f"{name}[{split}] is empty"
            # xitt.mc4 has text only (`targets`): span corruption makes its inputs after
            # tokenization (its own tests, test_mc4.py, cover the whole pipeline).
            assert ex["inputs" if "inputs" in ex else "targets"], f"{name}[{split}] is empty"


@pytest.mark.parametrize("name", REPRESENTATIVE_TASKS)
def test_representative_tasks_through_feature_converter(name):
    task = seqio.get_mixture_or_task(name)
    _check_model_features(_first_example(name, task.splits[0]))


@pytest.mark.parametrize("name,split", REPRESENTATIVE_MIXTURES)
def test_representative_mixtures_through_feature_converter(name, split):
    _check_model_features(_first_example(name, split))


@pytest.mark.slow
@pytest.mark.parametrize("name", TASKS)
def test_every_task_through_feature_converter(name):
    task = seqio.get_mixture_or_task(name)
    for split in task.splits:
        _check_model_features(_first_example(name, split))


@pytest.mark.slow
@pytest.mark.parametrize("name", MIXTURES)
def test_every_mixture_through_feature_converter(name):
    mixture = seqio.get_mixture_or_task(name)
    split = "train" if "train" in mixture.splits else mixture.splits[0]
    _check_model_features(_first_example(name, split))


def test_evaluation_languages_match_reference():
    union = set()
    for target in xitt_tasks.TARGETS:
        prefix = f"xitt.{target}."
        langs = [n[len(prefix):] for n in TASKS if n.startswith(prefix)
                 and n.count(".") == 2 and n[len(prefix):] not in ("candidates",)]
        assert sorted(langs) == sorted(languages.languages(target)), target
        union |= set(langs)
    assert union == REFERENCE_50 == set(languages.XTREME_R_LANGUAGES)


def test_unknown_language_lists_valid_ones():
    assert xitt_tasks.eval_task("xnli", "sw").name == "xitt.xnli.sw"
    with pytest.raises(ValueError, match="'xx' is not part of xnli .*ar bg de"):
        xitt_tasks.eval_task_name("xnli", "xx")


def test_missing_file_names_expected_path(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path))
    task = seqio.get_mixture_or_task("xitt.xnli.de")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "xnli" / "dev-de.tsv")):
        task.get_dataset(LENGTHS, "validation", shuffle=False)


def test_data_root_is_read_at_dataset_creation(tmp_path, monkeypatch):
    (tmp_path / "xnli").mkdir()
    (tmp_path / "xnli" / "dev-de.tsv").write_text("Ein Hund.\tEin Tier.\tentailment\n")
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path))
    ex = next(seqio.get_mixture_or_task("xitt.xnli.de").get_dataset(
        LENGTHS, "validation", shuffle=False).as_numpy_iterator())
    assert ex["inputs_pretokenized"] == b"xnli: premise: Ein Hund. hypothesis: Ein Tier."
    assert ex["targets_pretokenized"] == b"entailment"


def test_bad_source_setting_is_rejected(monkeypatch):
    monkeypatch.setenv(sources.SOURCE_ENV, "gcs")
    with pytest.raises(ValueError, match="XITT_SOURCE='gcs'; expected one of"):
        seqio.get_mixture_or_task("xitt.xnli.de").source.get_dataset("validation")


def test_multitask_rates_are_examples_proportional_with_cap():
    rates = intermediate.multitask_rates(cap=100_000)
    assert set(rates) == set(intermediate.INTERMEDIATE_TASKS) and len(rates) == 9
    assert rates["mnli"] == rates["anli_plus"] == 100_000
    assert rates["commonsense_qa"] == 9_741
    mixture = seqio.get_mixture_or_task("xitt.inter.multitask")
    cap = intermediate.DEFAULT_CAP
    assert mixture.get_rate(seqio.get_mixture_or_task("xitt.inter.squad_v1")) == 87_599
    assert mixture.get_rate(seqio.get_mixture_or_task("xitt.inter.qqp")) == cap
    # ANLI+ is a sub-mixture: its capped rate is split by the parts' sizes; MNLI also
    # appears on its own, so its rate is the sum of both.
    snli = mixture.get_rate(seqio.get_mixture_or_task("xitt.inter.snli"))
    assert snli == pytest.approx(cap * 550_152 / intermediate.TRAIN_SIZES["anli_plus"])
    with pytest.raises(ValueError, match="must both be positive"):
        intermediate.multitask_rates(cap=0)


def test_tfds_builders_are_pinned():
    for name in TASKS:
        spec = getattr(seqio.get_mixture_or_task(name).source, "tfds", None)  # mC4: test_mc4
        if spec is not None:
            assert ":" in spec.name and spec.name.split(":")[1].count(".") == 2, name
