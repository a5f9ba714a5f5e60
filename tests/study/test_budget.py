"""Published epochs as packed steps (study/budget.py): counted on the data the study reads,
checked against the experiment file before a real study spends anything, and the per-phase
batch in tokens with the microbatches a bigger step needs."""
import ast
import dataclasses
import json
import math

import pytest
import seqio

from study import __main__ as cli
from study import budget, experiment, grid
from study import cell as cell_mod
from train.settings import scaled_microbatches

CPU = "gin/study/study_cpu.gin"
MT5 = "gin/study/study_mt5.gin"


def _toy(tmp_path, *extra):
    path = tmp_path / "exp.gin"
    path.write_text("\n".join([f"include '{CPU}'", *extra]) + "\n")
    return experiment.load(str(path))


def test_an_epoch_is_every_example_packed_once(tmp_path):
    exp = _toy(tmp_path, "experiment.study.epochs = {'intermediate': 2, 'xcopa': 3}")
    assert budget.phases(exp) == {"mnli": 2.0, "multitask": 2.0, "xcopa": 3.0}
    counted = budget.measure(exp, ["mnli"])
    examples, sequences = counted["mnli"]
    # independently: every example of the train split sits in exactly one packed row
    import xitt_tasks  # noqa: F401
    raw = list(seqio.get_mixture_or_task("xitt.inter.mnli").get_dataset(
        None, "train", shuffle=False, num_epochs=1).as_numpy_iterator())
    rows = list(seqio.get_dataset(
        "xitt.inter.mnli", exp.train_length("mnli").as_dict(),
        seqio.EncDecFeatureConverter(pack=True), dataset_split="train", shuffle=False,
        num_epochs=1).as_numpy_iterator())
    segments = sum(len(set(r["encoder_segment_ids"].tolist()) - {0}) for r in rows)
    assert examples == len(raw) == segments > 0
    assert sequences == len(rows) and 1 <= sequences < examples  # packing: several per row
    row = budget.budgets(exp, counted)[0]
    assert row.batch == exp.batch_size("mnli") == 8
    assert row.steps == math.ceil(2 * sequences / 8)
    assert row.file_steps == exp.intermediate_steps_for("xitt.inter.mnli") == 8


def test_an_unpacked_epoch_is_its_examples(tmp_path):
    exp = _toy(tmp_path, "experiment.study.epochs = {'lareqa': 1, 'udpos': 10}",
               "experiment.study.batch_examples = {'udpos': 4}")
    assert exp.batch_size("udpos") == 4 and not exp.packed("udpos") and exp.packed("xnli")
    assert not exp.packed("lareqa")  # a dual encoder's pairs
    counted = budget.measure(exp, ["lareqa", "udpos"])
    for key in ("lareqa", "udpos"):
        examples, sequences = counted[key]
        assert examples == sequences > 0
    udpos = next(r for r in budget.budgets(exp, counted) if r.key == "udpos")
    assert udpos.steps == math.ceil(10 * counted["udpos"][0] / 4)


def test_a_real_study_refuses_steps_that_are_not_its_epochs(tmp_path, monkeypatch):
    exp = dataclasses.replace(
        _toy(tmp_path, "experiment.study.epochs = {'intermediate': 2}"), toy=False)
    calls = []

    def fake_measure(e, keys=None, progress=None):
        calls.append(1)
        return {"mnli": (100, 40), "multitask": (300, 61)}

    monkeypatch.setattr(budget, "measure", fake_measure)
    study_dir = str(tmp_path / "study")
    with pytest.raises(experiment.ExperimentError,
                       match=r"set experiment.study.intermediate_steps = "
                             r"\{'default': 8, 'mnli': 10, 'multitask': 16\}$"):
        budget.check(exp, study_dir)
    saved = json.loads((tmp_path / "study" / budget.BUDGET_FILE).read_text())
    assert saved["counts"] == {"mnli": [100, 40], "multitask": [300, 61]}
    fixed = dataclasses.replace(exp, intermediate_steps={"mnli": 10, "multitask": 16,
                                                         "default": 8})
    budget.check(fixed, study_dir)  # agrees; the counts are read back, not measured again
    assert len(calls) == 1
    budget.check(dataclasses.replace(fixed, toy=True, intermediate_steps={"default": 1}),
                 study_dir)  # a toy study is never held to its epochs


def test_the_real_studys_steps_are_its_estimate_and_the_cli_says_so(capsys):
    assert cli.main(["budget", MT5, "--estimate", "51"]) == 0
    out = capsys.readouterr().out
    # MNLI: 392,702 examples x 51 tokens / 1024 = 19,559 sequences; 3 epochs / 128 = 459
    assert "mnli                3    392,702     19,559    128     459      459" in out
    assert "<- differs" not in out
    assert cli.main(["budget", MT5, "--estimate", "60"]) == 1
    out = capsys.readouterr().out
    assert "set in gin/study/study_mt5.gin:\n  experiment.study.intermediate_steps = {" in out
    # the printed lines are gin: a file with them agrees with the measurement
    exp = experiment.load(MT5, check_files=False)
    fixed = dataclasses.replace(exp, intermediate_steps=ast.literal_eval(
        out.split("experiment.study.intermediate_steps = ", 1)[1].splitlines()[0]))
    assert not [r for r in budget.budgets(fixed, budget.estimate(fixed, 60))
                if not r.agrees and r.key in fixed.intermediate_steps]


def test_batch_in_tokens_by_mesh_tfs_rule_and_microbatches_that_keep_the_slice():
    exp = experiment.load(MT5, check_files=False)
    assert {k: exp.batch_size(k) for k in ("mnli", "xnli", "wikiann", "xquad", "lareqa")} == \
        {"mnli": 128, "xnli": 1024, "wikiann": 64, "xquad": 128, "lareqa": 16}
    # XTREME-R's example batches, unpacked: its steps need no tokens-per-example estimate
    assert {k: (exp.batch_size(k), exp.packed(k)) for k in ("xcopa", "xcopa_siqa", "udpos")} \
        == {k: (32, False) for k in ("xcopa", "xcopa_siqa", "udpos")}
    assert (exp.xcopa_siqa_steps, exp.target_steps["xcopa"]) == (math.ceil(5 * 33410 / 32),
                                                                 math.ceil(5 * 400 / 32))
    qa = 128 * (1024 + 512)  # what a slice config is sized for
    assert scaled_microbatches(1, qa, 1024, 1024 + 128) == 8  # XNLI: 6, raised to divide 1024
    assert scaled_microbatches(2, qa, 1024, 1024 + 128) == 16
    assert scaled_microbatches(2, qa, 64, 2048) == 2  # NER: 64 x 2048 tokens in two
    assert scaled_microbatches(1, qa, 128, 1024 + 128) == 1  # the configured batch itself
    assert scaled_microbatches(1, 8 * 640, 12, 640) == 2 and scaled_microbatches(1, qa, 2, 9) == 1
    cells = grid.by_id(grid.build(exp, "/tmp/xitt-budget-test"))
    xnli = cells["base/s0/baseline/xnli"]
    assert cell_mod._microbatches(exp, xnli, exp.batch_size("xnli")) == ["NUM_MICROBATCHES = 8"]
    toy = experiment.load(CPU)
    tiny = grid.build(toy, "/tmp/xitt-budget-test")[0]
    assert cell_mod._microbatches(toy, tiny, 8) == ["NUM_MICROBATCHES = 1"]  # as configured


def test_old_fields_name_their_replacements(tmp_path):
    for line, hint in (("experiment.study.batch_size = 8", "batch_tokens = {'default': 131072}"),
                       ("experiment.study.tatoeba_encoder = 'pretrained'",
                        "'x_stilts' \\(was 'pretrained'\\)")):
        path = tmp_path / "old.gin"
        path.write_text(f"include '{CPU}'\n{line}\n")
        with pytest.raises(experiment.ExperimentError, match=hint):
            experiment.load(str(path))
