"""Figures: learning curves, the sweep comparison, an evaluation's ROC and precision-recall
curves and misclassified images.

Each function returns a matplotlib Figure built without pyplot (no global state, no display);
the caller decides where it is saved or logged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def curve_figure(history: Mapping[str, Sequence[float]], metric: str = "loss") -> Figure:
    """Train vs validation ``metric`` per epoch, as the chapter plots it (epoch on the x axis)."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    epochs = np.arange(len(history[metric]))
    axes.plot(epochs, history[metric], marker="o", label="train")
    if f"val_{metric}" in history:
        axes.plot(epochs, history[f"val_{metric}"], marker="o", label="val")
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.set_xticks(epochs)
    axes.legend()
    axes.grid(alpha=0.3)
    return figure


# Beyond this many runs a legend hides the axes and takes minutes to lay out; the tables name them.
LEGEND_MOST = 40


def comparison_figure(runs: Sequence[Mapping]) -> Figure:
    """Loss per epoch of several runs on shared axes: validation (left) and train (right).

    Each run is a mapping with ``name``, ``loss``, optional ``val_loss`` (lists by epoch),
    ``stopped_epoch`` and ``best_epoch``; the best epoch is marked with a star, the
    stopped epoch with a cross.
    """
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    val_axes, train_axes = figure.subplots(1, 2, sharex=True, sharey=True)
    runs = [run for run in runs if run["loss"] or run.get("val_loss")]  # a run with no epoch draws nothing
    colors = iter(_palette(len(runs)))
    for run in runs:
        color = next(colors)
        train_axes.plot(run["loss"], color=color, label=run["name"])
        if run.get("val_loss"):
            values = run["val_loss"]
            val_axes.plot(values, color=color, label=run["name"])
            best, stopped = run.get("best_epoch"), run.get("stopped_epoch")
            if best is not None and best < len(values):
                val_axes.plot(best, values[best], marker="*", markersize=12, color=color)
            if stopped is not None and stopped < len(values):
                val_axes.plot(stopped, values[stopped], marker="X", markersize=8, color=color)
    val_axes.set_title("validation loss (* best epoch, X stopped epoch)")
    train_axes.set_title("train loss")
    for axes in (val_axes, train_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
    val_axes.set_ylabel("loss")
    if runs and len(runs) <= LEGEND_MOST:
        train_axes.legend(fontsize="small")
    return figure


def misclassified_figure(images: np.ndarray, true: Sequence[int], predicted: Sequence[int],
                         class_names: Sequence[str], columns: int = 6) -> Figure:
    """A grid of images titled 'true -> predicted'."""
    count = max(1, len(images))
    rows = -(-count // columns)
    figure = Figure(figsize=(2 * columns, 2.3 * rows), layout="constrained")
    for index, axes in enumerate(figure.subplots(rows, columns, squeeze=False).flat):
        axes.axis("off")
        if index < len(images):
            axes.imshow(images[index], cmap="gray_r")
            axes.set_title(f"{class_names[true[index]]}\n-> {class_names[predicted[index]]}",
                           fontsize=8)
    return figure


def _palette(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def band_figure(curves_by_name: Mapping[str, Sequence[Sequence[float]]]) -> Figure:
    """Validation loss by epoch per configuration: the mean over seeds as a line, one standard
    deviation around it as a band, on shared axes.

    Curves of different lengths (early stopping) are averaged over the seeds that reached each
    epoch: the band fades as fewer seeds reach an epoch, and the line is labelled ``n=...`` where
    that count drops. Each configuration has its own line style and marker, so that lines which
    coincide stay apart; configurations without a val_loss curve are named under the axes.
    """
    figure = Figure(figsize=(9, 5.4), layout="constrained")
    axes = figure.add_subplot()
    colors = iter(_palette(len(curves_by_name)))
    styles = iter(_line_styles())
    left_out = []
    for index, (name, curves) in enumerate(curves_by_name.items()):
        color, (line_style, marker) = next(colors), next(styles)
        curves = [c for c in curves if len(c)]
        if not curves:
            left_out.append(name)
            continue
        length = max(map(len, curves))
        stacked = np.full((len(curves), length), np.nan)
        for row, curve in enumerate(curves):
            stacked[row, :len(curve)] = curve
        mean = np.nanmean(stacked, axis=0)
        counts = np.sum(~np.isnan(stacked), axis=0)
        spread = np.zeros(length)  # epochs reached by one seed only get no band
        several = counts > 1
        spread[several] = np.nanstd(stacked[:, several], axis=0, ddof=1)
        epochs = np.arange(length)
        # Markers on every third epoch, offset per configuration: coinciding lines show both.
        axes.plot(epochs, mean, color=color, linestyle=line_style, marker=marker, markersize=5,
                  markevery=(index % 3, 3), label=f"{name} (n={len(curves)})")
        for epoch in range(length):  # the band fades with the share of seeds that reached the epoch
            span = slice(epoch, min(epoch + 2, length))
            axes.fill_between(epochs[span], (mean - spread)[span], (mean + spread)[span], color=color,
                              alpha=0.2 * counts[epoch] / len(curves), linewidth=0)
        for epoch in range(1, length):
            if counts[epoch] < counts[epoch - 1]:
                axes.annotate(f"n={counts[epoch]}", (epoch, mean[epoch]), textcoords="offset points",
                              xytext=(2, 6), fontsize="small", color=color)
    _by_whole_steps(axes, "validation loss by epoch: mean over seeds ± one standard deviation", "epoch", "val_loss")
    axes.legend(fontsize="small")
    if left_out:
        figure.text(0.01, 0.005, f"Not drawn (no val_loss: trained without a validation split): "
                    f"{', '.join(left_out)}.", fontsize="small", ha="left", va="bottom")
        figure.get_layout_engine().set(h_pad=0.25)
    return figure


def _line_styles():
    """Line style and marker pairs, cycled: configurations whose lines coincide stay distinguishable."""
    import itertools

    return itertools.cycle([("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1, 1, 1)), "v"),
                            ((0, (1, 1)), "P"), ((0, (8, 2)), "X"), ((0, (3, 1, 1, 1, 1, 1)), "*")])


def interval_figure(summaries: Mapping[str, Mapping[str, object]]) -> Figure:
    """Dot-and-interval plot: for each metric a panel, for each configuration its mean (dot) and
    95% interval (bar). ``summaries`` maps configuration -> metric -> statistics.Summary."""
    metrics = sorted({m for per in summaries.values() for m in per})
    figure = Figure(figsize=(5 * max(1, len(metrics)), 0.5 * len(summaries) + 1.8), layout="constrained")
    panels = figure.subplots(1, max(1, len(metrics)), squeeze=False)[0]
    names = list(summaries)
    for axes, metric in zip(panels, metrics, strict=False):
        for row, name in enumerate(names):
            summary = summaries[name].get(metric)
            if summary is None:
                continue
            axes.errorbar(summary.mean, row, xerr=[[summary.mean - summary.low], [summary.high - summary.mean]],
                          fmt="o", capsize=4, color="tab:blue")
        axes.set_yticks(range(len(names)), names)
        axes.xaxis.set_major_locator(MaxNLocator(4))  # few ticks: four-decimal labels need the room
        axes.tick_params(axis="x", labelrotation=30)
        axes.invert_yaxis()
        axes.set_title(f"{metric}: mean and 95% interval")
        axes.grid(alpha=0.3, axis="x")
    return figure


def history_figure(trials: Sequence[tuple[int, float | None, str]]) -> Figure:
    """A search's optimisation history: each trial's val_loss by trial number (complete trials
    as dots, pruned ones as crosses, those the time budget stopped as triangles) and the best
    complete val_loss so far as a step line. ``trials`` holds (number, val_loss, kind), kind one
    of "complete", "pruned", "time budget"."""
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.add_subplot()
    shown = sorted((n, v, kind) for n, v, kind in trials if v is not None and np.isfinite(v))
    for kind, marker, label in (("complete", "o", "complete trial"), ("pruned", "x", "pruned trial"),
                                ("time budget", "v", "stopped by the time budget")):
        points = [(n, v) for n, v, k in shown if k == kind]
        if points:
            axes.scatter(*zip(*points, strict=True), marker=marker, label=label, zorder=3)
    best, steps = float("inf"), []
    for number, value, kind in shown:
        if kind == "complete" and value < best:
            best = value
        if np.isfinite(best):
            steps.append((number, best))
    if steps:
        axes.step(*zip(*steps, strict=True), where="post", color="black", label="best so far")
    _by_whole_steps(axes, "optimisation history: final val_loss of each trial", "trial", "val_loss")
    if shown:
        axes.legend(fontsize="small")
    return figure


def importance_figure(importances: Mapping[str, float]) -> Figure:
    """How much of the variation in val_loss each setting explains (Optuna's fANOVA), as bars."""
    figure = Figure(figsize=(7, 0.6 * max(len(importances), 2) + 1.2), layout="constrained")
    axes = figure.add_subplot()
    if importances:
        names = sorted(importances, key=importances.get)
        axes.barh(names, [importances[name] for name in names])
        axes.set_xlim(0, 1)
    else:
        axes.text(0.5, 0.5, "too few complete trials to tell", ha="center", va="center")
        axes.set_axis_off()
    axes.set_title("parameter importance for the complete trials' val_loss (fANOVA)")
    axes.set_xlabel("share of the variance explained")
    axes.grid(alpha=0.3, axis="x")
    return figure


# The first misclassified test images an evaluation shows.
MISCLASSIFIED_SHOWN = 24


def class_curves_figure(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                        kind: str = "roc") -> Figure:
    """Each class against the rest, from the class ``probabilities`` (n x classes) and integer
    ``labels``: the ROC curve (``kind`` "roc": true against false positive rate) or the
    precision-recall curve ("pr"), the area under each curve in the legend."""
    from sklearn import metrics as skm

    figure = Figure(figsize=(7.5, 6), layout="constrained")
    axes = figure.add_subplot()
    colors = iter(_palette(len(class_names)))
    for index, name in enumerate(class_names):
        truth, scores = labels == index, probabilities[:, index]
        if kind == "roc":
            x, y, _ = skm.roc_curve(truth, scores)
            area = skm.auc(x, y)
        else:
            y, x, _ = skm.precision_recall_curve(truth, scores)
            area = skm.average_precision_score(truth, scores)
        axes.plot(x, y, color=next(colors), label=f"{name} ({area:.3f})")
    if kind == "roc":
        axes.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
        title, x_label, y_label = "ROC curves, one class against the rest (AUC)", "false positive rate", \
            "true positive rate"
    else:
        title, x_label, y_label = ("precision-recall curves, one class against the rest (average precision)",
                                   "recall", "precision")
    axes.set_title(title)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="lower right" if kind == "roc" else "lower left")
    return figure


def evaluation_figures(probabilities: np.ndarray, images: np.ndarray, labels: np.ndarray) -> dict:
    """An evaluation's figures from its class ``probabilities`` beside the images and integer
    labels, by name (as MLflow names its own plots): the ROC and precision-recall curves, and a
    grid of the first misclassified test images."""
    from fmtrain.learning.data import CLASS_NAMES

    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)[:MISCLASSIFIED_SHOWN]
    return {
        "roc_curve_plot": class_curves_figure(probabilities, labels, CLASS_NAMES, "roc"),
        "precision_recall_curve_plot": class_curves_figure(probabilities, labels, CLASS_NAMES, "pr"),
        "misclassified": misclassified_figure(images[wrong], labels[wrong], predicted[wrong], CLASS_NAMES),
    }


def _by_whole_steps(axes, title: str, x_label: str, y_label: str) -> None:
    """Axes over epochs or trials: whole-number ticks, labels, a light grid."""
    axes.set_title(title)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
