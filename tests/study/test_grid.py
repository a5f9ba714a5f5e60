"""The grid: intermediate models trained once per size and seed and fanned out to every
target; recipes as dependency chains; the executor contract's attributes."""
import collections

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
    n_inter = len(exp.conditions) - 1
    assert len(inter) == len(exp.sizes) * len(exp.seeds) * n_inter
    counts = collections.Counter((c.size, c.seed, c.condition) for c in inter)
    assert set(counts.values()) == {1}
    users = collections.Counter(d for c in cells for d in c.deps)
    # each intermediate model feeds every target of its condition (XCOPA via its SIQA stage,
    # Tatoeba via the XQuAD cell): 9 direct users (8 targets + the SIQA stage)
    for c in inter:
        assert users[c.cell_id] == len(exp.targets) - 1
        assert c.train_task == c.condition and c.start_step == exp.pretrained_step
        assert c.train_steps == exp.pretrained_step + exp.intermediate_steps


def test_recipes_and_absolute_steps():
    exp, cells = _cells()
    by = grid.by_id(cells)
    copa = by["tiny/s0/mnli/xcopa"]
    siqa = by["tiny/s0/mnli/xcopa_siqa"]
    assert copa.deps == (siqa.cell_id,) and siqa.deps == ("tiny/s0/mnli",)
    assert siqa.train_task == "xitt.xcopa.train.siqa" and copa.train_task == "xitt.xcopa.train.copa"
    assert copa.start_step == exp.intermediate_steps + exp.xcopa_siqa_steps
    assert copa.train_steps == copa.start_step + exp.target_steps["xcopa"]
    tat = by["tiny2/s0/baseline/tatoeba"]
    assert tat.kind == "embedding" and tat.deps == ("tiny2/s0/baseline/xquad",)
    assert tat.steps == 0 and tat.train_task is None
    assert by["tiny/s0/baseline/xnli"].deps == ()
    assert by["tiny/s0/baseline/xnli"].init_from is None
    assert by["tiny/s0/qqp/mewslix"].kind == "retrieval"
    assert by["tiny/s0/qqp/xnli"].train_task == "xitt.xnli.train.en"


def test_grid_size_of_the_toy_study():
    exp, cells = _cells()
    per_condition = len(exp.targets) + 1  # + XCOPA's SIQA stage
    n = len(exp.sizes) * len(exp.seeds) * (
        (len(exp.conditions) - 1) + len(exp.conditions) * per_condition)
    assert len(cells) == n


def test_raw_recipes(tmp_path):
    path = tmp_path / "raw.gin"
    path.write_text(f"include '{CPU}'\nexperiment.study.xcopa_recipe = 'copa'\n"
                    "experiment.study.tatoeba_encoder = 'pretrained'\n")
    exp = experiment.load(str(path))
    by = grid.by_id(grid.build(exp, "/tmp/s"))
    assert "tiny/s0/mnli/xcopa_siqa" not in by
    assert by["tiny/s0/mnli/xcopa"].deps == ("tiny/s0/mnli",)
    assert by["tiny/s0/mnli/xcopa"].recipe == "raw"
    assert by["tiny/s0/mnli/tatoeba"].deps == ("tiny/s0/mnli",)
    assert by["tiny/s0/baseline/tatoeba"].deps == ()


def test_dependents():
    exp, cells = _cells()
    down = grid.dependents(cells, "tiny/s0/mnli")
    assert "tiny/s0/mnli/xcopa" in down and "tiny/s0/mnli/tatoeba" in down
    assert not any(c.startswith("tiny2/") or "/qqp/" in c for c in down)


def test_model_dirs_on_an_object_store_keep_their_url():
    _, cells = _cells("gs://bucket/study")
    for c in cells:
        assert c.model_dir == "gs://bucket/study/models/" + c.cell_id
        assert c.command[-2:] == ("--study_dir", "gs://bucket/study")
