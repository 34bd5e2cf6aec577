"""What the report's plots draw, read back from the matplotlib figures: lines, bands, dots, bars, labels, scales.

Every job below is built by hand in memory, and every expected number is worked out by hand from the numbers in
this file (in the comments), never with the report code. The plotting functions save and close their figure; the
`drawn` fixture keeps each figure they save, and a closed figure still holds everything that was drawn on it.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_rgba

import cnnlab.report.plots as plots
from cnnlab.report.collect import Job


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures the plotting functions save, in order (saved to disk as usual)."""
    figures, save = [], plots.save_figure

    def keep_and_save(fig, path: Path) -> Path:
        figures.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plots, "save_figure", keep_and_save)
    return figures


def job(num: int, overrides: dict[str, str], curves: dict | None = None, status: str = "completed", **metrics) -> Job:
    return Job(Path("sweep") / str(num), overrides, {"status": status, **metrics}, curves or {})


def xy(line) -> tuple[list[float], list[float]]:
    return [float(x) for x in line.get_xdata()], [float(y) for y in line.get_ydata()]


def band(collection) -> dict[float, tuple[float, float]]:
    """A fill_between band as x → (lowest, highest) y of its outline."""
    ys: dict[float, list[float]] = {}
    for x, y in collection.get_paths()[0].vertices:
        ys.setdefault(float(x), []).append(float(y))
    return {x: (min(v), max(v)) for x, v in sorted(ys.items())}


def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def visible_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.axison]


# --- validation accuracy per epoch -------------------------------------------------------------------------------

# model.depth=4 has three seeds of different lengths (the plot keeps the shortest, 3 epochs), model.depth=2 one
# seed; the depth 4 jobs come first, so job order and setting order differ.
VAL_ACC_JOBS = [
    job(0, {"model.depth": "4", "seed": "0"}, {"val/acc": [0.20, 0.40, 0.60, 0.80]}),
    job(1, {"model.depth": "4", "seed": "1"}, {"val/acc": [0.30, 0.30, 0.50]}),
    job(2, {"model.depth": "4", "seed": "2"}, {"val/acc": [0.40, 0.50, 0.80, 0.90]}),
    job(3, {"model.depth": "2", "seed": "0"}, {"val/acc": [0.50, 0.60, 0.70, 0.65]}),
    job(4, {"model.depth": "3", "seed": "0"}, {"train/loss": [2.0, 1.0]}),  # no val curve: no line
]


def test_val_acc_draws_one_line_per_setting_at_the_mean_over_seeds_in_percent_per_epoch(drawn, tmp_path):
    """One line per setting with a val/acc curve, in setting order: x = epochs 1..n (shortest seed), y = 100 × mean."""
    assert plots.plot_val_acc(VAL_ACC_JOBS, ["model.depth"], tmp_path) == "val_acc_vs_epoch.png"
    assert (tmp_path / "val_acc_vs_epoch.png").stat().st_size > 0
    (fig,) = drawn
    (ax,) = fig.axes
    depth2, depth4 = ax.get_lines()
    assert [depth2.get_label(), depth4.get_label()] == ["model.depth=2 (n=1)", "model.depth=4 (n=3)"]
    x, y = xy(depth2)
    assert x == [1, 2, 3, 4] and y == pytest.approx([50, 60, 70, 65])  # the one seed as it is
    x, y = xy(depth4)
    # epochs 1–3 of each seed: (20 + 30 + 40) / 3, (40 + 30 + 50) / 3, (60 + 50 + 80) / 3
    assert x == [1, 2, 3] and y == pytest.approx([30, 40, 190 / 3])
    assert [line.get_marker() for line in (depth2, depth4)] == ["o", "o"]
    assert legend_texts(ax) == ["model.depth=2 (n=1)", "model.depth=4 (n=3)"]


def test_val_acc_band_spans_worst_to_best_seed_only_where_there_are_several_seeds(drawn, tmp_path):
    """A band from the per-epoch min to max over seeds, in the line's colour at alpha 0.2; none for a single seed."""
    plots.plot_val_acc(VAL_ACC_JOBS, ["model.depth"], tmp_path)
    (ax,) = drawn[0].axes
    (only_band,) = ax.collections  # depth 2 has one seed: no band
    assert band(only_band) == {1.0: (20, 40), 2.0: (30, 50), 3.0: (50, 80)}  # per epoch over the three depth-4 seeds
    depth2, depth4 = ax.get_lines()
    assert to_rgba(depth2.get_color()) == plt.cm.tab10(0) and to_rgba(depth4.get_color()) == plt.cm.tab10(1)
    assert tuple(only_band.get_facecolor()[0]) == pytest.approx((*plt.cm.tab10(1)[:3], 0.2))


def test_val_acc_axes_are_labelled_and_nothing_is_drawn_without_val_curves(drawn, tmp_path):
    """Axis labels and title as the report names them; no val/acc curve anywhere: no plot, no file."""
    plots.plot_val_acc(VAL_ACC_JOBS, ["model.depth"], tmp_path)
    (ax,) = drawn[0].axes
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "epoch",
        "validation accuracy (%)",
        "Validation accuracy per epoch",
    )
    assert plots.plot_val_acc(VAL_ACC_JOBS[4:], ["model.depth"], tmp_path / "none") is None
    assert len(drawn) == 1 and not (tmp_path / "none").exists()


# --- train vs validation loss ------------------------------------------------------------------------------------

LOSS_JOBS = [
    job(0, {"model.depth": "1", "seed": "0"}, {"train/loss": [2.0, 1.5], "val/loss": [2.1, 1.9]}),
    job(1, {"model.depth": "1", "seed": "1"}, {"train/loss": [2.2, 1.7], "val/loss": [2.3, 2.1]}),
    job(2, {"model.depth": "2", "seed": "0"}, {"train/loss": [1.8, 1.2, 0.9], "val/loss": [1.9, 1.6, 1.7, 1.8]}),
    job(3, {"model.depth": "3", "seed": "0"}, {"train/loss": [1.0], "val/loss": [1.1]}),
    job(4, {"model.depth": "4", "seed": "0"}, {"train/loss": [1.5, 1.0], "val/loss": [1.6, 1.4]}),
    job(5, {"model.depth": "5", "seed": "0"}, {"train/loss": [1.0, 0.5]}),  # no val loss: no panel
]


def test_losses_draw_one_panel_per_setting_with_mean_train_solid_and_mean_val_dashed(drawn, tmp_path):
    """Panel i (row-major) is setting i: its title, a solid 'train' and a dashed 'val' line at the mean over seeds."""
    assert plots.plot_losses(LOSS_JOBS, ["model.depth"], tmp_path) == "loss_curves.png"
    assert (tmp_path / "loss_curves.png").stat().st_size > 0
    (fig,) = drawn
    expected = {  # depth → (train mean, val mean) per epoch, by hand
        "1": ([2.1, 1.6], [2.2, 2.0]),  # (2.0 + 2.2) / 2, (1.5 + 1.7) / 2; (2.1 + 2.3) / 2, (1.9 + 2.1) / 2
        "2": ([1.8, 1.2, 0.9], [1.9, 1.6, 1.7, 1.8]),  # one seed, each curve its own length
        "3": ([1.0], [1.1]),
        "4": ([1.5, 1.0], [1.6, 1.4]),
    }
    panels = visible_axes(fig)
    assert [ax.get_title() for ax in panels] == [f"model.depth={d}" for d in expected]
    for ax, (train, val) in zip(panels, expected.values()):
        train_line, val_line = ax.get_lines()
        assert (train_line.get_label(), train_line.get_linestyle()) == ("train", "-")
        assert (val_line.get_label(), val_line.get_linestyle()) == ("val", "--")
        assert xy(train_line) == (list(range(1, len(train) + 1)), pytest.approx(train))
        assert xy(val_line) == (list(range(1, len(val) + 1)), pytest.approx(val))
        assert ax.get_xlabel() == "epoch"


def test_losses_label_the_first_panel_share_the_loss_axis_and_blank_the_unused_cells(drawn, tmp_path):
    """4 settings: a 2 × 3 grid, cells 5 and 6 off; ylabel and legend on the first panel only; shared y axis."""
    plots.plot_losses(LOSS_JOBS, ["model.depth"], tmp_path)
    (fig,) = drawn
    assert len(fig.axes) == 6 and fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 3)
    assert [ax.axison for ax in fig.axes] == [True, True, True, True, False, False]
    assert [ax.get_ylabel() for ax in fig.axes[:4]] == ["cross-entropy", "", "", ""]
    assert [legend_texts(ax) for ax in fig.axes[:4]] == [["train", "val"], [], [], []]
    assert all(fig.axes[0].get_shared_y_axes().joined(fig.axes[0], ax) for ax in fig.axes[1:4])
    assert fig.get_suptitle() == "Train vs validation loss"


@pytest.mark.parametrize("settings, rows, cols", [(1, 1, 1), (2, 1, 2), (3, 1, 3), (4, 2, 3), (6, 2, 3), (7, 3, 3)])
def test_losses_grid_is_at_most_three_panels_wide(drawn, tmp_path, settings, rows, cols):
    """n settings fill ceil(n / 3) rows of min(3, n) panels; the cells left over are switched off."""
    jobs = [job(d, {"model.depth": str(d)}, {"train/loss": [1.0], "val/loss": [2.0]}) for d in range(settings)]
    plots.plot_losses(jobs, ["model.depth"], tmp_path)
    (fig,) = drawn
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (rows, cols)
    assert len(fig.axes) == rows * cols and len(visible_axes(fig)) == settings


def test_losses_need_a_setting_with_both_curves(drawn, tmp_path):
    """Train loss without val loss (or none at all) is no plot and no file."""
    assert plots.plot_losses(LOSS_JOBS[5:], ["model.depth"], tmp_path / "a") is None
    assert plots.plot_losses([job(0, {"model.depth": "1"})], ["model.depth"], tmp_path / "b") is None
    assert drawn == [] and not (tmp_path / "a").exists()


# --- final accuracy by swept axis --------------------------------------------------------------------------------

BY_AXIS_JOBS = [
    job(0, {"model.depth": "10", "optim.lr": "0.1"}, val_acc_final=0.50),
    job(1, {"model.depth": "2", "optim.lr": "0.1"}, val_acc_final=0.40),
    job(2, {"model.depth": "10", "optim.lr": "0.1"}, val_acc_final=0.70),
    job(3, {"model.depth": "2", "optim.lr": "0.01"}, val_acc_final=0.60),
    job(4, {"model.depth": "3"}, val_acc_final=0.80),  # no optim.lr: the value '-'
    job(5, {"model.depth": "20", "optim.lr": "0.5"}, status="failed", val_acc_final=0.99),  # not completed: left out
]


def dots_and_bars(ax) -> tuple[dict[float, list[float]], dict[float, tuple[float, float, float]]]:
    """x → the dots' y values (sorted), and x → (left end, right end, y) of the mean bar."""
    dots: dict[float, list[float]] = {}
    for points in (c for c in ax.collections if isinstance(c, PathCollection)):
        for x, y in points.get_offsets():
            dots.setdefault(float(x), []).append(float(y))
    bars = {}
    for lines in (c for c in ax.collections if isinstance(c, LineCollection)):
        for (x0, y0), (x1, y1) in lines.get_segments():
            assert y0 == y1  # a horizontal bar
            bars[(x0 + x1) / 2] = (float(x0), float(x1), float(y0))
    return {x: sorted(ys) for x, ys in sorted(dots.items())}, dict(sorted(bars.items()))


def test_by_axis_puts_each_completed_jobs_final_acc_at_its_value_and_a_bar_at_their_mean(drawn, tmp_path):
    """Per axis: values in numeric order (words after numbers), dots at 100 × val_acc_final, a ±0.3 bar at the mean."""
    assert plots.plot_by_axis(BY_AXIS_JOBS, ["model.depth", "optim.lr"], tmp_path) == "acc_by_axis.png"
    assert (tmp_path / "acc_by_axis.png").stat().st_size > 0
    (fig,) = drawn
    depth, lr = fig.axes
    assert [t.get_text() for t in depth.get_xticklabels()] == ["2", "3", "10"]  # 10 after 3, and no failed 20
    assert [float(t) for t in depth.get_xticks()] == [0, 1, 2]
    dots, bars = dots_and_bars(depth)
    assert dots == {0: pytest.approx([40, 60]), 1: pytest.approx([80]), 2: pytest.approx([50, 70])}
    assert bars == {
        0: pytest.approx((-0.3, 0.3, 50)),
        1: pytest.approx((0.7, 1.3, 80)),
        2: pytest.approx((1.7, 2.3, 60)),
    }
    assert [t.get_text() for t in lr.get_xticklabels()] == ["0.01", "0.1", "-"]
    dots, bars = dots_and_bars(lr)
    assert dots == {0: pytest.approx([60]), 1: pytest.approx([40, 50, 70]), 2: pytest.approx([80])}
    assert [bar[2] for bar in bars.values()] == pytest.approx([60, 160 / 3, 80])  # (50 + 40 + 70) / 3, not the median


def test_by_axis_panels_are_labelled_coloured_and_share_the_accuracy_axis(drawn, tmp_path):
    """One panel per axis in one row, xlabel the axis, ylabel on the first; blue dots, red bars of width 2."""
    plots.plot_by_axis(BY_AXIS_JOBS, ["model.depth", "optim.lr"], tmp_path)
    (fig,) = drawn
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (1, 2)
    depth, lr = fig.axes
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in (depth, lr)] == [
        ("model.depth", "final validation accuracy (%)"),
        ("optim.lr", ""),
    ]
    assert depth.get_shared_y_axes().joined(depth, lr)
    assert fig.get_suptitle() == "Final accuracy by swept axis (dots: jobs, bar: mean)"
    for collection in depth.collections:
        if isinstance(collection, PathCollection):
            assert tuple(collection.get_facecolor()[0]) == pytest.approx((*to_rgba("tab:blue")[:3], 0.6))
        else:
            assert tuple(collection.get_color()[0]) == to_rgba("tab:red") and list(collection.get_linewidth()) == [2]


def test_by_axis_needs_a_completed_job_and_a_swept_axis(drawn, tmp_path):
    """Only failed jobs, or nothing swept: no plot and no file."""
    assert plots.plot_by_axis(BY_AXIS_JOBS[5:], ["model.depth"], tmp_path / "a") is None
    assert plots.plot_by_axis(BY_AXIS_JOBS, [], tmp_path / "b") is None
    assert drawn == [] and not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --- augmentation gain against capacity --------------------------------------------------------------------------

GAIN_AXES = ["augment", "data.train_subset", "model.width"]


def gain(augment: str, subset: str, width: int, params: int | None, value: float, std: float | None) -> dict:
    """A row as report.gain.gain_rows gives it, written by hand (only the keys the plot reads)."""
    return {
        "augment": augment,
        "data.train_subset": subset,
        "model.width": str(width),
        "params": params,
        "gain": value,
        "gain_std": std,
    }


GAINS = [
    gain("crop_flip", "5000", 8, 6_000, 0.03, 0.02),
    gain("crop_flip", "5000", 32, 95_000, 0.10, 0.02),
    gain("crop_flip", "null", 32, 95_000, 0.055, None),  # one seed: no error bar (drawn as 0)
    gain("crop_flip", "null", 8, 6_000, 0.00, 0.01),  # before width 32 once sorted by parameter count
    gain("rotate90", "5000", 8, 6_000, -0.02, None),
    gain("rotate90", "5000", 16, None, 0.50, 0.10),  # no parameter count: not drawn
]


def gap_job(num: int, augment: str, subset: str, width: int, train_acc: float, val_final: float, **kw) -> Job:
    overrides = {"augment": augment, "data.train_subset": subset, "model.width": str(width)}
    metrics = {"val_acc_final": val_final, "params": {8: 6_000, 32: 95_000}[width], **kw}
    return job(num, overrides, {"train/acc": [0.1, train_acc]}, **metrics)


GAP_JOBS = [
    gap_job(0, "none", "5000", 8, 0.90, 0.50),  # gaps 0.40 and 0.20: mean 0.30, sample std √(2 · 0.1²) = 0.1414
    gap_job(1, "none", "5000", 8, 0.80, 0.60),
    gap_job(2, "none", "5000", 32, 0.99, 0.59),  # gap 0.40, one seed
    gap_job(3, "crop_flip", "5000", 8, 0.70, 0.60),  # gaps 0.10 and 0.14: mean 0.12, sample std √(2 · 0.02²)
    gap_job(5, "crop_flip", "5000", 8, 0.72, 0.58),
    gap_job(6, "crop_flip", "5000", 32, 0.75, 0.70),  # gap 0.05
    gap_job(7, "none", "null", 8, 0.90, 0.10, status="failed"),  # not completed: no point
    job(8, {"augment": "rotate90", "data.train_subset": "5000", "model.width": "8"}, val_acc_final=0.5, params=6_000),
    job(
        9,
        {"augment": "crop_flip", "data.train_subset": "null", "model.width": "8"},
        {"train/acc": [0.9]},
        val_acc_final=0.5,
    ),
]  # jobs 8 (no train/acc curve) and 9 (no parameter count) have no gap point either


def errorbars(ax) -> dict[str, dict]:
    """Each errorbar series by its label: x, y, the half-length of each bar, colour and line style."""
    series = {}
    for container in ax.containers:
        data_line, _caps, (bars,) = container.lines
        x, y = xy(data_line)
        segments = bars.get_segments()
        assert [float(s[0][0]) for s in segments] == x  # one bar at each point
        series[container.get_label()] = {
            "x": x,
            "y": y,
            "err": [float(top - bottom) / 2 for (_, bottom), (_, top) in segments],
            "color": to_rgba(data_line.get_color()),
            "linestyle": data_line.get_linestyle(),
            "marker": data_line.get_marker(),
        }
    return series


def test_aug_gain_left_draws_the_gain_in_points_against_parameters_one_line_per_policy_and_other_axes(drawn, tmp_path):
    """Left: per (augment, non-capacity axes) a line through (params, 100 × gain), sorted by params, bars 100 × std."""
    assert plots.plot_aug_gain(GAP_JOBS, GAIN_AXES, GAINS, tmp_path) == "aug_gain.png"
    assert (tmp_path / "aug_gain.png").stat().st_size > 0
    (fig,) = drawn
    left, _ = fig.axes
    series = errorbars(left)
    assert list(series) == [
        "augment=crop_flip data.train_subset=5000",
        "augment=crop_flip data.train_subset=null",
        "augment=rotate90 data.train_subset=5000",
    ]
    five_k, full, rotate = series.values()
    assert (five_k["x"], five_k["y"], five_k["err"]) == ([6_000, 95_000], pytest.approx([3, 10]), pytest.approx([2, 2]))
    assert (full["x"], full["y"], full["err"]) == ([6_000, 95_000], pytest.approx([0, 5.5]), pytest.approx([1, 0]))
    assert (rotate["x"], rotate["y"], rotate["err"]) == ([6_000], pytest.approx([-2]), [0])
    assert {s["marker"] for s in series.values()} == {"o"}
    assert legend_texts(left) == list(series)
    in_series = {line for c in left.containers for line in (c.lines[0], *c.lines[1])}
    (zero_line,) = [line for line in left.get_lines() if line not in in_series]
    assert list(zero_line.get_ydata()) == [0, 0] and to_rgba(zero_line.get_color()) == to_rgba("grey")


def test_aug_gain_right_draws_each_settings_mean_train_val_gap_with_its_sample_std(drawn, tmp_path):
    """Right: per line a point per completed setting with a train/acc curve and a parameter count, none included."""
    plots.plot_aug_gain(GAP_JOBS, GAIN_AXES, GAINS, tmp_path)
    _, right = drawn[0].axes
    series = errorbars(right)
    assert list(series) == ["augment=crop_flip data.train_subset=5000", "augment=none data.train_subset=5000"]
    crop, none = series.values()
    assert (crop["x"], crop["y"]) == ([6_000, 95_000], pytest.approx([12, 5]))  # 100 × (0.10 + 0.14) / 2, 0.75 − 0.70
    assert crop["err"] == pytest.approx([100 * math.sqrt(2 * 0.02**2), 0])  # n − 1; the population std would be 2
    assert (none["x"], none["y"]) == ([6_000, 95_000], pytest.approx([30, 40]))
    assert none["err"] == pytest.approx([100 * math.sqrt(2 * 0.1**2), 0])  # 14.14, not 10
    assert legend_texts(right) == list(series)


def test_aug_gain_colours_by_policy_with_none_black_and_dashes_by_the_other_axes(drawn, tmp_path):
    """Policies other than none in alphabetical order take tab10 colours 0, 1, ... (rotate90 sorts after none, yet
    takes colour 1); none is black; each value of the other axes its own dash style."""
    plots.plot_aug_gain(GAP_JOBS, GAIN_AXES, GAINS, tmp_path)
    left, right = drawn[0].axes
    styles = {label: (s["color"], s["linestyle"]) for ax in (left, right) for label, s in errorbars(ax).items()}
    assert styles == {
        "augment=crop_flip data.train_subset=5000": (plt.cm.tab10(0), "-"),
        "augment=crop_flip data.train_subset=null": (plt.cm.tab10(0), "--"),
        "augment=rotate90 data.train_subset=5000": (plt.cm.tab10(1), "-"),
        "augment=none data.train_subset=5000": (to_rgba("black"), "-"),
    }


def test_aug_gain_axes_are_log_parameters_labelled_with_the_capacity_axes(drawn, tmp_path):
    """Both panels: log x named after the swept model.* axes, their own ylabel and title; the figure's suptitle."""
    plots.plot_aug_gain(GAP_JOBS, GAIN_AXES, GAINS, tmp_path)
    (fig,) = drawn
    left, right = fig.axes
    assert [(ax.get_xscale(), ax.get_xlabel()) for ax in (left, right)] == [
        ("log", "parameters (model.width swept)")
    ] * 2
    assert (left.get_ylabel(), left.get_title()) == (
        "test accuracy gain over augment=none (points)",
        "What augmentation buys",
    )
    assert (right.get_ylabel(), right.get_title()) == (
        "final train − val accuracy (points)",
        "Train–val gap (overfitting)",
    )
    assert fig.get_suptitle() == "Augmentation gain against capacity (mean over seeds, bars: sample std)"


def test_aug_gain_without_a_capacity_axis_has_plain_parameters_and_one_style_per_policy(drawn, tmp_path):
    """Only augment swept: x label 'parameters', one line per policy, all solid; no gain rows: no plot."""
    jobs = [job(0, {"augment": "none"}, {"train/acc": [0.9]}, val_acc_final=0.6, params=1_000)]
    rows = [{"augment": "crop_flip", "params": 1_000, "gain": 0.04, "gain_std": None}]
    plots.plot_aug_gain(jobs, ["augment"], rows, tmp_path)
    left, right = drawn[0].axes
    assert [ax.get_xlabel() for ax in (left, right)] == ["parameters", "parameters"]
    (crop,) = errorbars(left).values()
    (none,) = errorbars(right).values()
    assert [c.get_label() for ax in (left, right) for c in ax.containers] == ["augment=crop_flip", "augment=none"]
    assert (crop["y"], none["y"]) == (pytest.approx([4]), pytest.approx([30]))  # 100 × 0.04; 100 × (0.9 − 0.6)
    assert (crop["linestyle"], none["linestyle"], none["color"]) == ("-", "-", to_rgba("black"))
    assert plots.plot_aug_gain(jobs, ["augment"], [], tmp_path / "none") is None and len(drawn) == 1


def test_curve_plots_order_settings_by_their_values_numbers_numerically(drawn, tmp_path):
    """model.width=8 comes before 16 and 32 (as strings it would come last), in both curve plots."""
    curves = {"val/acc": [0.5, 0.6], "train/loss": [1.0, 0.8], "val/loss": [1.1, 0.9]}
    jobs = [job(i, {"model.width": w}, curves) for i, w in enumerate(["16", "32", "8"])]
    plots.plot_val_acc(jobs, ["model.width"], tmp_path)
    plots.plot_losses(jobs, ["model.width"], tmp_path)
    val_fig, loss_fig = drawn
    assert [line.get_label() for line in val_fig.axes[0].get_lines()] == [
        "model.width=8 (n=1)",
        "model.width=16 (n=1)",
        "model.width=32 (n=1)",
    ]
    assert [ax.get_title() for ax in visible_axes(loss_fig)] == ["model.width=8", "model.width=16", "model.width=32"]


def test_val_acc_band_is_drawn_for_two_seeds(drawn, tmp_path):
    """Two seeds are already several: the band spans them (mutmut: `len(runs) > 2` survived the 3-seed test)."""
    jobs = [
        job(0, {"model.depth": "2", "seed": "0"}, {"val/acc": [0.10, 0.30]}),
        job(1, {"model.depth": "2", "seed": "1"}, {"val/acc": [0.20, 0.60]}),
    ]
    plots.plot_val_acc(jobs, ["model.depth"], tmp_path)
    (only_band,) = drawn[0].axes[0].collections
    assert band(only_band) == {1.0: (10, 20), 2.0: (30, 60)}


def test_aug_gain_names_several_capacity_axes_and_dashes_a_third_value_dotted(drawn, tmp_path):
    """Two model.* axes are listed ", "-separated in the x label; each value of the other axis takes the next dash
    style, over gain and gap rows together; a gap job without a value on an axis is labelled with '-' there."""
    axes = ["augment", "data.train_subset", "model.depth", "model.width"]
    rows = [
        {"augment": "crop_flip", "data.train_subset": size, "model.depth": "3", "model.width": "8", "params": 100}
        | {"gain": 0.01, "gain_std": None}
        for size in ("null", "1000", "5000")
    ]
    gap_job = job(0, {"augment": "none", "model.depth": "3", "model.width": "8"}, {"train/acc": [0.9]})
    gap_job.metrics.update(val_acc_final=0.6, params=100)
    plots.plot_aug_gain([gap_job], axes, rows, tmp_path)
    left, right = drawn[0].axes
    assert left.get_xlabel() == "parameters (model.depth, model.width swept)"
    assert {label: s["linestyle"] for label, s in errorbars(left).items()} == {
        # sorted values: "-" (the gap job's missing size) takes "-", then 1000, 5000, null
        "augment=crop_flip data.train_subset=1000": "--",
        "augment=crop_flip data.train_subset=5000": ":",
        "augment=crop_flip data.train_subset=null": "-.",
    }
    assert list(errorbars(right)) == ["augment=none data.train_subset=-"]


def test_curve_plots_put_a_job_without_a_swept_value_after_the_valued_ones_as_dash(drawn, tmp_path):
    """A job that lacks a swept axis (e.g. from an older sweep) is the setting 'model.width=-', sorted after the
    numbers like any word; it does not stop the plot."""
    curves = {"val/acc": [0.5, 0.6]}
    jobs = [job(0, {}, curves), job(1, {"model.width": "16"}, curves), job(2, {"model.width": "8"}, curves)]
    plots.plot_val_acc(jobs, ["model.width"], tmp_path)
    assert [line.get_label() for line in drawn[0].axes[0].get_lines()] == [
        "model.width=8 (n=1)",
        "model.width=16 (n=1)",
        "model.width=- (n=1)",
    ]
