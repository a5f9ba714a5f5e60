"""The grid: intermediate models trained once per size and seed and fanned out to every
target; recipes as dependency chains; the executor contract's attributes."""
import collections
import re

import pytest

from study import experiment, grid

CPU = "gin/study/study_cpu.gin"


def _cells(study_dir="/tmp/s"):
    exp = experiment.load(CPU)
    return exp, grid.build(exp, study_dir)


def test_every_cell_after_its_deps_with_the_executor_contract():
    exp, cells = _cells()
    seen = set()
    for c in cells:
        assert set(c.deps) <= seen
        seen.add(c.cell_id)
        assert list(c.command) == ["python", "-m", "study", "run-cell", CPU, "--cell",
                                   c.cell_id, "--study_dir", "/tmp/s"]
        assert c.model_dir == "/tmp/s/models/" + c.cell_id
        assert c.kind in grid.KINDS and isinstance(c.seed, int)
    assert len(seen) == len(cells)


def test_intermediate_trained_once_per_size_and_seed_and_fanned_out():
    exp, cells = _cells()
    inter = [c for c in cells if c.kind == "intermediate"]
    assert len(inter) == len(exp.sizes) * sum(len(exp.conditions_for(s)) - 1 for s in exp.seeds)
    counts = collections.Counter((c.size, c.seed, c.condition) for c in inter)
    assert set(counts.values()) == {1}
    users = collections.Counter(d for c in cells for d in c.deps)
    # each intermediate model feeds every target of its condition (XCOPA via its SIQA stage,
    # Tatoeba's XTREME-R variant via the XQuAD cell, its X-STILTs variant directly): the first
    # seed's 10 direct users (8 targets + the SIQA stage + Tatoeba X-STILTs)
    assert exp.tatoeba_encoders == ("xtreme_r", "x_stilts")
    for c in inter:
        targets = exp.targets_of(c.condition, exp.targets_for(c.seed))
        assert users[c.cell_id] == len(targets)
        assert users[c.cell_id] == len(exp.targets) or c.seed != exp.seeds[0] or \
            c.condition in exp.condition_targets
        assert c.train_task == c.condition and c.start_step == exp.pretrained_step
        assert c.train_steps == exp.pretrained_step + exp.intermediate_steps_for(c.condition)


def test_recipes_and_absolute_steps():
    exp, cells = _cells()
    by = grid.by_id(cells)
    copa = by["tiny/s0/multitask/xcopa"]
    siqa = by["tiny/s0/multitask/xcopa_siqa"]
    assert copa.deps == (siqa.cell_id,) and siqa.deps == ("tiny/s0/multitask",)
    assert siqa.train_task == "xitt.xcopa.train.siqa" and copa.train_task == "xitt.xcopa.train.copa"
    assert copa.start_step == exp.intermediate_steps_for("xitt.inter.multitask") + \
        exp.xcopa_siqa_steps
    assert copa.train_steps == copa.start_step + exp.target_steps["xcopa"]
    tat = by["tiny2/s0/baseline/tatoeba"]
    assert tat.kind == "embedding" and tat.deps == ("tiny2/s0/baseline/xquad",)
    assert tat.steps == 0 and tat.train_task is None and tat.recipe == "official"
    x_stilts = by["tiny2/s0/multitask/tatoeba_x_stilts"]  # the intermediate-trained encoder itself
    assert x_stilts.deps == ("tiny2/s0/multitask",) and x_stilts.init_from == "tiny2/s0/multitask"
    assert x_stilts.recipe == "raw" and x_stilts.target == "tatoeba" and x_stilts.steps == 0
    assert by["tiny/s0/baseline/xnli"].deps == ()
    assert by["tiny/s0/baseline/xnli"].init_from is None
    assert by["tiny/s0/multitask/mewslix"].kind == "retrieval"
    assert by["tiny/s0/multitask/xnli"].train_task == "xitt.xnli.train.en"


def test_grid_size_of_the_toy_study():
    exp, cells = _cells()
    n = 0
    for seed in exp.seeds:
        conditions = exp.conditions_for(seed)
        for cond in conditions:
            targets = exp.targets_of(cond, exp.targets_for(seed))
            n += (cond != "baseline") + len(targets) + ("xcopa" in targets)  # + SIQA stage
            n += "tatoeba" in targets  # + Tatoeba's X-STILTs variant
    assert len(cells) == len(exp.sizes) * n


def test_later_seeds_replicate_only_the_chosen_conditions_and_targets(tmp_path):
    path = tmp_path / "rep.gin"
    path.write_text(f"include '{CPU}'\nexperiment.study.seeds = [0, 1]\n"
                    "experiment.study.replicate_only = {'conditions': ['baseline', "
                    "'xitt.inter.multitask'], 'targets': ['xnli', 'xquad', 'tatoeba']}\n")
    exp = experiment.load(str(path))
    later = [c for c in grid.build(exp, "/s") if c.seed == 1]
    assert {(c.size, c.condition, c.target) for c in later if c.kind != "intermediate"} == {
        (size, cond, t) for size in ("tiny", "tiny2") for cond in ("baseline",
                                                                   "xitt.inter.multitask")
        for t in ("xnli", "xquad", "tatoeba")}
    assert {c.cell_id for c in later if c.kind == "intermediate"} == {"tiny/s1/multitask",
                                                                      "tiny2/s1/multitask"}
    first = [c for c in grid.build(exp, "/s") if c.seed == 0]
    assert {c.target for c in first} == {*experiment.TARGETS, None}  # all of seed 0
    assert {c.condition for c in first} == set(exp.conditions)


@pytest.mark.parametrize("replicate, expected", [
    ("{'conditions': ['baseline'], 'targets': ['xnli']}", "'xitt.inter.multitask' among them"),
    ("{'conditions': ['baseline', 'xitt.inter.multitask'], 'targets': ['tatoeba']}",
     "Tatoeba embeds with the XQuAD cell's encoder"),
    ("{'conditions': ['baseline', 'xitt.inter.multitask'], 'targets': ['xnli', 'pawsx']}",
     "replicate_only['targets'] = 'pawsx'"),
])
def test_replicate_only_is_checked(tmp_path, replicate, expected):
    path = tmp_path / "rep.gin"
    path.write_text(f"include '{CPU}'\nexperiment.study.replicate_only = {replicate}\n")
    with pytest.raises(experiment.ExperimentError, match=re.escape(expected)):
        experiment.load(str(path))


def test_raw_recipes(tmp_path):
    path = tmp_path / "raw.gin"
    path.write_text(f"include '{CPU}'\nexperiment.study.xcopa_recipe = 'copa'\n"
                    "experiment.study.tatoeba_encoders = ['x_stilts']\n")
    exp = experiment.load(str(path))
    by = grid.by_id(grid.build(exp, "/tmp/s"))
    assert "tiny/s0/multitask/xcopa_siqa" not in by
    assert by["tiny/s0/multitask/xcopa"].deps == ("tiny/s0/multitask",)
    assert by["tiny/s0/multitask/xcopa"].recipe == "raw"
    assert by["tiny/s0/multitask/tatoeba"].deps == ("tiny/s0/multitask",)
    assert by["tiny/s0/baseline/tatoeba"].deps == ()


def test_dependents():
    exp, cells = _cells()
    down = grid.dependents(cells, "tiny/s0/multitask")
    assert "tiny/s0/multitask/xcopa" in down and "tiny/s0/multitask/tatoeba" in down
    assert not any(c.startswith("tiny2/") or "/mnli/" in c or "/s1/" in c for c in down)


def test_model_dirs_on_an_object_store_keep_their_url():
    _, cells = _cells("gs://bucket/study")
    for c in cells:
        assert c.model_dir == "gs://bucket/study/models/" + c.cell_id
        assert c.command[-2:] == ("--study_dir", "gs://bucket/study")


def test_a_condition_restricted_to_some_targets_gets_cells_for_those_only(tmp_path):
    path = tmp_path / "exp.gin"
    path.write_text(f"include '{CPU}'\n"
                    "experiment.study.condition_targets = {'xitt.inter.mnli': ['xnli', 'xquad', "
                    "'tatoeba']}\n")
    cells = grid.build(experiment.load(str(path)), str(tmp_path / "study"))
    mnli = sorted(c.cell_id for c in cells if c.size == "tiny" and c.condition == "xitt.inter.mnli")
    assert mnli == ["tiny/s0/mnli", "tiny/s0/mnli/tatoeba", "tiny/s0/mnli/tatoeba_x_stilts",
                    "tiny/s0/mnli/xnli",
                    "tiny/s0/mnli/xquad"]
    multitask = {c.target for c in cells if c.cell_id.startswith("tiny/s0/multitask/")}
    assert multitask == set(experiment.TARGETS)  # unrestricted conditions: every target


@pytest.mark.parametrize("value, expected", [
    ("{'xitt.inter.multitask': ['xnli']}", "expected one of"),  # the primary runs everywhere
    ("{'baseline': ['xnli']}", "expected one of"),
    ("{'xitt.inter.mnlii': ['xnli']}", "expected one of"),
    ("{'xitt.inter.mnli': ['paws_x']}", "expected one of"),
    ("{'xitt.inter.mnli': []}", "expected at least one target"),
    ("{'xitt.inter.mnli': ['tatoeba']}", "add 'xquad'"),
])
def test_condition_targets_are_validated(tmp_path, value, expected):
    path = tmp_path / "exp.gin"
    path.write_text(f"include '{CPU}'\nexperiment.study.condition_targets = {value}\n")
    with pytest.raises(experiment.ExperimentError, match="condition_targets") as e:
        experiment.load(str(path))
    assert expected in str(e.value)
