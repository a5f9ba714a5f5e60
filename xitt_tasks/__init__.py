"""seqio tasks and mixtures of the study; importing this package registers all of them.

Names (see README.md): `xitt.inter.<task>` intermediate tasks and `xitt.inter.multitask`;
`xitt.<target>.train.<name>` training tasks, `xitt.<target>.<lang>` evaluation tasks,
`xitt.<target>.all_langs` and `xitt.<target>.zeroshot` mixtures; `.rank` variants of
multiple-choice tasks; `xitt.mc4` (span corruption), `xitt.inter.<task>_mlm` and
`xitt.inter.<task>_translate_train` (X-STILTs' alternatives).
"""
from xitt_common import quiet

if (quiet.module_run_as_main() or "").split(".")[0] == __name__:  # python -m xitt_tasks[.x]:
    quiet.entry_point(own_flag=True)  # first, TF prints start-up lines at import

import seqio  # noqa: E402

from xitt_tasks import (  # noqa: E402
    intermediate,
    languages,
    mc4,
    targets_classification,
    targets_qa,
    targets_retrieval,
    targets_structured,
    translate_train,
)

TARGETS = ("xnli", "xcopa", "udpos", "wikiann", "xquad", "mlqa", "tydiqa", "mewslix", "lareqa",
           "tatoeba")


def register_all() -> None:
    """(Re)register every task and mixture; importing the package already did this once."""
    intermediate.register()
    targets_classification.register()
    targets_structured.register()
    targets_qa.register()
    targets_retrieval.register()
    mc4.register()  # X-STILTs' alternatives: intermediate tasks + mC4 span corruption,
    translate_train.register()  # and machine-translated intermediate data


def eval_task_name(target: str, lang: str) -> str:
    """`xitt.<target>.<lang>`, after checking `lang` is one of the target's languages."""
    languages.check_language(target, lang)
    return f"xitt.{target}.{lang}"


def eval_task(target: str, lang: str) -> seqio.Task:
    return seqio.get_mixture_or_task(eval_task_name(target, lang))


register_all()
