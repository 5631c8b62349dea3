"""refit_gym.plots: honest y axes (no full-height noise), reference lines, seed bands, legends outside the data."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from refit_gym import plots  # noqa: E402


def test_noise_is_drawn_flat_and_ticks_have_no_offset():
    fig, ax = plt.subplots()
    y = 0.1 + np.array([0.0, 3e-5, -2e-5, 1e-5])
    ax.plot(y)
    lo, hi = plots.honest_ylim(ax, y)
    assert hi - lo >= plots.MIN_REL_SPAN * 0.1  # a span of 3e-5 is not stretched to the full height
    assert lo < y.min() and hi > y.max()
    fig.canvas.draw()
    assert ax.yaxis.get_major_formatter().get_offset() == ""
    plt.close(fig)
    fig, ax = plt.subplots()
    lo, hi = plots.honest_ylim(ax, [0.0, 1.0])  # a real change keeps its own span (plus margins)
    assert (lo, hi) == pytest.approx((-0.05, 1.05))
    plt.close(fig)


def test_seed_band_is_mean_and_std_over_seeds_on_the_common_length():
    h = [[{"t": 0, "m": 1.0}, {"t": 2, "m": 3.0}, {"t": 4, "m": 9.0}], [{"t": 0, "m": 3.0}, {"t": 4, "m": 5.0}]]
    x, mean, std = plots.seed_band(h, "m", "t")
    assert x.tolist() == [0, 3] and mean.tolist() == [2, 4] and std.tolist() == [1, 1]


def _table():
    hist = {str(s): [{"train_seconds": 10.0 * i, "ndcg@20": 0.1 + 0.001 * i * (s + 1)} for i in range(4)] for s in range(3)}
    v = lambda x: {"ndcg@20": {"mean": x}}  # noqa: E731
    return [{"kind": "baseline", "label": "EASE", "valid": v(0.12)},
            {"kind": "pretrained", "label": "DiffRec", "spec": {"backbone": "diffrec"}, "valid": v(0.1)},
            {"kind": "finetuned", "label": "DiffRec + ReFiT", "spec": {"backbone": "diffrec"}, "valid": v(0.105),
             "seeds_done": [0, 1, 2], "history": hist}]


def test_validation_plot_has_references_bands_and_an_outside_legend(tmp_path, monkeypatch):
    saved = {}
    monkeypatch.setattr(plt.Figure, "savefig", lambda self, *a, **k: saved.setdefault("fig", self))
    plots.plot_validation(_table(), tmp_path / "v.png")
    ax = saved["fig"].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["DiffRec + ReFiT (3 seeds)", "pretrained start (0.1000)", "best baseline: EASE (0.1200)"]
    assert len(ax.collections) == 1  # the ±1 std band of the 3 seeds
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(saved["fig"])
    canvas.draw()
    legend_box = ax.get_legend().get_window_extent(canvas.get_renderer())
    assert legend_box.y1 <= ax.get_window_extent().y0  # below the axes, not over the curves
    assert ax.get_ylim()[1] > 0.12  # the references are inside the axis


def test_learning_curve_png(tmp_path):
    m = {"algo": "refit", "env": "refit_gym/DiffRec-v0", "data": "synthetic", "best": {"num_timesteps": 100},
         "history": [{"num_timesteps": 0, "recall@20": 0.2, "ndcg@20": 0.1},
                     {"num_timesteps": 100, "recall@20": 0.21, "ndcg@20": 0.11}]}
    path = plots.plot_learning_curve(m, tmp_path / "lc.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no"):
        plots.plot_learning_curve(dict(m, history=[{"num_timesteps": 0}]), tmp_path / "x.png")


def test_side_by_side_panels_leave_room_for_the_right_panels_y_label(tmp_path, monkeypatch):
    saved = {}
    monkeypatch.setattr(plt.Figure, "savefig", lambda self, *a, **k: saved.setdefault("fig", self))
    m = {"algo": "pathwise", "env": "refit_gym/DiffRec-v0", "data": "synthetic", "best": {"num_timesteps": 3072000},
         "history": [{"num_timesteps": 1024000 * i, "recall@20": r, "ndcg@20": n}  # probe long's seed 0
                     for i, (r, n) in enumerate([(0.1123, 0.0556), (0.1382, 0.0670), (0.1387, 0.0678), (0.1395, 0.0684)])]}
    plots.plot_learning_curve(m, tmp_path / "lc.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = saved["fig"]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    left, right = fig.axes[:2]
    gap = right.yaxis.label.get_window_extent(renderer).x0 - left.get_window_extent(renderer).x1
    assert gap > 0.02 * fig.bbox.width  # the right panel's y label clears the left panel's frame (it touched it)
