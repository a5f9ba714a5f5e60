"""The planner: power from the fitted model, options over seeds and size sets, chip-hours."""

import math

import pytest

from study import analysis as an
from study import experiment, plan

TARGETS = tuple(an.TARGET_METRICS)
NOISE = plan.Noise(1.0, 0.5, {t: 1000 for t in TARGETS}, {t: 10 for t in TARGETS})
X4 = [math.log10(an.MT5_PARAMS[s]) for s in ("base", "large", "xl", "xxl")]


def test_power_is_the_false_positive_rate_at_zero_and_grows_with_seeds_and_slope():
    assert plan.power(0.0, X4, 3, NOISE) == pytest.approx(0.025, abs=1e-6)
    p = [plan.power(-1.0, X4, r, NOISE) for r in (2, 3, 5, 8)]
    assert p == sorted(p) and p[0] < p[-1]
    assert plan.power(-2.0, X4, 3, NOISE) > plan.power(-1.0, X4, 3, NOISE)
    assert plan.power(-1.0, X4[:2], 3, NOISE) < plan.power(-1.0, X4, 3, NOISE)
    assert plan.power(-1.0, X4, 1, NOISE) == 0.0  # one seed: no interval, never declares


def test_variance_components():
    seed, item = plan.components(NOISE)
    w2 = sum(v * v for v in plan.target_weights(TARGETS).values())
    assert seed == pytest.approx(2 * (0.25 + w2))
    assert item == pytest.approx(w2 / 10 * 2 * 0.75 * 0.25 * 1e4 / 1000)
    with pytest.raises(ValueError, match="needs every target; missing xcopa"):
        plan.target_weights([t for t in TARGETS if t != "xcopa"])


def test_plan_prints_seeds_sizes_and_chip_hours_for_any_size_set(tmp_path):
    path = tmp_path / "base_only.gin"  # the real recipe at one size: the others are costed
    path.write_text("include 'gin/study/study_mt5.gin'\n"
                    "experiment.study.sizes = {'base': 'gin/models/mt5_base.gin'}\n"
                    "experiment.study.initial_checkpoints = {'base': 'gs://b/mt5_base'}\n"
                    "experiment.study.size_gin_files = "
                    "{'base': ['gin/tpu/mt5_base_v4_2x2x1.gin']}\n")
    exp = experiment.load(str(path), check_files=False)
    per_seed = {"base": (100.0, 10.0), "large": (200.0, 20.0), "xl": (600.0, 40.0),
                "xxl": (2000.0, 100.0)}
    text = plan.plan(exp, ["base", "large", "xl", "xxl"], -1.0, 0.8, (1.0, 0.5),
                     lambda e: {s.name: per_seed[s.name] for s in e.sizes},
                     {t: 1000 for t in TARGETS})
    assert "large, xl, xxl costed with this file's recipe" in text
    rows = [line.split() for line in text.splitlines() if line[:5].strip().isdigit()]
    assert rows
    totals = [float(r[-1].replace(",", "")) for r in rows]
    assert totals == sorted(totals)  # cheapest first
    seeds, sizes = int(rows[0][0]), rows[0][1].split(",")
    assert float(rows[0][3].replace(",", "")) == pytest.approx(
        seeds * sum(per_seed[s][0] for s in sizes), abs=1)
    assert all(float(r[2]) >= 0.8 for r in rows)
    assert "kappa" in text and "seed sd 1 points" in text


def test_plan_refuses_what_it_cannot_plan():
    exp = experiment.load("gin/study/study_cpu.gin", check_files=False)
    cost = lambda e: {}  # noqa: E731
    with pytest.raises(ValueError, match="no released mT5 parameter count for tiny"):
        plan.plan(exp, None, -1.0, 0.8, (1.0, 0.5), cost, {})
    with pytest.raises(ValueError, match="--detect_slope 0.5: expected a negative slope"):
        plan.plan(exp, None, 0.5, 0.8, (1.0, 0.5), cost, {})
