"""X-STILTs' alternatives are conditions an experiment file can list: every one names a
registered seqio mixture, and a tiny grid with them builds its intermediate cells on them."""
import pathlib

import seqio

import xitt_tasks  # noqa: F401  (registers the tasks and mixtures)
from study import experiment, grid

CPU = "gin/study/study_cpu.gin"


def test_every_alternative_condition_is_a_registered_mixture():
    for short in experiment.ALTERNATIVES:
        name = experiment.INTER_PREFIX + short
        assert name in experiment.CONDITIONS
        assert isinstance(seqio.get_mixture_or_task(name), seqio.Mixture), name


def test_tiny_grid_with_the_alternatives_builds(tmp_path: pathlib.Path):
    path = tmp_path / "exp.gin"
    path.write_text("\n".join([
        f"include '{CPU}'",
        "experiment.study.sizes = {'tiny': 'gin/models/mt5_tiny.gin'}",
        "experiment.study.conditions = ['baseline', 'xitt.inter.mnli_mlm', "
        "'xitt.inter.mnli_translate_train', 'xitt.inter.squad_v1_translate_train']",
        "experiment.study.primary_endpoint = {'condition': 'xitt.inter.mnli_mlm', "
        "'measure': 'overall_gain'}",
        "experiment.study.targets = ['xnli', 'xquad']",
        "experiment.study.seeds = [0]",
        "experiment.study.replicate_only = None",
        "experiment.study.condition_targets = {}",
        "experiment.study.target_steps = {'xnli': 2, 'xquad': 2}",
        "experiment.study.train_lengths = {'default': {'inputs': 128, 'targets': 32}, "
        "'mnli_mlm': {'inputs': 64, 'targets': 16}}",
    ]) + "\n")
    exp = experiment.load(str(path))
    assert exp.train_length("mnli_mlm").inputs == 64
    assert exp.train_length("squad_v1_translate_train").inputs == 128  # default: no squad_v1

    cells = grid.build(exp, str(tmp_path / "study"))
    inter = {c.cell_id: c for c in cells if c.kind == "intermediate"}
    assert sorted(inter) == ["tiny/s0/mnli_mlm", "tiny/s0/mnli_translate_train",
                             "tiny/s0/squad_v1_translate_train"]
    assert inter["tiny/s0/mnli_mlm"].train_task == "xitt.inter.mnli_mlm"
    by = grid.by_id(cells)
    assert by["tiny/s0/mnli_translate_train/xnli"].deps == ("tiny/s0/mnli_translate_train",)
    assert by["tiny/s0/mnli_mlm/xquad"].init_from == "tiny/s0/mnli_mlm"
    assert len(cells) == 3 + 4 * 2  # intermediate cells + (baseline + 3) x 2 targets


def test_alternatives_take_their_tasks_lengths_unless_set():
    exp = experiment.load("gin/study/study_mt5.gin", check_files=False)
    assert exp.train_length("squad_v1_mlm") == exp.train_length("squad_v1")
    assert exp.train_length("squad_v1_translate_train").targets == 512
    assert exp.train_length("multitask_mlm") == exp.train_length("multitask")
    assert exp.train_length("mnli_mlm") == exp.train_length("default")
