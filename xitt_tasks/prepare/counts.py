"""Official example counts per (registered task, split): what a complete data root must hold.

A count is the number of examples the task's reader yields (one per question for SQuAD-format
files, one per sentence for tagging files, one per labelled pair for SNLI). Each entry names
its source: the paper's statistics table or the release itself. Splits without an entry here
(UD-POS and PAN-X per language, Tatoeba, Mewsli-X and LAReQA per language, CCG, which is
user-supplied) are checked for presence and parsing only, and the check says so.
"""
from __future__ import annotations

import dataclasses

from xitt_tasks.languages import XCOPA as _XCOPA
from xitt_tasks.languages import XNLI as _XNLI
from xitt_tasks.languages import XQUAD as _XQUAD


@dataclasses.dataclass(frozen=True)
class Count:
    n: int
    source: str


XQUAD = "XQuAD release (github.com/deepmind/xquad, README: 240 paragraphs, 1190 questions)"
XCOPA = "XCOPA release (github.com/cambridgeltl/xcopa; Ponti et al. 2020, Table 1: 100/500)"
COPA = "COPA (Roemmele et al. 2011; SuperGLUE COPA.zip: train 400, val 100, test 500)"
XNLI = "XNLI (Conneau et al. 2018, 2,490 dev / 5,010 test pairs per language)"
MLQA = "MLQA (Lewis et al. 2020, Table 4: dev/test per language, same-language pairs)"
TYDIQA = "TyDiQA-GoldP v1.1 (XTREME, Hu et al. 2020, Table 6)"
GLUE = "GLUE (Wang et al. 2019, Table 1)"
SNLI = "SNLI 1.0 (nlp.stanford.edu/projects/snli: pairs with a gold label)"
ANLI = "ANLI v1.0 (Nie et al. 2020, Table 2)"
SQUAD = "SQuAD (Rajpurkar et al. 2016, 2018: questions per split)"

_MLQA = {"en": (1148, 11590), "de": (512, 4517), "es": (500, 5253), "ar": (517, 5335),
         "hi": (507, 4918), "vi": (511, 5495), "zh": (504, 5137)}
_TYDIQA_DEV = {"en": 440, "ar": 921, "bn": 113, "fi": 782, "id": 565, "ko": 276, "ru": 812,
               "sw": 499, "te": 669}


def _official() -> dict[tuple[str, str], Count]:
    c: dict[tuple[str, str], Count] = {}
    for lang in _XQUAD:
        c[f"xitt.xquad.{lang}", "test"] = Count(1190, XQUAD)
    for lang in _XCOPA:
        c[f"xitt.xcopa.{lang}", "validation"] = Count(100, XCOPA)
        c[f"xitt.xcopa.{lang}", "test"] = Count(500, XCOPA)
    c["xitt.xcopa.train.copa", "train"] = Count(400, COPA)
    c["xitt.xcopa.train.copa", "validation"] = Count(100, COPA)
    siqa = "Social IQa (Sap et al. 2019, Table 2: 33,410 train / 1,954 dev)"
    c["xitt.xcopa.train.siqa", "train"] = Count(33410, siqa)
    c["xitt.xcopa.train.siqa", "validation"] = Count(1954, siqa)
    for lang in _XNLI:
        c[f"xitt.xnli.{lang}", "validation"] = Count(2490, XNLI)
        c[f"xitt.xnli.{lang}", "test"] = Count(5010, XNLI)
    c["xitt.xnli.train.en", "train"] = Count(392702, GLUE + ", MNLI train")
    c["xitt.xnli.train.en", "validation"] = Count(2490, XNLI)
    for lang, (dev, test) in _MLQA.items():
        c[f"xitt.mlqa.{lang}", "validation"] = Count(dev, MLQA)
        c[f"xitt.mlqa.{lang}", "test"] = Count(test, MLQA)
    for lang, dev in _TYDIQA_DEV.items():
        c[f"xitt.tydiqa.{lang}", "validation"] = Count(dev, TYDIQA)
    c["xitt.tydiqa.train.en", "train"] = Count(3696, TYDIQA)
    for task in ("xitt.xquad.train.en", "xitt.mlqa.train.en", "xitt.inter.squad_v1"):
        c[task, "train"] = Count(87599, SQUAD)
        c[task, "validation"] = Count(10570, SQUAD)
    c["xitt.inter.squad_v2", "train"] = Count(130319, SQUAD)
    c["xitt.inter.squad_v2", "validation"] = Count(11873, SQUAD)
    c["xitt.wikiann.train.en", "train"] = Count(20000, "WikiANN en (Rahimi et al. 2019 split)")
    c["xitt.wikiann.train.en", "validation"] = Count(10000, "WikiANN en (Rahimi et al. 2019)")
    c["xitt.wikiann.en", "validation"] = Count(10000, "WikiANN en (Rahimi et al. 2019)")
    c["xitt.mewslix.candidates", "validation"] = Count(1003893, "Mewsli-X (XTREME-R, Table 9)")
    c["xitt.mewslix.candidates", "test"] = Count(1003893, "Mewsli-X (XTREME-R, Table 9)")
    c["xitt.mewslix.train.en", "train"] = Count(167719, "Mewsli-X (XTREME-R, Table 9)")
    c["xitt.inter.mnli", "train"] = Count(392702, GLUE)
    c["xitt.inter.mnli", "validation"] = Count(9815, GLUE + ", matched dev")
    c["xitt.inter.qqp", "train"] = Count(363846, GLUE)
    c["xitt.inter.qqp", "validation"] = Count(40430, GLUE)
    c["xitt.inter.snli", "train"] = Count(549367, SNLI)
    c["xitt.inter.snli", "validation"] = Count(9842, SNLI)
    for r, (train, dev) in {1: (16946, 1000), 2: (45460, 1000), 3: (100459, 1200)}.items():
        c[f"xitt.inter.anli_r{r}", "train"] = Count(train, ANLI)
        c[f"xitt.inter.anli_r{r}", "validation"] = Count(dev, ANLI)
    hellaswag = "HellaSwag (Zellers et al. 2019; release: 39,905 train / 10,042 val)"
    c["xitt.inter.hellaswag", "train"] = Count(39905, hellaswag)
    c["xitt.inter.hellaswag", "validation"] = Count(10042, hellaswag)
    cosmos = "Cosmos QA (Huang et al. 2019, Table 2: 25,262 train / 2,985 dev)"
    c["xitt.inter.cosmos_qa", "train"] = Count(25262, cosmos)
    c["xitt.inter.cosmos_qa", "validation"] = Count(2985, cosmos)
    csqa = "CommonsenseQA (Talmor et al. 2019, random split: 9,741 train / 1,221 dev)"
    c["xitt.inter.commonsense_qa", "train"] = Count(9741, csqa)
    c["xitt.inter.commonsense_qa", "validation"] = Count(1221, csqa)
    return c


OFFICIAL: dict[tuple[str, str], Count] = _official()


def expected(task: str, split: str) -> Count | None:
    """The official count of `task`'s `split`, or None where none is pinned."""
    return OFFICIAL.get((task, split))
