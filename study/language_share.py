"""Per-language gains against the language's share of mT5's pre-training data (mC4).

The shares are the mT5 paper's mC4 table, shipped as study/data/mc4_language_sizes.tsv (see
its header: rows checked against the paper's table say so in their `confidence` column).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import numpy as np

from study.variance import Est, Missing, combine

MC4_FILE = pathlib.Path(__file__).parent / "data" / "mc4_language_sizes.tsv"
CONFIDENCES = ("checked", "recalled", "uncertain", "absent")
_HEADER = ["language", "tokens_billions", "pages_millions", "mt5_percent", "confidence"]


@dataclasses.dataclass(frozen=True)
class MC4Size:
    """One row of the mT5 paper's mC4 table (see the data file's header for its source)."""

    language: str
    tokens_billions: float | None
    pages_millions: float | None
    mt5_percent: float | None
    confidence: str


def load_mc4_sizes(path: str | pathlib.Path = MC4_FILE) -> dict[str, MC4Size]:
    """The shipped per-language mC4 sizes; '-' marks a language mT5 was not trained on."""
    path = pathlib.Path(path)
    out: dict[str, MC4Size] = {}
    header = None
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if header is None:
            header = fields
            if header != _HEADER:
                raise ValueError(f"{path}:{lineno}: header {header}; expected "
                                 f"{', '.join(_HEADER)}")
            continue
        if len(fields) != len(header):
            raise ValueError(f"{path}:{lineno}: {len(fields)} fields; expected {len(header)}")
        lang, conf = fields[0], fields[4]
        if conf not in CONFIDENCES:
            raise ValueError(f"{path}:{lineno}: confidence {conf!r}; expected one of "
                             f"{', '.join(CONFIDENCES)}")
        nums = []
        for name, text in zip(header[1:4], fields[1:4]):
            try:
                nums.append(None if text == "-" else float(text))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: {name} {text!r}; expected a number or "
                                 "'-'") from None
        if (nums[2] is None) != (conf == "absent"):
            raise ValueError(f"{path}:{lineno}: mt5_percent {fields[3]!r} with confidence "
                             f"{conf!r}; '-' exactly when absent")
        if lang in out:
            raise ValueError(f"{path}:{lineno}: language {lang!r} listed twice")
        out[lang] = MC4Size(lang, *nums, conf)
    return out


@dataclasses.dataclass(frozen=True)
class ShareFit:
    """Per-language gain against log10 of the language's share of mT5 pre-training data."""

    slope: Est
    intercept: float
    languages: tuple[str, ...]
    excluded: tuple[str, ...]


def gain_vs_share(view: dict, mc4: dict[str, MC4Size]) -> ShareFit | Missing:
    """OLS of the per-language gain on log10(mT5 %): points per 10x more pre-training data."""
    used = [lang for lang, v in view.items()
            if isinstance(v, Est) and lang in mc4 and mc4[lang].mt5_percent]
    excluded = tuple(f"{lang} ({view[lang].reason})" if isinstance(view[lang], Missing)
                     else f"{lang} (not in mT5's pre-training data)"
                     for lang in view if lang not in used)
    if len({mc4[lang].mt5_percent for lang in used}) < 2:
        return Missing(f"needs two languages with distinct mC4 shares; have {len(used)}")
    x = np.log10([mc4[lang].mt5_percent for lang in used])
    w = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
    slope = combine([view[lang] for lang in used], list(w))
    intercept = float(np.mean([view[lang].point for lang in used]) - slope.point * x.mean())
    return ShareFit(slope, intercept if math.isfinite(intercept) else 0.0, tuple(used),
                    excluded)
