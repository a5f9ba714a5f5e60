"""MLQA exact match and F1 with the per-language normalisation of the official MLQA script.

Semantics of `mlqa_evaluation_v1.py` (facebookresearch/MLQA; copied as XTREME's
`third_party/evaluate_mlqa.py`), re-implemented, applied in this order:

1. lowercase;
2. drop every character whose Unicode category starts with 'P', plus `string.punctuation`
   (so '$', '+', '<', '=', '>', '^', '`', '|', '~' go too although they are symbols);
3. replace articles by a space, with `re` word boundaries (Unicode-aware):
   en `a an the`; es `un una unos unas el la los las`;
   de `ein eine einen einem eines einer der die das den dem des`;
   vi `của là cái chiếc những`; hi and zh: none;
   ar: the script's pattern `'\\sال^|ال'` whose first branch can never match (`^` after
   characters), so EVERY occurrence of 'ال' is replaced by a space, also inside a word
   ('مال' -> 'م ');
4. tokenise: whitespace split for en es de ar hi vi; for zh "mixed segmentation": every
   character in U+4E00..U+9FA5 (the script's range, not all of CJK) and every punctuation
   character is a token of its own, runs of other characters are whitespace-split;
   then tokens are joined by single spaces.

EM compares the normalised strings; F1 is the SQuAD v1.1 token F1 (0 when nothing is shared)
over the whitespace split of the normalised strings; best over gold answers; 100 * mean.
Raw/padded dict targets and predictions are handled as in `squad` (`*_padded` keys).
"""

import functools
import re
import string
import sys
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from xitt_tasks.metrics.squad import squad_v1_em_f1


@functools.cache
def punctuation() -> frozenset[str]:
    """The script's PUNCT set (built on first use: scanning all code points takes ~0.3 s)."""
    return frozenset(
        {chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")}
        | set(string.punctuation))


_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "ar": re.compile("ال"),
    "hi": None,
    "zh": None,
}
LANGUAGES = tuple(sorted(_ARTICLES))
_CJK = re.compile("[\u4e00-\u9fa5]")


def mixed_segmentation(text: str) -> list[str]:
    """Chinese tokenisation of the MLQA script: CJK chars and punctuation stand alone."""
    punct = punctuation()
    tokens: list[str] = []
    run = ""
    for ch in text:
        if _CJK.match(ch) or ch in punct:
            tokens.extend(run.split())
            run = ""
            tokens.append(ch)
        else:
            run += ch
    tokens.extend(run.split())
    return tokens


def normalize_answer(text: str, lang: str) -> str:
    """MLQA normalisation of one answer for language `lang`."""
    if lang not in _ARTICLES:
        raise ValueError(f"MLQA language {lang!r} unknown; expected one of {LANGUAGES}")
    punct = punctuation()
    text = "".join(ch for ch in text.lower() if ch not in punct)
    articles = _ARTICLES[lang]
    if articles is not None:
        text = articles.sub(" ", text)
    tokens = mixed_segmentation(text) if lang == "zh" else text.split()
    return " ".join(t for t in tokens if t.strip())


def mlqa_metrics(lang: str) -> Callable[..., dict[str, float]]:
    """seqio metric fn `(targets, predictions) -> {'exact_match', 'f1'}` for one language."""
    if lang not in _ARTICLES:
        raise ValueError(f"mlqa_metrics: language {lang!r} unknown; expected one of {LANGUAGES}")

    def normalize(text: str) -> str:
        return normalize_answer(text, lang)

    def mlqa(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
        return squad_v1_em_f1(targets, predictions, normalize=normalize, metric=f"mlqa_{lang}")

    mlqa.__name__ = f"mlqa_{lang}"
    return mlqa
