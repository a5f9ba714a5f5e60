"""Translate-train intermediate data: XTREME's MNLI and SQuAD translations in the bucket's
layout, one task per language, and the English-plus-translations mixtures (the conditions)."""
import pytest
import seqio

import xitt_tasks  # noqa: F401
from xitt_tasks import languages, sources, translate_train
from xitt_tasks.data.lexicon import LEXICONS


def _examples(name):
    task = seqio.get_mixture_or_task(name)
    ds = task.preprocessors[0](task.source.get_dataset("train", shuffle=False))
    return list(ds.as_numpy_iterator())


def test_languages_are_xtremes_translations():
    assert set(translate_train.MNLI_LANGUAGES) == set(languages.XNLI) - {"en"}
    assert len(translate_train.MNLI_LANGUAGES) == 14
    assert set(translate_train.SQUAD_LANGUAGES) == set(languages.XQUAD) - {"en", "ro"}
    assert translate_train.xnli_path("de") == (
        "xtreme_translations/XNLI/translate-train/en-de-translated.tsv")
    assert translate_train.squad_path("th") == (
        "xtreme_translations/SQuAD/translate-train/squad.translate.train.en-th.json")


@pytest.mark.parametrize("task,lang", [("mnli", "sw"), ("mnli", "zh"), ("squad_v1", "ru")])
def test_each_task_reads_the_translated_side_in_its_language(task, lang):
    examples = _examples(translate_train.task_name(task, lang))
    assert len(examples) >= 16
    for ex in examples:
        text = ex["inputs"].decode("utf-8")
        assert any(p in text for p in LEXICONS[lang].persons), text
        assert not any(p in text for p in LEXICONS["en"].persons), text
    if task == "mnli":  # XTREME's `contradictory` reads as the shared label
        assert {ex["label"].decode() for ex in examples} <= {"entailment", "neutral",
                                                            "contradiction"}
        assert any(ex["label"] == b"contradiction" for ex in examples)


def test_mixtures_are_english_plus_every_translation_at_equal_rates():
    for task, langs in translate_train.TRANSLATED.items():
        mixture = seqio.get_mixture_or_task(translate_train.task_name(task))
        names = {t.name for t in mixture.tasks}
        assert names == {f"xitt.inter.{task}",
                         *(translate_train.task_name(task, lang) for lang in langs)}
        assert {mixture.get_rate(t) for t in mixture.tasks} == {1.0}


def test_bad_label_names_file_and_row(tmp_path, monkeypatch):
    path = tmp_path / translate_train.xnli_path("de")
    path.parent.mkdir(parents=True)
    path.write_text("A .\tB .\tC .\tD .\tneutral\nA .\tB .\tC .\tD .\tmaybe\n", encoding="utf-8")
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=r"en-de-translated\.tsv: row 2: label 'maybe'"):
        seqio.get_mixture_or_task(translate_train.task_name("mnli", "de")).source.count("train")
