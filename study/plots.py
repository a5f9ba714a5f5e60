"""The report's PNG figures (matplotlib, Agg backend: no display, same bytes on every machine
kind that has the pinned matplotlib). Each function draws one figure from an Analysis."""

from __future__ import annotations

import math
import os
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from study.analysis import BEST, CATEGORIES, OVERALL, Analysis, MC4Size, Missing  # noqa: E402
from study.variance import Est  # noqa: E402

_METADATA = {"Software": None}  # no version string in the file: identical bytes on re-run


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=110, format="png", metadata=_METADATA)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _series(result: Analysis) -> list[str]:
    return [*result.conditions, BEST]


def _label(cond: str) -> str:
    return "best task per target (exploratory)" if cond == BEST else cond


def _err(est: Est, level: float) -> tuple[float, float]:
    ci = est.ci(level)
    return (est.point - ci[0], ci[1] - est.point) if ci else (0.0, 0.0)


def _params(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def gain_vs_size(result: Analysis, path: pathlib.Path) -> pathlib.Path:
    """Small multiples: one panel per target (and overall), gain vs log10 params, CI bars."""
    levels = [*result.targets, OVERALL]
    ncols = min(4, len(levels))
    nrows = math.ceil(len(levels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.8 * nrows + 0.6),
                             squeeze=False, sharex=True)
    sizes = [s for s in result.sizes if s in result.params]
    x = {s: math.log10(result.params[s]) for s in sizes}
    series = _series(result)
    offsets = np.linspace(-0.04, 0.04, len(series)) * max(1.0, np.ptp(list(x.values())) or 1.0)
    colors = plt.get_cmap("tab10")
    for ax, lvl in zip(axes.flat, levels):
        ax.axhline(0.0, color="0.6", lw=0.8)
        for k, cond in enumerate(series):
            pts = [(x[s] + offsets[k], result.gains[(s, cond, lvl)]) for s in sizes]
            good = [(xx, v) for xx, v in pts if not isinstance(v, Missing)]
            bad = [xx for xx, v in pts if isinstance(v, Missing)]
            style = dict(color="black", ls="--", marker="s") if cond == BEST else dict(
                color=colors(k % 10), ls="-", marker="o")
            if good:
                errs = np.array([_err(v, result.level) for _, v in good]).T
                ax.errorbar([g[0] for g in good], [g[1].point for g in good], yerr=errs,
                            capsize=2, ms=4, lw=1, **style)
            if bad:
                ax.plot(bad, [0.0] * len(bad), ls="none", marker="x", color=style["color"],
                        ms=8, mew=2)
        if x:
            ax.set_xlim(min(x.values()) - 0.3, max(x.values()) + 0.3)
        ax.set_title(lvl if lvl != OVERALL else "overall XTREME-R", fontsize=10)
        ax.set_xticks([x[s] for s in sizes], [f"{s}\n{_params(result.params[s])}"
                                              for s in sizes], fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
    for ax in list(axes.flat)[len(levels):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("gain (points)", fontsize=9)
    handles = [Line2D([], [], color="black", ls="--", marker="s", ms=4, label=_label(c))
               if c == BEST else Line2D([], [], color=colors(k % 10), marker="o", ms=4,
                                        label=_label(c)) for k, c in enumerate(series)]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8,
               frameon=False)
    fig.suptitle(f"Gain over the baseline vs model size ({100 * result.level:g}% CI over "
                 "seeds and items; x = incomplete)", fontsize=11)
    # Fixed margins: tight_layout costs a full extra text-layout pass over every panel.
    fig.subplots_adjust(left=0.07, right=0.99, top=1 - 0.75 / fig.get_figheight(),
                        bottom=0.9 / fig.get_figheight(), wspace=0.25, hspace=0.35)
    return _save(fig, path)


def language_heatmap(result: Analysis, size: str, path: pathlib.Path,
                     mc4: dict[str, MC4Size]) -> pathlib.Path:
    """Languages (most mC4 data first) x targets: the primary condition's gain per language."""
    langs = sorted({lg for t in result.targets for lg in result.languages[t]},
                   key=lambda lg: (-(mc4[lg].mt5_percent or 0.0) if lg in mc4 else 0.0, lg))
    targets = result.targets
    grid = np.full((len(langs), len(targets)), np.nan)
    incomplete = np.zeros(grid.shape, dtype=bool)
    for i, lang in enumerate(langs):
        for j, t in enumerate(targets):
            est = result.lang_gains.get((size, result.view_condition, t, lang))
            if est is not None:
                grid[i, j] = est.point
            elif lang in result.languages[t]:
                incomplete[i, j] = True
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(targets), 1.4 + 0.32 * max(1, len(langs))))
    finite = grid[np.isfinite(grid)]
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.88")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-bound or -1, vmax=bound or 1,
                   aspect="auto")
    for i in range(len(langs)):
        for j in range(len(targets)):
            text = (f"{grid[i, j]:+.1f}" if np.isfinite(grid[i, j])
                    else "inc." if incomplete[i, j] else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color=("firebrick" if not np.isfinite(grid[i, j])
                           else "white" if abs(grid[i, j]) > 0.6 * bound else "0.1"))
    share = [f"{lg} ({mc4[lg].mt5_percent:.2f}%)" if lg in mc4 and mc4[lg].mt5_percent
             else f"{lg} (-)" for lg in langs]
    ax.set_yticks(range(len(langs)), share, fontsize=8)
    ax.set_xticks(range(len(targets)), targets, rotation=45, ha="right", fontsize=8)
    ax.set_title(f"{size}: gain of {result.view_condition}, by language\n(rows: share of "
                 "mT5 pre-training data, largest first; grey: not evaluated; inc.: incomplete)",
                 fontsize=9)
    fig.colorbar(im, ax=ax, label="gain (points)", shrink=0.8)
    fig.tight_layout()
    return _save(fig, path)


def category_summary(result: Analysis, path: pathlib.Path) -> pathlib.Path:
    """Per series, grouped bars: each category and overall, one bar per size, with CIs."""
    levels = [*CATEGORIES, OVERALL]
    series = _series(result)
    ncols = min(3, len(series))
    nrows = math.ceil(len(series) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.9 * nrows + 0.5),
                             squeeze=False, sharey=True)
    width = 0.8 / max(1, len(result.sizes))
    colors = plt.get_cmap("viridis")
    for ax, cond in zip(axes.flat, series):
        ax.axhline(0.0, color="0.6", lw=0.8)
        for k, size in enumerate(result.sizes):
            xs = np.arange(len(levels)) + (k - (len(result.sizes) - 1) / 2) * width
            color = colors(k / max(1, len(result.sizes) - 1) * 0.85)
            for xx, lvl in zip(xs, levels):
                v = result.gains[(size, cond, lvl)]
                if isinstance(v, Missing):
                    ax.text(xx, 0.0, "n/a", ha="center", va="bottom", fontsize=6, rotation=90,
                            color="0.4")
                    continue
                lo, hi = _err(v, result.level)
                ax.bar(xx, v.point, width, color=color, yerr=[[lo], [hi]], capsize=2)
        ax.set_xticks(range(len(levels)), ["class.", "struct.", "QA", "retr.", "overall"],
                      fontsize=8)
        ax.set_title(_label(cond), fontsize=10)
    for ax in list(axes.flat)[len(series):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("gain (points)", fontsize=9)
    handles = [Patch(color=colors(k / max(1, len(result.sizes) - 1) * 0.85), label=size)
               for k, size in enumerate(result.sizes)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8,
               frameon=False, title="size", title_fontsize=8)
    fig.suptitle("Gain per XTREME-R category (n/a: a member target incomplete or absent)",
                 fontsize=11)
    fig.subplots_adjust(left=0.07, right=0.99, top=1 - 0.75 / fig.get_figheight(),
                        bottom=0.8 / fig.get_figheight(), wspace=0.08, hspace=0.35)
    return _save(fig, path)


def gain_vs_share_plot(result: Analysis, size: str, path: pathlib.Path,
                       mc4: dict[str, MC4Size], fit) -> pathlib.Path:
    """Per-language gain (primary condition, mean over targets) vs the mC4 share, with fit."""
    view = result.language_view(size, result.view_condition)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.axhline(0.0, color="0.6", lw=0.8)
    xs, ys = [], []
    for lang, est in view.items():
        if isinstance(est, Missing) or lang not in mc4 or not mc4[lang].mt5_percent:
            continue
        x = math.log10(mc4[lang].mt5_percent)
        lo, hi = _err(est, result.level)
        ax.errorbar(x, est.point, yerr=[[lo], [hi]], fmt="o", ms=4, color="tab:blue",
                    capsize=2, lw=0.8)
        ax.annotate(lang, (x, est.point), textcoords="offset points", xytext=(4, 3),
                    fontsize=7)
        xs.append(x)
        ys.append(est.point)
    if fit is not None and not isinstance(fit, Missing) and xs:
        grid = np.linspace(min(xs), max(xs), 20)
        ax.plot(grid, fit.intercept + fit.slope.point * grid, color="tab:red", lw=1.2,
                label=f"OLS fit: {fit.slope.point:+.2f} points per 10x share")
        ax.legend(fontsize=8, frameon=False)
    lo, hi = (min(xs), max(xs)) if xs else (-1.0, 1.0)
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10) if lo - 0.3 <= math.log10(t) <= hi + 0.3]
    ax.set_xticks([math.log10(t) for t in ticks], [f"{t:g}%" for t in ticks])
    ax.set_xlim(lo - 0.3, hi + 0.3)
    ax.set_xlabel("share of mT5 pre-training data (mC4, log scale)", fontsize=9)
    ax.set_ylabel("gain (points)", fontsize=9)
    ax.set_title(f"{size}: per-language gain of {result.view_condition}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
