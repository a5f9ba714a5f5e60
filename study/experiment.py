"""The experiment file: one gin file that describes the whole study grid, parsed into a typed,
frozen `Experiment` and validated before anything trains.

Gin is used only here, at the entry: the file binds `experiment.study` (see
gin/study/study_cpu.gin); `load(path)` parses it, calls that configurable once to collect the
raw fields, and turns them into plain dataclasses. Every bad value (unknown size, condition,
target, language, missing file or checkpoint) raises `ExperimentError` with one line naming the
file, the field, the value and the valid choices.

Steps: each phase states its length in steps; as in t5x the trainer's TRAIN_STEPS is absolute,
so a phase that starts from a checkpoint at step s trains to s + its steps (`pretrained_step`
is the step of the released checkpoints, 1,000,000 for mT5; 0 for a random toy init). A phase
whose published budget is in epochs also declares them (`epochs`); `python -m study budget`
converts them into packed steps on the data the study reads (study/budget.py).

Batches are in tokens per phase (`batch_tokens`), as the mT5 fine-tuning script states them:
sequences per step = tokens / the phase's longest length (Mesh TF's rule). A phase whose
published batch is in examples (XTREME-R's) may train unpacked with that many examples per
step instead (`batch_examples`).
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

TARGETS = ("xnli", "xcopa", "udpos", "wikiann", "xquad", "mlqa", "tydiqa", "mewslix", "lareqa",
           "tatoeba")
INTERMEDIATE_TASKS = ("anli_plus", "mnli", "qqp", "squad_v2", "squad_v1", "hellaswag", "ccg",
                      "cosmos_qa", "commonsense_qa")
MULTITASK = "multitask"
BASELINE = "baseline"
INTER_PREFIX = "xitt.inter."
# X-STILTs' two alternatives (xitt_tasks.mc4, xitt_tasks.translate_train; docs/protocol.md):
# each intermediate task mixed with mC4 span corruption, and machine-translated MNLI / SQuAD.
ALTERNATIVES = (*(t + "_mlm" for t in (*INTERMEDIATE_TASKS, MULTITASK)),
                "mnli_translate_train", "squad_v1_translate_train")
CONDITIONS = (BASELINE, *(INTER_PREFIX + t for t in INTERMEDIATE_TASKS), INTER_PREFIX + MULTITASK,
              *(INTER_PREFIX + t for t in ALTERNATIVES))
SELECTIONS = ("en_dev", "all_dev", "last")
OPTIMIZER_STATES = ("restore", "reset")
XCOPA_RECIPES = ("siqa_copa", "copa")
# Tatoeba's two published variants (docs/protocol.md section 5): XTREME-R embeds with the
# SQuAD-trained encoder (this study's XQuAD cell); X-STILTs embeds with the intermediate-trained
# encoder itself, no target training (for the baseline: the pretrained model).
TATOEBA_ENCODERS = ("xtreme_r", "x_stilts")
POOLINGS = ("mean", "first")
EVAL_SPLITS = ("validation", "test")
DUAL_ENCODER_TARGETS = ("mewslix", "lareqa")
TRAINED_TARGETS = tuple(t for t in TARGETS if t != "tatoeba")
# Targets released with one evaluation set only, whatever `eval_split` says: XQuAD, XQuAD-R
# and Tatoeba as their `test` split; TyDiQA-GoldP as its dev set (TyDi's test set is hidden, so
# GoldP dev is what XTREME and XTREME-R report; with no English dev set either, its cells are
# never selected on it: the last checkpoint, docs/protocol.md section 4).
SINGLE_SET_TARGETS = {"xquad": "test", "lareqa": "test", "tatoeba": "test",
                      "tydiqa": "validation"}
# How each target's checkpoint is chosen and what is reported, for the report (the cell records
# what it did: `selection_protocol`).
SPLIT_RULES = {
    "xnli": ("XNLI English dev (XNLI 1.0 dev-en, from the files or TFDS alike)",
             "XNLI test, 15 languages"),
    "xcopa": ("COPA validation (English)", "XCOPA test, 11 languages"),
    "udpos": ("UD English dev", "UD test sets (labelled originals)"),
    "wikiann": ("WikiANN English dev", "WikiANN test sets (labelled originals)"),
    "xquad": ("SQuAD v1.1 dev (the source of XQuAD's English paragraphs)",
              "XQuAD, its only set"),
    "mlqa": ("SQuAD v1.1 dev", "MLQA test"),
    "tydiqa": ("none: the last checkpoint (no English dev set; GoldP dev is reported)",
               "TyDiQA-GoldP dev, its only labelled set"),
    "mewslix": ("English Wikipedia pairs dev", "WikiNews mentions of the chosen split"),
    "lareqa": ("in-batch retrieval accuracy on English SQuAD dev pairs", "XQuAD-R, its only set"),
    "tatoeba": ("none: no training (the encoder of the XQuAD cell or of the condition)",
                "Tatoeba, its only set (x -> en)"),
}


# What the primary endpoint measures (study.analysis computes it):
#   'overall_gain': the condition's XTREME-R score minus the baseline's, per size (XTREME-R's
#   score: the mean over task categories of the mean over the category's targets of each
#   target's language-averaged metric; study.analysis).
ENDPOINT_MEASURES = ("overall_gain",)


class ExperimentError(ValueError):
    """One line: file, field, value, what was expected."""


def study(**fields: Any) -> dict[str, Any]:
    """The gin-configurable record of an experiment file (every field is bound in the file)."""
    return fields


@dataclasses.dataclass(frozen=True)
class Lengths:
    inputs: int
    targets: int

    def as_dict(self) -> dict[str, int]:
        return {"inputs": self.inputs, "targets": self.targets}


@dataclasses.dataclass(frozen=True)
class Size:
    name: str
    model_gin: str                       # gin/models/*.gin, relative to the repository root
    initial_checkpoint: str | None       # None: random init (toy studies only)
    gin_files: tuple[str, ...]           # run overlays for this size (e.g. gin/tpu/base.gin)


@dataclasses.dataclass(frozen=True)
class PrimaryEndpoint:
    """The one series the study's answer speaks of, declared before any cell runs (choosing it
    after seeing the results would bias the answer); every other series is exploratory."""
    condition: str                       # an intermediate condition, e.g. 'xitt.inter.multitask'
    measure: str                         # one of ENDPOINT_MEASURES

    def as_dict(self) -> dict[str, str]:
        return {"condition": self.condition, "measure": self.measure}


@dataclasses.dataclass(frozen=True)
class ReplicateOnly:
    """Seeds after the first run only these conditions x targets (a toy study's way to show
    seed variance within its time budget; the real study replicates every cell)."""
    conditions: tuple[str, ...]
    targets: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Experiment:
    path: str
    sha256: str
    name: str
    toy: bool
    sizes: tuple[Size, ...]
    conditions: tuple[str, ...]          # 'baseline' or 'xitt.inter.<task>'
    targets: tuple[str, ...]
    languages: Mapping[str, tuple[str, ...]]   # target -> evaluated languages
    seeds: tuple[int, ...]
    pretrained_step: int
    intermediate_steps: Mapping[str, int]  # 'default' or an intermediate task -> steps
    target_steps: Mapping[str, int]      # trained target -> steps of its (last) phase
    xcopa_siqa_steps: int
    xcopa_recipe: str
    tatoeba_encoders: tuple[str, ...]    # TATOEBA_ENCODERS run, the first is the scored one
    optimizer_state_between_phases: str
    optimizer_state_from_pretrained: str
    selection: str
    run_gin_files: tuple[str, ...]
    gin_bindings: tuple[str, ...]
    batch_tokens: Mapping[str, int]      # 'default' or a train_lengths key -> tokens per step
    train_lengths: Mapping[str, Lengths]  # 'default', an intermediate task or a target
    eval_lengths: Mapping[str, Lengths]
    eval_batch_size: int
    eval_split: str
    eval_max_examples: int | None
    retrieval_layer: Mapping[str, int | None]  # size -> layer (None: the final, normed one)
    retrieval_pooling: str
    save_every: int
    keep_checkpoints: int
    data_source: str                     # 'sample' | 'full'
    primary_endpoint: PrimaryEndpoint
    replicate_only: ReplicateOnly | None = None
    # condition -> the targets it runs on (default: every target). A toy study's way to run
    # more conditions within its time budget; the primary endpoint's condition and the
    # baseline always run on every target.
    condition_targets: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    # phase key ('intermediate', an intermediate task, 'xcopa_siqa', a target) -> the published
    # budget in epochs that its steps stand for (checked by `python -m study budget`)
    epochs: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # phase key -> examples per step, trained unpacked (XTREME-R's batches, stated in examples)
    batch_examples: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def size(self, name: str) -> Size:
        return next(s for s in self.sizes if s.name == name)

    def train_length(self, key: str) -> Lengths:
        """Lengths of `key`; an alternative ('squad_v1_mlm') falls back to its task's."""
        return self.train_lengths.get(key) or self.train_lengths.get(
            alternative_base(key), self.train_lengths["default"])

    def batch_size(self, key: str) -> int:
        """Sequences (dual encoders: pairs) per step of phase `key`: its tokens per step over
        its longest length."""
        if key in self.batch_examples:
            return self.batch_examples[key]
        tokens = self.batch_tokens.get(key) or self.batch_tokens.get(
            alternative_base(key), self.batch_tokens["default"])
        lengths = self.train_length(key)
        return max(1, tokens // max(lengths.inputs, lengths.targets))

    def packed(self, key: str) -> bool:
        """Whether phase `key` trains on packed sequences (dual encoders never do)."""
        return key not in self.batch_examples and key not in DUAL_ENCODER_TARGETS

    def intermediate_steps_for(self, condition: str) -> int:
        """Steps of an intermediate condition; an alternative trains as long as its task
        (equal compute: docs/protocol.md)."""
        task = alternative_base(condition_short(condition))
        steps = self.intermediate_steps
        return steps[task] if task in steps else steps["default"]

    def retrieval_layer_for(self, size: str) -> int | None:
        return self.retrieval_layer.get(size)

    def eval_length(self, target: str) -> Lengths:
        return self.eval_lengths.get(target, self.eval_lengths["default"])

    def split_for(self, target: str) -> str:
        return SINGLE_SET_TARGETS.get(target, self.eval_split)

    def conditions_for(self, seed: int) -> tuple[str, ...]:
        if self.replicate_only is None or seed == self.seeds[0]:
            return self.conditions
        return tuple(c for c in self.conditions if c in self.replicate_only.conditions)

    def targets_of(self, condition: str, targets: Sequence[str]) -> tuple[str, ...]:
        """Those of `targets` that `condition` runs on."""
        only = self.condition_targets.get(condition)
        return tuple(targets) if only is None else tuple(t for t in targets if t in only)

    def targets_for(self, seed: int) -> tuple[str, ...]:
        if self.replicate_only is None or seed == self.seeds[0]:
            return self.targets
        return tuple(t for t in self.targets if t in self.replicate_only.targets)


def select_sizes(exp: Experiment, names: str | Sequence[str] | None) -> Experiment:
    """The experiment restricted to some of its sizes (`--sizes base,large`): a coordinator
    runs those cells only; every cell keeps its id and fingerprint."""
    if not names:
        return exp
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    known = [s.name for s in exp.sizes]
    for name in wanted:
        if name not in known:
            raise ExperimentError(f"{exp.path}: --sizes {name!r}: expected some of "
                                  f"{', '.join(known)}")
    return dataclasses.replace(exp, sizes=tuple(s for s in exp.sizes if s.name in wanted))


def alternative_base(key: str) -> str:
    """'mnli_mlm', 'mnli_translate_train' -> 'mnli'; anything else unchanged."""
    return key.removesuffix("_mlm").removesuffix("_translate_train")


def condition_short(condition: str) -> str:
    """'xitt.inter.mnli' -> 'mnli'; 'baseline' stays."""
    return condition[len(INTER_PREFIX):] if condition.startswith(INTER_PREFIX) else condition


# ------------------------------------------------------------------------------ parsing

_REQUIRED = ("name", "sizes", "conditions", "targets", "seeds", "intermediate_steps",
             "target_steps", "run_gin_files", "batch_tokens", "train_lengths", "eval_lengths",
             "primary_endpoint")
# Fields renamed since earlier experiment files: the one-line hint their error gives.
_RENAMED = {
    "batch_size": "replaced by batch_tokens, tokens per step per phase (sequences = tokens / "
                  "the longest length): batch_size = 128 at 1024 tokens is batch_tokens = "
                  "{'default': 131072}",
    "tatoeba_encoder": "replaced by tatoeba_encoders, a list of 'xtreme_r' (was 'squad_v1') "
                       "and 'x_stilts' (was 'pretrained')",
}


def load(path: str | Path, *, check_files: bool = True) -> Experiment:
    """Parse and validate an experiment file (clears gin's global config)."""
    import gin

    from study import experiment as this_module  # the configurable as the file imports it

    p = Path(path)
    if not p.is_file():
        raise ExperimentError(f"{path}: no such experiment file")
    gin.clear_config()
    gin.add_config_file_search_path(str(REPO_ROOT))
    try:
        gin.parse_config_file(str(p))
    except (ValueError, KeyError, SyntaxError, ImportError, OSError) as e:
        raise ExperimentError(f"{path}: {_first_line(e)}") from None
    try:
        fields = gin.get_configurable(this_module.study)()
    except (TypeError, ValueError) as e:
        raise ExperimentError(f"{path}: {_first_line(e)}") from None
    finally:
        gin.clear_config()
    return from_fields(fields, path=str(p), sha256=hashlib.sha256(p.read_bytes()).hexdigest(),
                       check_files=check_files)


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


class _Checker:
    def __init__(self, path: str, fields: Mapping[str, Any]) -> None:
        self.path, self.fields = path, fields

    def fail(self, field: str, value: Any, expected: str) -> None:
        raise ExperimentError(f"{self.path}: {field} = {value!r}: {expected}")

    def get(self, field: str, default: Any = ...) -> Any:
        if field in self.fields:
            return self.fields[field]
        if default is ...:
            raise ExperimentError(f"{self.path}: experiment.study.{field} is not set "
                                  "(required field)")
        return default

    def choice(self, field: str, value: Any, choices: Sequence[Any]) -> Any:
        if value not in choices:
            self.fail(field, value, f"expected one of {', '.join(map(str, choices))}")
        return value

    def pos_int(self, field: str, value: Any, *, zero: bool = False) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
            self.fail(field, value, f"expected an int >= {0 if zero else 1}")
        return value

    def str_list(self, field: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
                not all(isinstance(v, str) for v in value):
            self.fail(field, value, "expected a list of strings")
        if len(set(value)) != len(value):
            self.fail(field, value, "expected no duplicates")
        return tuple(value)

    def mapping(self, field: str, value: Any) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(field, value, "expected a dict")
        return value

    def file(self, field: str, value: Any, check: bool) -> str:
        if not isinstance(value, str):
            self.fail(field, value, "expected a path string")
        if check and not (REPO_ROOT / value).is_file() and not Path(value).is_file():
            self.fail(field, value, f"no such file (relative to {REPO_ROOT} or the working "
                      "directory)")
        return value

    def lengths(self, field: str, value: Any, keys: Sequence[str]) -> dict[str, Lengths]:
        out = {}
        for key, lens in self.mapping(field, value).items():
            self.choice(f"{field} key", key, keys)
            if not isinstance(lens, Mapping) or set(lens) != {"inputs", "targets"}:
                self.fail(f"{field}[{key!r}]", lens, "expected {'inputs': N, 'targets': M}")
            out[key] = Lengths(self.pos_int(f"{field}[{key!r}]['inputs']", lens["inputs"]),
                               self.pos_int(f"{field}[{key!r}]['targets']", lens["targets"]))
        if "default" not in out:
            self.fail(field, value, "expected a 'default' entry")
        return out


def from_fields(fields: Mapping[str, Any], *, path: str = "<experiment>", sha256: str = "",
                check_files: bool = True) -> Experiment:
    from xitt_tasks import languages as xlang  # the reference language lists

    c = _Checker(path, fields)
    known = (set(_REQUIRED) | {f.name for f in dataclasses.fields(Experiment)} | {
        "initial_checkpoints", "size_gin_files", "languages"}) - {"path", "sha256"}
    for key in fields:
        if key in _RENAMED:
            raise ExperimentError(f"{path}: experiment.study.{key} is {_RENAMED[key]}")
        if key not in known:
            raise ExperimentError(f"{path}: unknown field experiment.study.{key}; expected one "
                                  f"of {', '.join(sorted(known))}")
    for key in _REQUIRED:
        c.get(key)

    name = c.get("name")
    if not isinstance(name, str) or not name:
        c.fail("name", name, "expected a non-empty string")
    toy = c.get("toy", False)
    if not isinstance(toy, bool):
        c.fail("toy", toy, "expected True or False")

    # sizes: name -> model gin file; initial checkpoints; per-size overlays
    raw_sizes = c.mapping("sizes", c.get("sizes"))
    if not raw_sizes:
        c.fail("sizes", raw_sizes, "expected at least one size")
    ckpts = c.mapping("initial_checkpoints", c.get("initial_checkpoints", {}))
    overlays = c.mapping("size_gin_files", c.get("size_gin_files", {}))
    for field, mapping in (("initial_checkpoints", ckpts), ("size_gin_files", overlays)):
        for key in mapping:
            c.choice(f"{field} key", key, list(raw_sizes))
    sizes = []
    for sname, model_gin in raw_sizes.items():
        if not isinstance(sname, str) or not sname.replace("_", "").isalnum():
            c.fail("sizes key", sname, "expected a name of letters, digits and _")
        model_gin = c.file(f"sizes[{sname!r}]", model_gin, check_files)
        ckpt = ckpts.get(sname)
        if ckpt is None and not toy:
            c.fail(f"initial_checkpoints[{sname!r}]", ckpt,
                   "a real study starts every size from a pretrained checkpoint (random init "
                   "is for toy = True studies only)")
        if ckpt is not None:
            if not isinstance(ckpt, str):
                c.fail(f"initial_checkpoints[{sname!r}]", ckpt, "expected a path string")
            if check_files and "://" not in ckpt and not Path(ckpt).exists():
                c.fail(f"initial_checkpoints[{sname!r}]", ckpt,
                       "missing initial checkpoint: no such directory (expected a t5x "
                       "checkpoint_<step> directory or a Hugging Face model directory)")
        extra = tuple(c.file(f"size_gin_files[{sname!r}]", f, check_files)
                      for f in c.str_list(f"size_gin_files[{sname!r}]", overlays.get(sname, [])))
        sizes.append(Size(sname, model_gin, ckpt, extra))

    conditions = c.str_list("conditions", c.get("conditions"))
    for cond in conditions:
        c.choice("conditions", cond, CONDITIONS)
    if BASELINE not in conditions:
        c.fail("conditions", list(conditions), f"expected {BASELINE!r} among them (every gain "
               "is measured against it)")
    targets = c.str_list("targets", c.get("targets"))
    for t in targets:
        c.choice("targets", t, TARGETS)
    if not targets:
        c.fail("targets", [], "expected at least one target")

    langs: dict[str, tuple[str, ...]] = {t: xlang.TASK_LANGUAGES[t] for t in targets}
    for t, chosen in c.mapping("languages", c.get("languages", {})).items():
        c.choice("languages key", t, targets)
        chosen = c.str_list(f"languages[{t!r}]", chosen)
        for lang in chosen:
            c.choice(f"languages[{t!r}]", lang, xlang.TASK_LANGUAGES[t])
        langs[t] = chosen

    seeds = c.get("seeds")
    if not isinstance(seeds, (list, tuple)) or not seeds or len(set(seeds)) != len(seeds):
        c.fail("seeds", seeds, "expected a non-empty list of distinct ints")
    seeds = tuple(c.pos_int("seeds", s, zero=True) for s in seeds)

    target_steps = c.mapping("target_steps", c.get("target_steps"))
    for t in target_steps:
        c.choice("target_steps key", t, TRAINED_TARGETS)
    for t in targets:
        if t in TRAINED_TARGETS:
            if t not in target_steps:
                c.fail("target_steps", dict(target_steps), f"expected an entry for {t!r}")
            c.pos_int(f"target_steps[{t!r}]", target_steps[t])
    encoders = c.str_list("tatoeba_encoders", c.get("tatoeba_encoders", ["xtreme_r"]))
    for enc in encoders:
        c.choice("tatoeba_encoders", enc, TATOEBA_ENCODERS)
    if not encoders:
        c.fail("tatoeba_encoders", [], f"expected some of {', '.join(TATOEBA_ENCODERS)}")
    tatoeba_encoder = "xtreme_r" if "xtreme_r" in encoders else "x_stilts"
    if "tatoeba" in targets and "xtreme_r" in encoders and "xquad" not in targets:
        c.fail("tatoeba_encoders", list(encoders), "XTREME-R's variant embeds with the "
               "SQuAD-v1.1-trained encoder, the XQuAD target's model: add 'xquad' to targets "
               "or use ['x_stilts']")

    raw_layer = c.get("retrieval_layer", None)
    if isinstance(raw_layer, Mapping):
        # a size of the grid, or one an overlay may have dropped (gin/models/mt5_<size>.gin)
        known_sizes = sorted({*raw_sizes, *(p.stem[4:] for p in
                                            (REPO_ROOT / "gin" / "models").glob("mt5_*.gin"))})
        for key, layer in raw_layer.items():
            c.choice("retrieval_layer key", key, known_sizes)
            if layer is not None:
                c.pos_int(f"retrieval_layer[{key!r}]", layer, zero=True)
        retrieval_layer = {s: raw_layer.get(s) for s in raw_sizes}
    else:
        if raw_layer is not None:
            c.pos_int("retrieval_layer", raw_layer, zero=True)
        retrieval_layer = {s: raw_layer for s in raw_sizes}
    train_keys = ("default", *INTERMEDIATE_TASKS, MULTITASK, *ALTERNATIVES, *TARGETS,
                  "xcopa_siqa")
    max_examples = c.get("eval_max_examples", None)
    if max_examples is not None:
        c.pos_int("eval_max_examples", max_examples)
    data_source = c.choice("data_source", c.get("data_source", "sample"), ("sample", "full"))
    bindings = c.str_list("gin_bindings", c.get("gin_bindings", []))
    endpoint = _primary_endpoint(c, conditions)

    return Experiment(
        path=path, sha256=sha256, name=name, toy=toy, sizes=tuple(sizes),
        conditions=conditions, targets=targets, languages=langs, seeds=seeds,
        pretrained_step=c.pos_int("pretrained_step", c.get("pretrained_step", 0), zero=True),
        intermediate_steps=_intermediate_steps(c),
        target_steps={t: int(v) for t, v in target_steps.items() if t in targets},
        xcopa_siqa_steps=c.pos_int("xcopa_siqa_steps", c.get("xcopa_siqa_steps", 1)),
        xcopa_recipe=c.choice("xcopa_recipe", c.get("xcopa_recipe", "siqa_copa"),
                              XCOPA_RECIPES),
        tatoeba_encoders=encoders,
        optimizer_state_between_phases=c.choice(
            "optimizer_state_between_phases",
            c.get("optimizer_state_between_phases", "restore"), OPTIMIZER_STATES),
        optimizer_state_from_pretrained=c.choice(
            "optimizer_state_from_pretrained",
            c.get("optimizer_state_from_pretrained", "restore"), OPTIMIZER_STATES),
        selection=c.choice("selection", c.get("selection", "en_dev"), SELECTIONS),
        run_gin_files=tuple(c.file("run_gin_files", f, check_files)
                            for f in c.str_list("run_gin_files", c.get("run_gin_files"))),
        gin_bindings=bindings,
        batch_tokens=_batch_tokens(c, train_keys),
        batch_examples=_batch_examples(c, train_keys),
        train_lengths=c.lengths("train_lengths", c.get("train_lengths"), train_keys),
        eval_lengths=c.lengths("eval_lengths", c.get("eval_lengths"), ("default", *TARGETS)),
        eval_batch_size=c.pos_int("eval_batch_size", c.get("eval_batch_size", 32)),
        eval_split=c.choice("eval_split", c.get("eval_split", "validation"), EVAL_SPLITS),
        eval_max_examples=max_examples,
        retrieval_layer=retrieval_layer,
        retrieval_pooling=c.choice("retrieval_pooling", c.get("retrieval_pooling", "mean"),
                                   POOLINGS),
        save_every=c.pos_int("save_every", c.get("save_every", 200)),
        keep_checkpoints=c.pos_int("keep_checkpoints", c.get("keep_checkpoints", 1)),
        data_source=data_source,
        primary_endpoint=endpoint,
        replicate_only=_replicate_only(c, conditions, targets, endpoint, tatoeba_encoder),
        condition_targets=_condition_targets(c, conditions, targets, endpoint, tatoeba_encoder),
        epochs=_epochs(c, train_keys),
    )


def _intermediate_steps(c: _Checker) -> dict[str, int]:
    raw = c.get("intermediate_steps")
    if not isinstance(raw, Mapping):
        return {"default": c.pos_int("intermediate_steps", raw)}
    for key, steps in raw.items():
        c.choice("intermediate_steps key", key, ("default", *INTERMEDIATE_TASKS, MULTITASK))
        c.pos_int(f"intermediate_steps[{key!r}]", steps)
    if "default" not in raw and set(raw) != {*INTERMEDIATE_TASKS, MULTITASK}:
        c.fail("intermediate_steps", dict(raw), "expected a 'default' entry or one per task")
    return dict(raw)


def _batch_tokens(c: _Checker, keys: Sequence[str]) -> dict[str, int]:
    raw = c.mapping("batch_tokens", c.get("batch_tokens"))
    for key, tokens in raw.items():
        c.choice("batch_tokens key", key, keys)
        c.pos_int(f"batch_tokens[{key!r}]", tokens)
    if "default" not in raw:
        c.fail("batch_tokens", dict(raw), "expected a 'default' entry")
    return dict(raw)


def _batch_examples(c: _Checker, keys: Sequence[str]) -> dict[str, int]:
    raw = c.mapping("batch_examples", c.get("batch_examples", {}))
    for key, examples in raw.items():
        c.choice("batch_examples key", key, [k for k in keys if k != "default"])
        c.pos_int(f"batch_examples[{key!r}]", examples)
    return dict(raw)


def _epochs(c: _Checker, keys: Sequence[str]) -> dict[str, float]:
    raw = c.mapping("epochs", c.get("epochs", {}))
    for key, value in raw.items():
        c.choice("epochs key", key, ("intermediate", *keys))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            c.fail(f"epochs[{key!r}]", value, "expected a number of epochs > 0")
    return {k: float(v) for k, v in raw.items()}


def _condition_targets(c: _Checker, conditions: Sequence[str], targets: Sequence[str],
                       endpoint: PrimaryEndpoint, tatoeba_encoder: str,
                       ) -> dict[str, tuple[str, ...]]:
    out = {}
    for cond, chosen in c.mapping("condition_targets", c.get("condition_targets", {})).items():
        # a known condition; one this grid does not run is ignored (an overlay may drop it)
        c.choice("condition_targets key", cond,
                 [x for x in CONDITIONS if x not in (BASELINE, endpoint.condition)])
        if cond not in conditions:
            continue
        field = f"condition_targets[{cond!r}]"
        chosen = c.str_list(field, chosen)
        if not chosen:
            c.fail(field, [], "expected at least one target")
        for t in chosen:
            c.choice(field, t, targets)
        if "tatoeba" in chosen and tatoeba_encoder == "xtreme_r" and "xquad" not in chosen:
            c.fail(field, list(chosen), "Tatoeba embeds with the XQuAD cell's encoder: add "
                   "'xquad'")
        out[cond] = chosen
    return out


def _replicate_only(c: _Checker, conditions: Sequence[str], targets: Sequence[str],
                    endpoint: PrimaryEndpoint, tatoeba_encoder: str) -> ReplicateOnly | None:
    raw = c.get("replicate_only", None)
    if raw is None:
        return None
    raw = c.mapping("replicate_only", raw)
    if set(raw) != {"conditions", "targets"}:
        c.fail("replicate_only", dict(raw), "expected {'conditions': [...], 'targets': [...]}")
    conds = c.str_list("replicate_only['conditions']", raw["conditions"])
    for cond in conds:
        c.choice("replicate_only['conditions']", cond, conditions)
    for needed in (BASELINE, endpoint.condition):
        if needed not in conds:
            c.fail("replicate_only['conditions']", list(conds), f"expected {needed!r} among "
                   "them (the primary endpoint is the baseline and its condition, every seed)")
    chosen = c.str_list("replicate_only['targets']", raw["targets"])
    for t in chosen:
        c.choice("replicate_only['targets']", t, targets)
    if not chosen:
        c.fail("replicate_only['targets']", [], "expected at least one target")
    if "tatoeba" in chosen and tatoeba_encoder == "xtreme_r" and "xquad" not in chosen:
        c.fail("replicate_only['targets']", list(chosen), "Tatoeba embeds with the XQuAD "
               "cell's encoder: add 'xquad'")
    return ReplicateOnly(conds, chosen)


def _primary_endpoint(c: _Checker, conditions: Sequence[str]) -> PrimaryEndpoint:
    raw = c.mapping("primary_endpoint", c.get("primary_endpoint"))
    if set(raw) != {"condition", "measure"}:
        c.fail("primary_endpoint", dict(raw), "expected {'condition': C, 'measure': M}")
    # A grid with no intermediate condition (a baseline-only smoke run) measures no gain: it
    # only needs a known condition there.
    listed = [x for x in conditions if x != BASELINE] or [x for x in CONDITIONS if x != BASELINE]
    cond = c.choice("primary_endpoint['condition']", raw["condition"], listed)
    measure = c.choice("primary_endpoint['measure']", raw["measure"], ENDPOINT_MEASURES)
    return PrimaryEndpoint(cond, measure)
