"""Languages of the ten XTREME-R target tasks, in the reference order of each benchmark.

The orders follow the XTREME repository (download scripts and task tables), so per-language
result tables line up with published ones.
"""

XNLI = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
XCOPA = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")
UDPOS = (
    "af", "ar", "bg", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu",
    "id", "it", "ja", "kk", "ko", "mr", "nl", "pt", "ru", "ta", "te", "th", "tl", "tr", "ur",
    "vi", "yo", "zh", "lt", "pl", "uk", "wo", "ro",
)
WIKIANN = (
    "ar", "he", "vi", "id", "jv", "ms", "tl", "eu", "ml", "ta", "te", "af", "nl", "en", "de",
    "el", "bn", "hi", "mr", "ur", "fa", "fr", "it", "pt", "es", "bg", "ru", "ja", "ka", "ko",
    "th", "sw", "yo", "my", "zh", "kk", "tr", "et", "fi", "hu", "qu", "pl", "uk", "az", "lt",
    "pa", "gu", "ro",
)
XQUAD = ("en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi", "ro")
MLQA = ("en", "es", "de", "ar", "hi", "vi", "zh")
TYDIQA = ("en", "ar", "bn", "fi", "id", "ko", "ru", "sw", "te")
MEWSLIX = ("ar", "de", "en", "es", "fa", "ja", "pl", "ro", "ta", "tr", "uk")
LAREQA = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
TATOEBA = (
    "ar", "he", "vi", "id", "jv", "tl", "eu", "ml", "ta", "te", "af", "nl", "de", "el", "bn",
    "hi", "mr", "ur", "fa", "fr", "it", "pt", "es", "bg", "ru", "ja", "ka", "ko", "th", "sw",
    "zh", "kk", "tr", "et", "fi", "hu", "az", "lt", "pl", "uk", "ro",
)

TASK_LANGUAGES: dict[str, tuple[str, ...]] = {
    "xnli": XNLI,
    "xcopa": XCOPA,
    "udpos": UDPOS,
    "wikiann": WIKIANN,
    "xquad": XQUAD,
    "mlqa": MLQA,
    "tydiqa": TYDIQA,
    "mewslix": MEWSLIX,
    "lareqa": LAREQA,
    "tatoeba": TATOEBA,
}

# The 50 languages of XTREME-R (the union of the lists above), sorted.
XTREME_R_LANGUAGES: tuple[str, ...] = tuple(
    sorted({lang for langs in TASK_LANGUAGES.values() for lang in langs})
)


def languages(task: str) -> tuple[str, ...]:
    """The languages of an XTREME-R target task, in reference order."""
    if task not in TASK_LANGUAGES:
        raise ValueError(
            f"unknown XTREME-R task {task!r}; expected one of {sorted(TASK_LANGUAGES)}"
        )
    return TASK_LANGUAGES[task]


def check_language(task: str, lang: str) -> str:
    """`lang` if `task` is evaluated in it, else a ValueError listing the valid languages."""
    valid = languages(task)
    if lang not in valid:
        raise ValueError(
            f"language {lang!r} is not part of {task} ({len(valid)} languages: "
            f"{' '.join(valid)})"
        )
    return lang
