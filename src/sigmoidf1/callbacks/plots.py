"""The three figures of the per-label test report, drawn with matplotlib (Agg backend).

Each function takes plain numpy arrays and returns a ``matplotlib.figure.Figure``; the caller saves
and closes it. matplotlib is imported inside the functions so that importing this module stays
cheap and never touches a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas: no pyplot, no global state, no display, whatever backend the
    process (or a notebook) has selected."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def f1_bar_chart(
    label_names: Sequence[str],
    f1: np.ndarray,
    precision: np.ndarray,
    recall: np.ndarray,
    support: np.ndarray,
    title: str = "Per-label F1 (test)",
    rows: Sequence[int] | None = None,
) -> Figure:
    """Horizontal F1 bar per label with precision and recall markers, most frequent label on top.

    All arrays have shape ``[num_labels]``; ``support`` is the number of positive test examples.
    ``rows``: draw only these labels, in this order (e.g. the best and the worst ones). The dashed
    line is the macro F1 of all labels (the plain mean of ``f1``).
    """
    order = np.argsort(-support, kind="stable") if rows is None else np.asarray(rows, dtype=int)
    num_labels = len(label_names)
    fig = _figure(7.5, 1.3 + 0.3 * len(order))
    ax = fig.add_subplot()
    y = np.arange(len(order))
    ax.barh(y, f1[order], color="#4C72B0", height=0.7, label="F1")
    marks = {"zorder": 3, "clip_on": False}  # a score of exactly 1 stays visible on the frame
    ax.scatter(precision[order], y, marker="|", s=120, color="#DD8452", label="precision", **marks)
    ax.scatter(recall[order], y, marker="x", s=30, color="#2A9D55", label="recall", **marks)
    macro = float(np.mean(f1)) if num_labels else 0.0
    ax.axvline(macro, color="black", linestyle="--", linewidth=1, label=f"macro F1 {macro:.3f}")
    ax.set_yticks(y, [f"{label_names[i]}  (n={int(support[i])})" for i in order])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("score at the chosen threshold")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small", framealpha=0.9)
    return fig


def bucket_chart(
    buckets: Sequence[Sequence[float]], title: str = "F1 by label frequency"
) -> Figure:
    """Mean F1, precision, recall and average precision of the labels of each frequency bucket,
    and the bucket's pooled (micro) F1, as grouped bars.

    ``buckets``: rows of ``report.BUCKET_COLUMNS`` (support range, labels, positives, the four
    means, micro F1); each group is labelled with its support range and number of labels.
    """
    fig = _figure(max(7.5, 1.2 * len(buckets) + 2), 4.5)
    ax = fig.add_subplot()
    x = np.arange(len(buckets))
    series = [
        ("mean F1", 4, "#4C72B0"),
        ("mean precision", 5, "#DD8452"),
        ("mean recall", 6, "#2A9D55"),
        ("mean AP", 7, "#8172B3"),
        ("micro F1", 8, "#8C8C8C"),
    ]
    width = 0.8 / len(series)
    for index, (name, column, color) in enumerate(series):
        values = [row[column] for row in buckets]
        ax.bar(x + (index - 2) * width, values, width, color=color, label=name)
    ax.set_xticks(
        x,
        [
            f"{int(r[0])}" + (f"-{int(r[1])}" if r[1] != r[0] else "") + f"\n{int(r[2]):,} labels"
            for r in buckets
        ],
        fontsize="small",
    )
    ax.set_xlabel("positive test examples of a label")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncols=len(series), loc="upper left")
    return fig


def pr_curves(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]],
    operating_points: Sequence[tuple[float, float]],
    micro: tuple[np.ndarray, np.ndarray, float] | None = None,
    title: str = "Precision-recall curves (test)",
) -> Figure:
    """One precision-recall curve per label, with a dot at the label's chosen threshold.

    Args:
        curves: ``(label, recall, precision, average_precision)`` per label to draw.
        operating_points: ``(recall, precision)`` at the chosen threshold, one per curve.
        micro: ``(recall, precision, average_precision)`` of all labels pooled, drawn in black.
    """
    import matplotlib

    fig = _figure(7.5, 6.0)
    ax = fig.add_subplot()
    colors = matplotlib.colormaps["tab20"].colors
    for index, ((label, recall, precision, ap), (r0, p0)) in enumerate(
        zip(curves, operating_points, strict=True)
    ):
        color = colors[index % len(colors)]
        ax.plot(recall, precision, color=color, linewidth=1.2, label=f"{label} (AP {ap:.2f})")
        ax.plot(
            [r0], [p0], "o", color=color, markersize=5, markeredgecolor="black", markeredgewidth=0.5
        )
    if micro is not None:
        recall, precision, ap = micro
        ax.plot(
            recall,
            precision,
            color="black",
            linewidth=2.2,
            label=f"all labels pooled (AP {ap:.2f})",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title + "; dots: chosen thresholds")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    return fig


def label_count_histogram(
    counts: np.ndarray,
    true_examples: np.ndarray,
    predicted_examples: np.ndarray,
    title: str = "Labels per example (test)",
) -> Figure:
    """Number of examples with ``k`` true labels next to the number with ``k`` predicted labels.

    ``counts`` is ``[0, 1, ..., K]``; the two other arrays have the same shape. The title carries
    the mean absolute difference between predicted and true counts (``card_mae``) when given.
    """
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot()
    if len(counts) <= 60:
        width = 0.4
        ax.bar(counts - width / 2, true_examples, width, color="#8C8C8C", label="true labels")
        ax.bar(
            counts + width / 2, predicted_examples, width, color="#4C72B0", label="predicted labels"
        )
        ax.set_xticks(counts)
    else:  # a wide range (an example predicted with thousands of labels): two step lines
        ax.step(counts, true_examples, where="mid", color="#8C8C8C", label="true labels")
        ax.step(counts, predicted_examples, where="mid", color="#4C72B0", label="predicted labels")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("number of labels of an example")
    ax.set_ylabel("examples")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return fig
