"""Studies with a known truth, written through the real results database and analysed by the
real `study.analysis.analyse`: the proof that the primary slope's interval is calibrated.

    python -m study simulate --studies 1000 --true_slope 0 --json

Each simulated study: released mT5 sizes (exact parameter counts), baseline + the multitask
condition, R seeds, all ten XTREME-R targets (the primary endpoint is the overall score) in a
few languages with a few dozen test items each. Per example, P(correct) =
    base(size, target) + language offset + item difficulty
    + [condition] (gain(size, target) + item gain effect) + run effect(size, condition, seed).
Translated targets (XNLI, XQuAD, XCOPA, LAReQA) share the item difficulty and gain effect
across languages; baselines climb with size to 80% on half the targets at XXL (the most the
additive model allows without clipping, which would bias the truth); each training run (size,
condition, seed) has a shift common to its targets plus one per target. Target-level gains
vary around the overall trend, and their XTREME-R mean has exactly the true slope.
UDPOS/WikiANN are scored as micro-F1 counts (exercising the linearisation), QA as F1 and EM.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import pathlib
from collections.abc import Sequence

import numpy as np

from study import analysis as an
from study.db import CellRecord, PerExample, Result, ResultsDB, aggregate

SIZES = {s: an.MT5_PARAMS[s] for s in ("base", "large", "xl", "xxl")}
LANGS = ("en", "de", "sw")
PRIMARY = {"condition": "xitt.inter.multitask", "measure": "overall_gain"}
F1_COUNT_TARGETS = ("udpos", "wikiann")


@dataclasses.dataclass(frozen=True)
class SimSpec:
    """One simulated study design and its noise (points are score points, 0..100)."""

    true_slope: float = 0.0          # overall gain, points per 10x parameters
    sizes: tuple[str, ...] = tuple(SIZES)
    seeds: int = 3
    languages: int = 2               # per target
    items: int = 100                 # per target and language
    gain_mid: float = 3.0            # overall gain at the mean log size
    seed_sd: float = 1.5             # run effect per (run, target)
    run_sd: float = 0.75             # run effect shared by a run's targets
    target_sd: float = 0.8           # target gains around the overall line (intercepts)
    target_slope_sd: float = 0.3     # target slopes around the overall slope
    item_sd: float = 4.0             # half-width of the uniform item difficulty
    item_gain_sd: float = 2.0        # half-width of the uniform item gain effect
    level: float = 0.95

    def __post_init__(self) -> None:
        unknown = [s for s in self.sizes if s not in SIZES]
        if unknown or len(self.sizes) < 2:
            raise ValueError(f"simulate: sizes {list(self.sizes)}; expected two or more of "
                             f"{', '.join(SIZES)}")
        if self.seeds < 2:
            raise ValueError(f"simulate: --seeds {self.seeds}; expected >= 2 (one seed has "
                             "no interval)")
        if not 1 <= self.languages <= len(LANGS) or self.items < 2:
            raise ValueError(f"simulate: {self.languages} languages x {self.items} items; "
                             f"expected 1..{len(LANGS)} languages and >= 2 items")


def _weights() -> dict[str, float]:
    """Each target's weight in the XTREME-R overall score."""
    return {t: 0.25 / len(members) for members in an.CATEGORIES.values() for t in members}


def _truth(spec: SimSpec, rng) -> tuple[np.ndarray, dict, dict]:
    """x (log10 params), base[size][target] and gain[size][target] as probabilities."""
    x = np.log10([SIZES[s] for s in spec.sizes])
    xc = x - x.mean()
    w = _weights()
    targets = list(w)
    dev_a = np.clip(rng.normal(0, spec.target_sd, len(targets)), -2 * spec.target_sd,
                    2 * spec.target_sd)
    dev_b = np.clip(rng.normal(0, spec.target_slope_sd, len(targets)),
                    -2 * spec.target_slope_sd, 2 * spec.target_slope_sd)
    wv = np.array([w[t] for t in targets])
    dev_a, dev_b = dev_a - wv @ dev_a, dev_b - wv @ dev_b   # the overall line is exact
    base, gain = {}, {}
    for i, s in enumerate(spec.sizes):
        # baselines climb 6 points per 10x: 60% / 72% at Base, 68% / 80% at XXL
        base[s] = {t: (60.0 + 6.0 * (x[i] - 8.77) + 12.0 * (j % 2)) / 100.0
                   for j, t in enumerate(targets)}
        gain[s] = {t: (spec.gain_mid + dev_a[j] + (spec.true_slope + dev_b[j]) * xc[i]) / 100.0
                   for j, t in enumerate(targets)}
    return x, base, gain


def _probabilities(spec: SimSpec, rng, base, gain) -> dict:
    """P(correct) per (size, condition, seed, target, language): [items]."""
    seeds, n = spec.seeds, spec.items
    out, runs = {}, {}
    for t in _weights():
        shared = t in ("xnli", "xquad", "xcopa", "lareqa")
        shape = (1 if shared else spec.languages, n)
        difficulty = rng.uniform(-1, 1, shape) * spec.item_sd / 100.0
        item_gain = rng.uniform(-1, 1, shape) * spec.item_gain_sd / 100.0
        lang_off = rng.uniform(-1.5, 1.5, (spec.languages, 1)) / 100.0
        for s in spec.sizes:
            for cond, on in (("baseline", 0.0), ("multitask", 1.0)):
                for r in range(seeds):
                    if (s, cond, r) not in runs:
                        runs[(s, cond, r)] = _clipped(rng, spec.run_sd)
                    shift = runs[(s, cond, r)] + _clipped(rng, spec.seed_sd)
                    p = (base[s][t] + lang_off + difficulty
                         + on * (gain[s][t] + item_gain) + shift / 100.0)
                    out[(s, cond, r, t)] = np.broadcast_to(p, (spec.languages, n))
    lo = min(float(v.min()) for v in out.values())
    hi = max(float(v.max()) for v in out.values())
    if lo < 0 or hi > 1:
        raise ValueError(f"simulate: probabilities reach [{lo:.3f}, {hi:.3f}]; lower the "
                         "gains or noise so that the truth needs no clipping")
    return out


def _clipped(rng, sd: float) -> float:
    """A normal draw truncated at 3 sd (keeps probabilities in [0, 1])."""
    return float(np.clip(rng.normal(0, sd), -3 * sd, 3 * sd))


def write_study(db: ResultsDB, spec: SimSpec, rng) -> float:
    """Fill db with one simulated study; returns the true slope of the primary endpoint."""
    _, base, gain = _truth(spec, rng)
    probs = _probabilities(spec, rng, base, gain)
    langs = LANGS[:spec.languages]
    ids = {lang: [f"{lang}:{i}" for i in range(spec.items)] for lang in langs}
    db.set_meta("toy", "False")
    db.set_meta("data_source", "simulated")
    with db.batch():
        for (s, cond, r, t), p in probs.items():
            cell_id = f"{s}/s{r}/{cond}/{t}"
            db.upsert_cell(CellRecord(cell_id, "target", s, r, cond, t,
                                      params_count=SIZES[s], data_source="simulated"))
            results, per_example = [], []
            for li, lang in enumerate(langs):
                for metric in an.TARGET_METRICS[t]:
                    scores, agg = _scores(rng, t, p[li])
                    results.append(Result(lang, metric, aggregate(scores, agg), spec.items))
                    per_example.append(PerExample(lang, metric, ids[lang], scores, agg))
            db.record_results(cell_id, results, per_example, code_commit="simulated")
    w = _weights()
    x = np.log10([SIZES[s] for s in spec.sizes])
    overall = [sum(w[t] * gain[s][t] for t in w) * 100.0 for s in spec.sizes]
    return float(an.ols_weights(x) @ np.array(overall))


def _scores(rng, target: str, p: np.ndarray) -> tuple[np.ndarray, str]:
    if target in F1_COUNT_TARGETS:
        gold = rng.integers(1, 4, size=len(p))
        correct = rng.binomial(gold, p)
        return np.stack([correct, gold, gold], axis=1).astype(float), "f1_counts"
    return 100.0 * (rng.random(len(p)) < p), "mean"


@dataclasses.dataclass(frozen=True)
class StudyOutcome:
    truth: float
    slope: float
    lo: float | None
    hi: float | None
    se: float | None
    df: float | None


def one_study(spec: SimSpec, seed: int) -> StudyOutcome:
    rng = np.random.default_rng([seed, 20261206])
    db = ResultsDB(":memory:")
    try:
        truth = write_study(db, spec, rng)
        result = an.analyse(db, level=spec.level, primary=PRIMARY)
    finally:
        db.close()
    trend = result.trends[(an.MULTITASK, an.OVERALL)]
    if isinstance(trend, an.Missing):
        raise RuntimeError(f"simulated study {seed}: primary trend missing ({trend.reason})")
    ci, spread = trend.slope.ci(spec.level), trend.slope.spread()
    return StudyOutcome(truth, trend.slope.point, *(ci or (None, None)),
                        math.sqrt(spread.var) if spread else None,
                        spread.df if spread else None)


def _run(args) -> StudyOutcome:
    return one_study(*args)


def simulate(spec: SimSpec, studies: int, *, seed: int = 0, workers: int = 1
             ) -> list[StudyOutcome]:
    """`studies` independent studies (study i uses seed + i): the same list for any workers."""
    jobs = [(spec, seed + i) for i in range(studies)]
    if workers <= 1:
        return [_run(j) for j in jobs]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return pool.map(_run, jobs, chunksize=max(1, studies // (8 * workers)))


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (95% by default)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(spec: SimSpec, outcomes: Sequence[StudyOutcome]) -> dict:
    """coverage and declared_shrinks as fractions of the studies, with Wilson intervals."""
    n = len(outcomes)
    covered = sum(o.lo is not None and o.lo <= o.truth <= o.hi for o in outcomes)
    shrinks = sum(o.hi is not None and o.hi < 0 for o in outcomes)
    slopes = np.array([o.slope for o in outcomes])
    truths = np.array([o.truth for o in outcomes])
    ses = np.array([o.se for o in outcomes if o.se is not None])
    dfs = np.array([o.df for o in outcomes if o.df is not None])
    return {
        "studies": n, "true_slope": spec.true_slope, "seeds": spec.seeds,
        "sizes": list(spec.sizes), "level": spec.level,
        "coverage": covered / n, "coverage_interval": list(wilson(covered, n)),
        "declared_shrinks": shrinks / n, "declared_shrinks_interval": list(wilson(shrinks, n)),
        "mean_bias": float((slopes - truths).mean()),
        "sd_slope": float((slopes - truths).std(ddof=1)) if n > 1 else None,
        "mean_se": float(ses.mean()) if ses.size else None,
        "median_df": float(np.median(dfs)) if dfs.size else None,
        "spec": dataclasses.asdict(spec),
    }


def fit_power(summaries: Sequence[dict]) -> dict:
    """kappa = simulated Var(slope - truth) / the power model's Var(slope), pooled over the
    designs of saved `simulate --json` outputs (study/plan.py scales its variance by it)."""
    from study import plan

    designs, emp, mod = [], 0.0, 0.0
    for summary in summaries:
        spec = SimSpec(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in summary["spec"].items()})
        x = np.log10([SIZES[s] for s in spec.sizes])
        noise = plan.Noise(spec.seed_sd, spec.run_sd, {t: spec.items for t in _weights()},
                           {t: spec.languages for t in _weights()})
        model = sum(plan.components(noise)) / (spec.seeds * float(((x - x.mean()) ** 2).sum()))
        n = summary["studies"]
        emp, mod = emp + n * summary["sd_slope"] ** 2, mod + n * model
        designs.append({"seeds": spec.seeds, "sizes": list(spec.sizes), "studies": n,
                        "true_slope": spec.true_slope,
                        "simulated_var": summary["sd_slope"] ** 2, "model_var": model})
    if not designs:
        raise ValueError("--fit_power: give one or more saved `simulate --json` outputs")
    return {"kappa": emp / mod, "designs": designs}


def main(args) -> int:
    """`python -m study simulate`: one JSON object (or a summary line), or --fit_power."""
    import json
    import time

    if args.studies < 1 or args.workers < 1:
        raise ValueError(f"--studies {args.studies} --workers {args.workers}: expected >= 1")
    if args.fit_power:
        summaries = []
        for name in args.fit_power:
            try:
                summaries.append(json.loads(pathlib.Path(name).read_text(encoding="utf-8")))
            except (OSError, ValueError) as e:
                raise ValueError(f"--fit_power {name}: {e}; expected a saved `python -m "
                                 "study simulate --json` output") from None
        fit = fit_power(summaries)
        fit["command"] = "python -m study simulate --fit_power " + " ".join(args.fit_power)
        path = pathlib.Path(__file__).parent / "data" / "power_fit.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(fit, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
        print(f"kappa {fit['kappa']:.3f} -> {path}")
        return 0
    sizes = tuple(args.sizes.split(",")) if args.sizes else tuple(SIZES)
    spec = SimSpec(true_slope=args.true_slope, seeds=args.seeds, sizes=sizes, items=args.items)
    start = time.monotonic()
    summary = summarize(spec, simulate(spec, args.studies, seed=args.seed,
                                       workers=args.workers))
    summary["seconds"] = round(time.monotonic() - start, 1)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        lo, hi = summary["coverage_interval"]
        print(f"{args.studies} studies, true slope {args.true_slope:+g}: coverage "
              f"{summary['coverage']:.3f} [{lo:.3f}, {hi:.3f}], declared shrinks "
              f"{summary['declared_shrinks']:.3f}")
    return 0
