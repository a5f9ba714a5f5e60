"""Where every file of the data root comes from: official download URLs, the member of each
archive, and the quirk each conversion applies (xitt_tasks/data/README.md lists the quirks).

A `Release` is one download (a file, a .zip or a .tar.gz); each `Output` writes one data-root
file from one member (`.` = the download itself), optionally through a transform
(convert.py). What cannot be downloaded unattended is a `Manual` entry: the exact steps are
printed and the rest still completes. Only files the registered tasks read are listed (a test
pins it). URLs are the ones XTREME's `scripts/download_data.sh` and the original releases use;
`master` URLs are guarded by the lock file (a changed upstream file is an error naming it).
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from xitt_tasks import languages
from xitt_tasks.prepare import convert

Transform = Callable[[bytes], bytes]


@dataclasses.dataclass(frozen=True)
class Output:
    dest: str                       # path under the data root
    member: str = "."               # path inside the archive ('*/' = any top folder)
    transform: Transform | None = None


@dataclasses.dataclass(frozen=True)
class Release:
    name: str
    url: str
    outputs: tuple[Output, ...]
    source: str                     # where this URL is documented

    @property
    def archive(self) -> str | None:
        for ext in (".zip", ".tar.gz", ".tgz"):
            if self.url.endswith(ext):
                return ext
        return None


@dataclasses.dataclass(frozen=True)
class Manual:
    name: str
    prefixes: tuple[str, ...]       # data-root paths it provides start with one of these
    steps: str


GH = "https://raw.githubusercontent.com"
FB = "https://dl.fbaipublicfiles.com"
XTREME_SCRIPT = "github.com/google-research/xtreme scripts/download_data.sh"

TYDIQA_NAMES = {"en": "english", "ar": "arabic", "bn": "bengali", "fi": "finnish",
                "id": "indonesian", "ko": "korean", "ru": "russian", "sw": "swahili",
                "te": "telugu"}
# LASER's Tatoeba files are named by ISO 639-3 codes (XTREME's utils_preprocess.py mapping).
TATOEBA_CODES = {
    "ar": "ara", "he": "heb", "vi": "vie", "id": "ind", "jv": "jav", "tl": "tgl", "eu": "eus",
    "ml": "mal", "ta": "tam", "te": "tel", "af": "afr", "nl": "nld", "de": "deu", "el": "ell",
    "bn": "ben", "hi": "hin", "mr": "mar", "ur": "urd", "fa": "pes", "fr": "fra", "it": "ita",
    "pt": "por", "es": "spa", "bg": "bul", "ru": "rus", "ja": "jpn", "ka": "kat", "ko": "kor",
    "th": "tha", "sw": "swh", "zh": "cmn", "kk": "kaz", "tr": "tur", "et": "est", "fi": "fin",
    "hu": "hun", "az": "aze", "lt": "lit", "pl": "pol", "uk": "ukr", "ro": "ron"}


def _files(name: str, base: str, pairs: dict[str, str], source: str) -> list[Release]:
    return [Release(name, f"{base}/{remote}", (Output(dest),), source)
            for remote, dest in pairs.items()]


def _targets() -> list[Release]:
    out: list[Release] = []
    out += _files("xquad", f"{GH}/deepmind/xquad/master",
                  {f"xquad.{lang}.json": f"xquad/xquad.{lang}.json"
                   for lang in languages.XQUAD},
                  "github.com/deepmind/xquad (ro too: XTREME's script leaves it out)")
    out += _files("xcopa", f"{GH}/cambridgeltl/xcopa/master/data",
                  {f"{lang}/{split}.{lang}.jsonl": f"xcopa/{split}-{lang}.jsonl"
                   for lang in languages.XCOPA for split in ("val", "test")},
                  "github.com/cambridgeltl/xcopa (renamed {split}.{l} -> {split}-{l})")
    out.append(Release("copa", f"{FB}/glue/superglue/data/v2/COPA.zip", tuple(
        Output(f"xcopa/{split}-en.jsonl", f"COPA/{split}.jsonl")
        for split in ("train", "val")), "SuperGLUE COPA (" + XTREME_SCRIPT + ")"))
    out.append(Release("siqa", "https://storage.googleapis.com/ai2-mosaic/public/socialiqa/"
                       "socialiqa-train-dev.zip", tuple(
                           Output(f"siqa/{f}", f"socialiqa-train-dev/{f}")
                           for f in ("train.jsonl", "train-labels.lst", "dev.jsonl",
                                     "dev-labels.lst")),
                       "AllenAI Social IQa release (labels files, not XTREME's v1.4 copy)"))
    out.append(Release("xnli", f"{FB}/XNLI/XNLI-1.0.zip", tuple(
        Output(f"xnli/{split}-{lang}.tsv", f"XNLI-1.0/xnli.{split}.tsv",
               functools.partial(convert.xnli_language, lang))
        for split in ("dev", "test") for lang in languages.XNLI),
        "XNLI 1.0 (labelled dev and test sets; XTREME's download strips the test labels)"))
    out.append(Release("mlqa", f"{FB}/MLQA/MLQA_V1.zip", tuple(
        Output(f"mlqa/MLQA_V1/{s}/{s}-context-{lang}-question-{lang}.json",
               f"MLQA_V1/{s}/{s}-context-{lang}-question-{lang}.json")
        for s in ("dev", "test") for lang in languages.MLQA), "MLQA v1 (" + XTREME_SCRIPT + ")"))
    tydiqa = "https://storage.googleapis.com/tydiqa/v1.1"
    out.append(Release("tydiqa", f"{tydiqa}/tydiqa-goldp-v1.1-train.json", (Output(
        "tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json", ".",
        functools.partial(convert.squad_id_prefix, "english-")),),
        "TyDiQA-GoldP v1.1 (English part of train, as XTREME)"))
    out.append(Release("tydiqa", f"{tydiqa}/tydiqa-goldp-v1.1-dev.tgz", tuple(
        Output(f"tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json",
               f"tydiqa-goldp-v1.1-dev/tydiqa-goldp-dev-{name}.json")
        for lang, name in TYDIQA_NAMES.items()), "TyDiQA-GoldP v1.1 dev (" + XTREME_SCRIPT + ")"))
    out += _files("lareqa", f"{GH}/google-research-datasets/lareqa/master/xquad-r",
                  {f"{lang}.json": f"lareqa/xquad-r/{lang}.json" for lang in languages.LAREQA},
                  "github.com/google-research-datasets/lareqa")
    laser = f"{GH}/facebookresearch/LASER/main/data/tatoeba/v1"
    for lang in languages.TATOEBA:
        code = TATOEBA_CODES[lang]
        out += _files("tatoeba", laser, {f"tatoeba.{code}-eng.{code}": f"tatoeba/{lang}-en.{lang}",
                                         f"tatoeba.{code}-eng.eng": f"tatoeba/{lang}-en.en"},
                      "LASER Tatoeba v1 (aligned; XTREME's copy sorts the English side)")
    return out


def _intermediate() -> list[Release]:
    out: list[Release] = []
    out += _files("squad", "https://rajpurkar.github.io/SQuAD-explorer/dataset",
                  {f"{s}-v{v}.json": f"squad/{s}-v{v}.json"
                   for s in ("train", "dev") for v in ("1.1", "2.0")},
                  "SQuAD explorer (rajpurkar.github.io/SQuAD-explorer)")
    out.append(Release("mnli", f"{FB}/glue/data/MNLI.zip", (
        Output("glue/MNLI/train.tsv", "MNLI/train.tsv"),
        Output("glue/MNLI/dev_matched.tsv", "MNLI/dev_matched.tsv"),
        Output("xnli/train-en.tsv", "MNLI/train.tsv", convert.mnli_as_xnli)),
        "GLUE MNLI (also XNLI's English training set, as XTREME's train-en.tsv)"))
    out.append(Release("qqp", f"{FB}/glue/data/QQP-clean.zip", (
        Output("glue/QQP/train.tsv", "QQP/train.tsv"), Output("glue/QQP/dev.tsv", "QQP/dev.tsv")),
        "GLUE QQP"))
    out.append(Release("snli", "https://nlp.stanford.edu/projects/snli/snli_1.0.zip", tuple(
        Output(f"snli/snli_1.0_{s}.jsonl", f"snli_1.0/snli_1.0_{s}.jsonl")
        for s in ("train", "dev")), "SNLI 1.0"))
    out.append(Release("anli", f"{FB}/anli/anli_v1.0.zip", tuple(
        Output(f"anli/R{r}/{s}.jsonl", f"anli_v1.0/R{r}/{s}.jsonl")
        for r in (1, 2, 3) for s in ("train", "dev")), "ANLI v1.0"))
    out += _files("hellaswag", f"{GH}/rowanz/hellaswag/master/data",
                  {f"hellaswag_{s}.jsonl": f"hellaswag/hellaswag_{s}.jsonl"
                   for s in ("train", "val")}, "github.com/rowanz/hellaswag")
    out += _files("cosmos_qa", f"{GH}/wilburOne/cosmosqa/master/data",
                  {f"{s}.csv": f"cosmosqa/{s}.csv" for s in ("train", "valid")},
                  "github.com/wilburOne/cosmosqa")
    out += _files("commonsense_qa", "https://s3.amazonaws.com/commensenseqa",
                  {f"{s}_rand_split.jsonl": f"commonsenseqa/{s}_rand_split.jsonl"
                   for s in ("train", "dev")}, "CommonsenseQA (www.tau-nlp.org/commonsenseqa)")
    return out


def _translations() -> list[Release]:
    """XTREME's translate-train files (X-STILTs' alternative; the URLs TFDS's `xtreme_xnli` and
    `xquad` builders download), kept in the bucket's layout under the data root."""
    from xitt_tasks import translate_train

    bucket = "https://storage.googleapis.com"
    return (_files("mnli_translate_train", f"{bucket}/{translate_train.XNLI_DIR}",
                   {f"en-{lang}-translated.tsv": translate_train.xnli_path(lang)
                    for lang in translate_train.MNLI_LANGUAGES}, "XTREME translations bucket")
            + _files("squad_v1_translate_train", f"{bucket}/{translate_train.SQUAD_DIR}",
                     {f"squad.translate.train.en-{lang}.json": translate_train.squad_path(lang)
                      for lang in translate_train.SQUAD_LANGUAGES},
                     "XTREME translations bucket"))


def releases() -> list[Release]:
    """Every download of the data root."""
    return _targets() + _intermediate() + _translations()


MANUAL = (
    Manual("wikiann", ("panx/",), """PAN-X / WikiANN is a manual download (XTREME):
  1. download AmazonPhotos.zip from the link in github.com/google-research/xtreme's README
     ("Download the data") into xtreme/download/, run `bash scripts/download_data.sh` there
     (its panx step) and copy download/panx/{train,dev,test}-{lang}.tsv to <data_dir>/panx/;
  2. or read TFDS `wikiann` instead: `tfds build wikiann` and set XITT_SOURCE=tfds."""),
    Manual("udpos", ("udpos/",), """UD-POS needs XTREME's treebank merge (not automated here):
  run `bash scripts/download_data.sh` in github.com/google-research/xtreme (download_udpos:
  ud-treebanks-v2.5 from lindat.mff.cuni.cz, handle 11234/1-3105, plus v2.7 for lt pl uk wo ro)
  and copy download/udpos/{train,dev,test}-{lang}.tsv to <data_dir>/udpos/."""),
    Manual("mewslix", ("mewslix/",), """Mewsli-X must be restored with its own script:
  git clone https://github.com/google-research/google-research
  cd google-research/dense_representations_for_entity_retrieval/mel
  bash get-mewsli-x.sh   # downloads mewsli-x_20220518_6 and restores context.text
  then copy output/mewsli_x/candidate_set_entities.jsonl, wikipedia_pairs-{train,dev}.jsonl and
  wikinews_mentions-{dev,test}.jsonl to <data_dir>/mewslix/."""),
    Manual("ccg", ("ccg/",), """CCGbank is LDC-licensed (LDC2005T13); convert it yourself:
  one `token<TAB>supertag` per line, a blank line between sentences; sections 02-21 ->
  <data_dir>/ccg/train.tsv, section 00 -> <data_dir>/ccg/dev.tsv."""),
)
