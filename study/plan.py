"""How many seeds and which sizes a defensible answer needs, and what it costs.

    python -m study plan EXPERIMENT.gin --detect_slope -1.0 --power 0.8 [--sizes base,large,...]

Power model (fitted to the simulator, not brute force): the primary slope is the OLS slope of
per-size overall gains, so Var(slope) = kappa * v1 / (R * Sxx), v1 = one seed's per-size gain
variance = 2 x (run_sd^2 + seed_sd^2 * sum_t w_t^2)  [training seeds, both arms]
         + sum_t w_t^2 / L_t^2 * sum_l 2 p(1-p) 1e4 / n_t  [test-item noise],
w_t a target's weight in the XTREME-R overall score, L_t its languages, n_t its items per
language. The analysis' interval of a slope is a t interval with R - 1 df (item effects
that do not change with size cancel), so
    power = P(noncentral t(R - 1, slope / sd) < -t_crit).
`kappa` (simulated / modelled variance) is fitted by `python -m study simulate --fit_power
SAVED.json ...` from saved simulations and stored in study/data/power_fit.json; the docs
compare this model's power with simulated power. Seed and run spreads for the real study are
assumptions (flags), stated in the output.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import pathlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from study import analysis as an

POWER_FIT = pathlib.Path(__file__).parent / "data" / "power_fit.json"
ITEM_P = 0.75          # Bernoulli variance p(1-p) of a test item at a typical score


@dataclasses.dataclass(frozen=True)
class Noise:
    """The variance assumptions of a design, in score points."""

    seed_sd: float                       # per (training run, target)
    run_sd: float                        # per training run, shared by its targets
    items: Mapping[str, int]             # target -> items per language
    languages: Mapping[str, int]         # target -> languages


def target_weights(targets: Sequence[str]) -> dict[str, float]:
    """Each target's weight in the overall score (XTREME-R: mean of category means)."""
    missing = [t for m in an.CATEGORIES.values() for t in m if t not in targets]
    if missing:
        raise ValueError(f"the overall XTREME-R score needs every target; missing "
                         f"{', '.join(missing)}")
    return {t: 0.25 / len(m) for m in an.CATEGORIES.values() for t in m}


def components(noise: Noise) -> tuple[float, float]:
    """(seed part, item part) of one seed's per-size overall-gain variance."""
    w = target_weights(list(noise.items))
    seed = 2.0 * (noise.run_sd ** 2 + noise.seed_sd ** 2 * sum(v * v for v in w.values()))
    item = sum(w[t] ** 2 / noise.languages[t] * 2 * ITEM_P * (1 - ITEM_P) * 1e4
               / noise.items[t] for t in w)
    return seed, item


def load_fit(path: str | pathlib.Path = POWER_FIT) -> dict:
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no fitted power model (run python -m study "
                                "simulate --fit_power)")
    fit = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(fit.get("kappa"), (int, float)) or fit["kappa"] <= 0:
        raise ValueError(f"{path}: kappa {fit.get('kappa')!r}; expected a positive number")
    return fit


def power(slope: float, log_params: Sequence[float], seeds: int, noise: Noise,
          kappa: float = 1.0, level: float = 0.95) -> float:
    """P(the analysis declares 'shrinks': upper interval end < 0) at a true slope."""
    from scipy import stats

    if seeds < 2:
        return 0.0
    x = np.asarray(log_params, dtype=np.float64)
    sxx = float(((x - x.mean()) ** 2).sum())
    var = kappa * sum(components(noise)) / (seeds * sxx)
    # Item effects constant across sizes cancel in a slope: the estimate of its variance is
    # then the seed totals' (study/variance.py), with R - 1 df.
    df = seeds - 1
    t_crit = stats.t.ppf(0.5 + level / 2, df)
    return float(stats.nct.cdf(-t_crit, df, slope / math.sqrt(var)))


@dataclasses.dataclass(frozen=True)
class Option:
    seeds: int
    sizes: tuple[str, ...]
    power: float
    train_hours: float
    eval_hours: float

    @property
    def hours(self) -> float:
        return self.train_hours + self.eval_hours


def options(sizes: Sequence[str], params: Mapping[str, float], noise: Noise,
            per_seed: Mapping[str, tuple[float, float]], slope: float, kappa: float,
            max_seeds: int = 8) -> list[Option]:
    """Every (seeds, size subset of >= 2 sizes) with its power and chip-hours."""
    out = []
    for k in range(2, len(sizes) + 1):
        for subset in itertools.combinations(sizes, k):
            x = [math.log10(params[s]) for s in subset]
            for r in range(2, max_seeds + 1):
                out.append(Option(r, subset, power(slope, x, r, noise, kappa),
                                  r * sum(per_seed[s][0] for s in subset),
                                  r * sum(per_seed[s][1] for s in subset)))
    return out


def render(opts: Sequence[Option], target_power: float, slope: float, noise: Noise,
           kappa: float, targets: Sequence[str]) -> str:
    good = sorted((o for o in opts if o.power >= target_power), key=lambda o: o.hours)
    lines = [f"Plans that detect a slope of {slope:+g} points per 10x parameters with power "
             f">= {target_power:g} (the primary endpoint's 95% interval lies below 0), "
             "cheapest first:",
             f"{'seeds':>5}  {'sizes':<24} {'power':>6} {'train chip-h':>13} "
             f"{'eval chip-h':>12} {'total':>12}"]
    for o in good[:12]:
        lines.append(f"{o.seeds:>5}  {','.join(o.sizes):<24} {o.power:>6.2f} "
                     f"{o.train_hours:>13,.0f} {o.eval_hours:>12,.0f} {o.hours:>12,.0f}")
    if not good:
        best = max(opts, key=lambda o: o.power)
        lines.append(f"  none up to {max(o.seeds for o in opts)} seeds; the most powerful: "
                     f"{best.seeds} seeds, {','.join(best.sizes)}: power {best.power:.2f}")
    lines.append("Per number of seeds, all sizes: " + "; ".join(
        f"{o.seeds} seeds {o.power:.2f}" for o in opts
        if len(o.sizes) == max(len(p.sizes) for p in opts)))
    seed_v, item_v = components(noise)
    lines += [f"Targets: all {len(targets)} ({', '.join(targets)}): the primary endpoint is "
              "the overall XTREME-R score, so none can be dropped without changing it.",
              f"Assumed: seed sd {noise.seed_sd:g} points per (run, target), run sd "
              f"{noise.run_sd:g} shared by a run's targets; items per language "
              + ", ".join(f"{t} {n}" for t, n in noise.items.items())
              + f"; one seed's per-size gain variance {seed_v:.3f} (seeds) + {item_v:.3f} "
              f"(items) points^2; kappa {kappa:.3f} fitted to the simulator."]
    return "\n".join(lines)


def plan(exp, sizes: Sequence[str] | None, slope: float, target_power: float,
         noise_sd: tuple[float, float], per_seed_cost: Callable,
         eval_items: Mapping[str, int], items: int | None = None) -> str:
    """The planner's report for an experiment (see the module docstring). per_seed_cost(exp)
    -> {size: (training, evaluation) chip-hours of one seed}; eval_items: target -> items."""
    from study.experiment import Size

    if slope >= 0:
        raise ValueError(f"--detect_slope {slope}: expected a negative slope (a shrinking gain)")
    if not 0 < target_power < 1:
        raise ValueError(f"--power {target_power}: expected a fraction in (0, 1)")
    names = list(sizes) if sizes else [s.name for s in exp.sizes]
    unknown = [s for s in names if s.lower() not in an.MT5_PARAMS]
    if unknown:
        raise ValueError(f"--sizes {','.join(names)}: no released mT5 parameter count for "
                         f"{', '.join(unknown)}; expected some of {', '.join(an.MT5_PARAMS)}")
    if len(names) < 2:
        raise ValueError(f"sizes {names}: a slope needs at least two sizes (give --sizes)")
    have = {s.name: s for s in exp.sizes}
    derived = tuple(have.get(n) or Size(n, f"gin/models/mt5_{n.lower()}.gin", None, ())
                    for n in names)
    exp = dataclasses.replace(exp, sizes=derived)
    per_seed = per_seed_cost(exp)
    noise = Noise(noise_sd[0], noise_sd[1],
                  {t: items or eval_items[t] for t in exp.targets},
                  {t: len(exp.languages[t]) for t in exp.targets})
    kappa = load_fit()["kappa"]
    params = {n: float(an.MT5_PARAMS[n.lower()]) for n in names}
    opts = options(names, params, noise, per_seed, slope, kappa)
    costed = [n for n in names if n not in have]
    head = f"Experiment {exp.name}: sizes {', '.join(names)}" + (
        f" ({', '.join(costed)} costed with this file's recipe and gin/models/mt5_<size>.gin)"
        if costed else "")
    return head + "\n" + render(opts, target_power, slope, noise, kappa, exp.targets)
