"""The experiment file: shipped files parse into typed values; bad values stop with one line
naming the file, the field, the value and the valid choices."""
import pathlib

import pytest

from study import experiment

CPU = "gin/study/study_cpu.gin"
ONE_SEED = ["experiment.study.seeds = [0]", "experiment.study.replicate_only = None"]


def _write(tmp_path: pathlib.Path, *overrides: str) -> str:
    path = tmp_path / "exp.gin"
    path.write_text("\n".join([f"include '{CPU}'", *ONE_SEED, *overrides]) + "\n")
    return str(path)


def test_cpu_study_parses_typed():
    exp = experiment.load(CPU)
    assert exp.toy and exp.name == "cpu_toy"
    assert [s.name for s in exp.sizes] == ["tiny", "tiny2"]
    assert exp.conditions[0] == "baseline"
    assert "xitt.inter.multitask" in exp.conditions
    assert sum(c.startswith("xitt.inter.") for c in exp.conditions) >= 2  # + an exploratory one
    assert len(exp.seeds) >= 2 and exp.primary_endpoint.condition in \
        exp.replicate_only.conditions  # the primary endpoint with seed variance
    assert set(exp.targets) == set(experiment.TARGETS)
    from xitt_tasks import languages

    assert exp.languages["udpos"] == languages.UDPOS  # every language by default
    assert exp.train_length("xnli") == experiment.Lengths(128, 32)
    assert exp.split_for("xquad") == "test" and exp.split_for("xnli") == "test"
    assert exp.split_for("tydiqa") == "validation"  # GoldP dev: its one reported set
    assert len(exp.sha256) == 64
    with pytest.raises(dataclasses_frozen()):
        exp.name = "x"  # frozen


def dataclasses_frozen():
    import dataclasses

    return dataclasses.FrozenInstanceError


@pytest.mark.parametrize("name", ["base", "large", "xl", "xxl"])
def test_the_real_study_is_one_experiment_of_every_size(name):
    exp = experiment.load("gin/study/study_mt5.gin")
    assert not exp.toy and exp.pretrained_step == 1_000_000
    assert [s.name for s in exp.sizes] == ["base", "large", "xl", "xxl"]
    size = exp.size(name)
    assert size.initial_checkpoint.endswith(f"mt5_{name}/checkpoint_1000000")
    assert size.gin_files and size.gin_files[0].startswith(f"gin/tpu/mt5_{name}_")
    assert len(exp.conditions) == 16 and exp.batch_size("xquad") == 128
    # the mT5 script's tokens per step: XNLI 2^20 at 1024/128, NER 2^16 at 1024/1024
    assert exp.batch_size("xnli") == 1024 and exp.batch_size("wikiann") == 64
    assert exp.batch_size("mnli_mlm") == 128 and exp.batch_size("lareqa") == 16
    assert exp.train_length("wikiann") == experiment.Lengths(1024, 1024)
    assert exp.tatoeba_encoders == ("xtreme_r", "x_stilts") and exp.eval_split == "test"
    assert exp.retrieval_layer_for("base") == 7 and exp.retrieval_layer_for(name) in (7, 14)
    assert exp.intermediate_steps_for("xitt.inter.mnli_translate_train") == \
        exp.intermediate_steps_for("xitt.inter.mnli")
    assert exp.train_length("xquad") == experiment.Lengths(1024, 512)
    assert exp.train_length("xnli") == experiment.Lengths(1024, 128)
    one = experiment.select_sizes(exp, name)
    assert [s.name for s in one.sizes] == [name] and one.size(name) == size


def test_selecting_an_unknown_size_names_the_known_ones():
    exp = experiment.load("gin/study/study_mt5.gin")
    with pytest.raises(experiment.ExperimentError, match="--sizes 'huge': expected some of "
                                                         "base, large, xl, xxl"):
        experiment.select_sizes(exp, "base,huge")


@pytest.mark.parametrize("override, field, value", [
    ("experiment.study.targets = ['xnli', 'xnli_typo']", "targets", "xnli_typo"),
    ("experiment.study.conditions = ['baseline', 'xitt.inter.mnlii']", "conditions",
     "xitt.inter.mnlii"),
    ("experiment.study.languages = {'xnli': ['de', 'xx']}", "languages['xnli']", "xx"),
    ("experiment.study.sizes = {'tiny': 'gin/models/mt5_tinyy.gin'}", "sizes['tiny']",
     "gin/models/mt5_tinyy.gin"),
    ("experiment.study.initial_checkpoints = {'huge': None}", "initial_checkpoints key",
     "huge"),
    ("experiment.study.selection = 'best'", "selection", "best"),
    ("experiment.study.primary_endpoint = {'condition': 'xitt.inter.anli_plus', "
     "'measure': 'overall_gain'}", "primary_endpoint['condition']", "xitt.inter.anli_plus"),
    ("experiment.study.primary_endpoint = {'condition': 'xitt.inter.mnli', "
     "'measure': 'best_gain'}", "primary_endpoint['measure']", "best_gain"),
])
def test_unknown_values_name_file_field_value_and_choices(tmp_path, override, field, value):
    path = _write(tmp_path, override)
    with pytest.raises(experiment.ExperimentError) as e:
        experiment.load(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(path) and field in msg and repr(value) in msg


def test_unknown_target_lists_the_valid_ones(tmp_path):
    with pytest.raises(experiment.ExperimentError, match="expected one of xnli, xcopa, udpos"):
        experiment.load(_write(tmp_path, "experiment.study.targets = ['paws_x']"))


def test_unknown_language_lists_the_targets_languages(tmp_path):
    with pytest.raises(experiment.ExperimentError, match="ar, bg, de, el, en"):
        experiment.load(_write(tmp_path, "experiment.study.languages = {'xnli': ['ja']}"))


def test_missing_initial_checkpoint(tmp_path):
    missing = tmp_path / "nope" / "checkpoint_1000000"
    path = _write(tmp_path, f"experiment.study.initial_checkpoints = {{'tiny': '{missing}'}}")
    with pytest.raises(experiment.ExperimentError,
                       match=r"initial_checkpoints\['tiny'\].*missing initial checkpoint"):
        experiment.load(path)


def test_real_study_needs_a_checkpoint(tmp_path):
    with pytest.raises(experiment.ExperimentError, match="random init is for toy"):
        experiment.load(_write(tmp_path, "experiment.study.toy = False"))


def test_unknown_field_is_a_gin_error_naming_the_file(tmp_path):
    path = _write(tmp_path, "experiment.study.seedz = [1]")
    with pytest.raises(experiment.ExperimentError,
                       match="unknown field experiment.study.seedz; expected one of "
                             "batch_examples, batch_tokens"):
        experiment.load(path)


def test_baseline_is_required(tmp_path):
    path = _write(tmp_path, "experiment.study.conditions = ['xitt.inter.mnli']")
    with pytest.raises(experiment.ExperimentError, match="'baseline' among them"):
        experiment.load(path)


def test_tatoeba_squad_encoder_needs_xquad(tmp_path):
    path = _write(tmp_path, "experiment.study.targets = ['xnli', 'tatoeba']")
    with pytest.raises(experiment.ExperimentError, match="tatoeba_encoders"):
        experiment.load(path)


def test_missing_target_steps(tmp_path):
    path = _write(tmp_path, "experiment.study.target_steps = {'xnli': 3}")
    with pytest.raises(experiment.ExperimentError, match=r"target_steps.*'xcopa'"):
        experiment.load(path)


def test_no_such_file():
    with pytest.raises(experiment.ExperimentError, match="no such experiment file"):
        experiment.load("gin/study/nope.gin")


def test_the_primary_endpoint_is_declared_in_the_file():
    exp = experiment.load(CPU)
    assert exp.primary_endpoint == experiment.PrimaryEndpoint("xitt.inter.multitask",
                                                              "overall_gain")
