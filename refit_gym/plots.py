"""Plots a person reads at a glance: the benchmark's validation curves and cost scaling, and a run's learning curve.

Conventions of every figure here:

* honest axes: tick labels are plain numbers (no hidden offset such as ``+1.234e-1``) and a y-axis spans at
  least :data:`MIN_REL_SPAN` of the plotted level, so noise of a few 1e-5 is drawn as the flat line it is;
* reference lines: the pretrained start (and, in the benchmark, the best baseline on validation) as horizontal
  lines, so a curve is read against what it must beat;
* seed bands: a curve that is a mean over seeds has a band of +-1 standard deviation over the seeds (per
  evaluation), and the legend says how many seeds;
* legends below the axes, never over the data.

Functions take the JSON records the library writes (``metrics.json`` of ``refit-gym train``; the benchmark's
table and scaling records) and write a PNG (matplotlib's ``Agg`` backend; no display needed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from refit_gym.registry import BACKBONE_LABELS

#: smallest y span, as a fraction of the mean absolute plotted value
MIN_REL_SPAN = 0.05
#: horizontal space between side-by-side panels, in units of a panel's width: room for the right panel's y label
PANEL_WSPACE = 0.35


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def honest_ylim(ax, values: Sequence[float], min_rel_span: float = MIN_REL_SPAN) -> Tuple[float, float]:
    """Set ``ax``'s y limits to cover ``values`` with a 5% margin and a span of at least ``min_rel_span`` times
    their mean absolute value (centred on them); plain tick labels. Returns the limits."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    lo, hi = float(v.min()), float(v.max())
    span = max(hi - lo, min_rel_span * float(np.abs(v).mean()), 1e-12)
    mid = (lo + hi) / 2
    lo, hi = mid - 0.55 * span, mid + 0.55 * span
    ax.set_ylim(lo, hi)
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    return lo, hi


def seed_band(histories: Sequence[Sequence[Dict[str, Any]]], metric: str, x_key: str
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, mean, std)`` over seeds per evaluation index, on the common length of the histories; ``x`` is the
    mean of ``x_key`` over seeds, ``std`` the population std over seeds (0 for one seed)."""
    hs = [h for h in histories if h]
    n = min(len(h) for h in hs)
    x = np.array([np.mean([h[i][x_key] for h in hs]) for i in range(n)], dtype=np.float64)
    y = np.array([[h[i][metric] for i in range(n)] for h in hs], dtype=np.float64)
    return x, y.mean(0), y.std(0)


def _legend_below(ax, ncol: int = 2) -> None:
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, fontsize=7, frameon=False)


def plot_validation(table: List[Dict[str, Any]], path: Path, metric: str = "ndcg@20") -> Optional[Path]:
    """Validation ``metric`` against fine-tuning wall-clock, one panel per backbone, one line per algorithm.

    ``table``: the benchmark's rows (``kind`` in baseline / pretrained / finetuned; ``valid[metric]["mean"]``;
    fine-tuned rows have ``history``: seed -> list of ``{train_seconds, <metric>}``). Lines are means over seeds
    with +-1 std bands; dashed: the backbone's pretrained start; dotted: the best baseline on validation.
    Returns ``path``, or None when no row has a history."""
    tuned = [e for e in table if e["kind"] == "finetuned" and e.get("history")]
    if not tuned:
        return None
    plt = _pyplot()
    backbones = list(dict.fromkeys(e["spec"]["backbone"] for e in tuned))
    baselines = [e for e in table if e["kind"] == "baseline" and metric in e.get("valid", {})]
    best_base = max(baselines, key=lambda e: e["valid"][metric]["mean"]) if baselines else None
    fig, axes = plt.subplots(1, len(backbones), figsize=(5.5 * len(backbones), 4.6), squeeze=False)
    fig.subplots_adjust(wspace=PANEL_WSPACE)
    for ax, b in zip(axes[0], backbones):
        values = []
        for e in (e for e in tuned if e["spec"]["backbone"] == b):
            x, mean, std = seed_band(list(e["history"].values()), metric, "train_seconds")
            n = len(e["seeds_done"])
            line, = ax.plot(x, mean, marker="o", ms=3, label=f"{e['label']} ({n} seed{'s' if n != 1 else ''})")
            if n > 1:
                ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15, lw=0)
            values += list(mean - std) + list(mean + std)
        start = next((e for e in table if e["kind"] == "pretrained" and e.get("spec", {}).get("backbone") == b), None)
        if start is not None and metric in start.get("valid", {}):
            v = start["valid"][metric]["mean"]
            ax.axhline(v, color="k", ls="--", lw=1, label=f"pretrained start ({v:.4f})")
            values.append(v)
        if best_base is not None:
            v = best_base["valid"][metric]["mean"]
            ax.axhline(v, color="grey", ls=":", lw=1.5, label=f"best baseline: {best_base['label']} ({v:.4f})")
            values.append(v)
        honest_ylim(ax, values)
        ax.set(title=BACKBONE_LABELS.get(b, b), xlabel="fine-tuning wall-clock (s, without validation)",
               ylabel=f"validation {metric} (mean over seeds, band ±1 std)")
        ax.grid(alpha=0.3)
        _legend_below(ax)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_scaling(scaling: Dict[str, Dict[str, Any]], path: Path) -> Optional[Path]:
    """Fine-tuning epoch time (log-log, with the fitted slope) and process memory against users and items.

    Memory panels draw the peak RSS during the timed epoch (solid) and the RSS before it (dashed: data, item
    graph, model and environment). The per-rollout tensors are sized by ``n_envs x n_items``, not by the
    number of users, so against users the peak stays about flat while the setup grows: the difference
    (the old plot's "above setup") falls as users grow without anything getting cheaper."""
    if not scaling:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 8.5))
    for col, (axis, n_key) in enumerate((("users", "n_users"), ("items", "n_items"))):
        for b, res in scaling.items():
            pts = sorted([p for name, p in res["points"].items() if name.startswith(axis) or name == "all"],
                         key=lambda p: p[n_key])
            x = [p[n_key] for p in pts]
            slope = res["summary"][axis]["time_slope"]
            label = BACKBONE_LABELS.get(b, b)
            line, = axes[0, col].plot(x, [p["epoch_seconds"] for p in pts], marker="o",
                                      label=f"{label} (log-log slope {slope:.2f})" if slope is not None else label)
            axes[1, col].plot(x, [p["peak_rss_mb"] for p in pts], marker="o", color=line.get_color(),
                              label=f"{label}: peak during the epoch")
            if all(p.get("rss_before_mb") is not None for p in pts):
                axes[1, col].plot(x, [p["rss_before_mb"] for p in pts], marker="s", ls="--", color=line.get_color(),
                                  label=f"{label}: before the epoch (setup)")
        axes[0, col].set(xscale="log", yscale="log", xlabel=f"number of {axis}", ylabel="fine-tuning epoch (s)")
        axes[1, col].set(xscale="log", xlabel=f"number of {axis}", ylabel="process RSS (MB)")
        axes[1, col].set_ylim(bottom=0)
        for r in (0, 1):
            axes[r, col].grid(alpha=0.3, which="both")
            _legend_below(axes[r, col], ncol=1)
    fig.suptitle("ReFiT fine-tuning epoch cost (memory: per-rollout tensors scale with items, not users)")
    fig.tight_layout(h_pad=5)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_learning_curve(metrics: Dict[str, Any], path: Path, metrics_to_plot: Sequence[str] = ("recall@20", "ndcg@20")
                        ) -> Path:
    """One run's validation learning curve (``metrics.json`` of ``refit-gym train``): each of ``metrics_to_plot``
    against environment steps, the pretrained start as a dashed line and the selected best model marked.

    ``metrics`` needs ``history`` (``[{num_timesteps, <metric>...}]``, the first entry the pretrained start),
    ``best.num_timesteps``, ``algo``, ``env``, ``data``. Writes ``path`` and returns it."""
    hist = metrics["history"]
    keys = [k for k in metrics_to_plot if all(k in h for h in hist)]
    if not hist or not keys:
        raise ValueError(f"metrics['history'] has no {list(metrics_to_plot)} to plot")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4.2), squeeze=False)
    fig.subplots_adjust(wspace=PANEL_WSPACE)
    steps = np.array([h["num_timesteps"] for h in hist], dtype=np.float64)
    best_step = (metrics.get("best") or {}).get("num_timesteps")
    for ax, k in zip(axes[0], keys):
        y = np.array([h[k] for h in hist], dtype=np.float64)
        ax.plot(steps, y, marker="o", ms=3, label=f"validation {k}")
        ax.axhline(y[0], color="k", ls="--", lw=1, label=f"pretrained start ({y[0]:.4f})")
        if best_step is not None and best_step in steps:
            i = int(np.flatnonzero(steps == best_step)[0])
            ax.plot([steps[i]], [y[i]], marker="*", ms=12, color="tab:red", ls="none",
                    label=f"selected best (step {int(steps[i])})")
        honest_ylim(ax, y)
        ax.set(xlabel="environment steps", ylabel=f"validation {k}")
        ax.grid(alpha=0.3)
        _legend_below(ax, ncol=1)
    fig.suptitle(f"{metrics.get('algo')} on {metrics.get('env')} ({metrics.get('data')})")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


__all__ = ["MIN_REL_SPAN", "honest_ylim", "plot_learning_curve", "plot_scaling", "plot_validation", "seed_band"]
