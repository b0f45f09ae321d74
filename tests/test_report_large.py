"""The per-label report of a large label space: exact AP, buckets, top/bottom labels, caps."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from sigmoidf1.callbacks import report as report_module
from sigmoidf1.callbacks.report import (
    BUCKET_COLUMNS,
    FIGURE_FILES,
    LARGE_FIGURE_FILES,
    PerLabelReport,
    average_precision_per_label,
    per_label_stats,
    pooled_pr_curve,
    support_edges,
    top_and_bottom_labels,
)
from tests.helpers import assert_rows_match, read_csv, reference_rows


def long_tail(n: int = 400, num_labels: int = 80, seed: int = 0):
    """Label frequencies from 40 % down to none; scores informative, rounded to create ties."""
    generator = torch.Generator().manual_seed(seed)
    rates = torch.logspace(-0.4, -3, num_labels)
    targets = (torch.rand(n, num_labels, generator=generator) < rates).float()
    targets[:, -1] = 0
    logits = 2.5 * targets - 2.0 + torch.randn(n, num_labels, generator=generator)
    probabilities = (torch.sigmoid(logits) * 50).round() / 50  # ties within a label
    return probabilities, targets, torch.full((num_labels,), 0.5)


@pytest.mark.parametrize("chunk_labels", [1, 7, 256])
def test_average_precision_per_label_equals_scikit_learn_with_ties(chunk_labels):
    probabilities, targets, _ = long_tail()
    ap = average_precision_per_label(probabilities, targets.bool(), chunk_labels)
    for label in range(targets.shape[1]):
        column = targets[:, label].numpy()
        expected = (
            average_precision_score(column, probabilities[:, label].numpy()) if column.any() else 0
        )
        assert ap[label].item() == pytest.approx(expected, abs=1e-9), label


def test_pooled_binned_curve_equals_the_exact_one_on_scores_at_bin_centres():
    generator = torch.Generator().manual_seed(1)
    bins = 100
    probabilities = (torch.randint(0, bins, (300, 7), generator=generator) + 0.5) / bins
    targets = (torch.rand(300, 7, generator=generator) < probabilities).float()
    recall, precision, ap = pooled_pr_curve(probabilities, targets, bins=bins, chunk=50)
    flat_targets, flat_scores = targets.flatten().numpy(), probabilities.flatten().numpy()
    assert ap == pytest.approx(average_precision_score(flat_targets, flat_scores), abs=1e-12)
    cut = 0.42
    predicted = flat_scores >= cut
    j = int(cut * bins)
    assert precision[j] == pytest.approx(flat_targets[predicted].mean())
    assert recall[j] == pytest.approx(flat_targets[predicted].sum() / flat_targets.sum())


def test_support_edges_and_top_bottom_labels():
    assert support_edges(0) == [0, 1]
    assert support_edges(7) == [0, 1, 2, 5, 10]
    assert support_edges(120) == [0, 1, 2, 5, 10, 20, 50, 100, 200]
    probabilities, targets, thresholds = long_tail()
    stats = per_label_stats(
        probabilities, probabilities >= 0.5, targets, thresholds, [f"l{i}" for i in range(80)]
    )
    chosen = top_and_bottom_labels(stats, 5, min_support=10)
    assert len(chosen) == 10 and (stats.support[chosen] >= 10).all()
    eligible = stats.f1[stats.support >= 10]
    assert stats.f1[chosen[0]] == eligible.max() and stats.f1[chosen[-1]] == eligible.min()
    assert (np.diff(stats.f1[chosen]) <= 0).all()  # best first, worst last


def test_a_large_report_summarises_the_plots_and_keeps_complete_csvs(tmp_path: Path):
    probabilities, targets, thresholds = long_tail()
    names = [f"l{i}" for i in range(80)]
    decisions = probabilities >= thresholds
    report = PerLabelReport(tmp_path / "r", max_labels_plotted=50, top_bottom=5, max_pr_curves=4)
    paths = report.write_and_log(None, probabilities, decisions, targets, thresholds, names)

    for name, filename in LARGE_FIGURE_FILES.items():
        assert paths[name].name == filename
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "r" / FIGURE_FILES["f1_per_label"]).exists()
    rows = read_csv(paths["per_label"])
    assert_rows_match(
        rows, reference_rows(probabilities.numpy(), targets.numpy(), thresholds.numpy())
    )
    buckets = read_csv(paths["buckets"])
    assert list(buckets[0]) == list(BUCKET_COLUMNS)
    assert sum(int(b["labels"]) for b in buckets) == 80
    assert sum(int(b["positives"]) for b in buckets) == int(targets.sum())
    f1 = np.array([float(r["f1"]) for r in rows])
    support = np.array([int(r["support"]) for r in rows])
    for bucket in buckets:
        low, high = int(bucket["support_from"]), int(bucket["support_to"])
        inside = (support >= low) & (support <= high)
        assert float(bucket["f1_mean"]) == pytest.approx(f1[inside].mean(), abs=1e-5)


def test_the_wandb_table_is_capped_to_the_most_frequent_labels(tmp_path, monkeypatch):
    logged = {}

    class Table:
        def __init__(self, columns, data):
            self.columns, self.data = columns, data

    fake = types.SimpleNamespace(
        Table=Table,
        Image=lambda path: path,
        plot=types.SimpleNamespace(
            bar=lambda *args, **kwargs: "bar", line_series=lambda **kwargs: "lines"
        ),
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    logger = types.SimpleNamespace(log_metrics=lambda payload, step: logged.update(payload))
    probabilities, targets, thresholds = long_tail()
    names = [f"l{i}" for i in range(80)]
    report = PerLabelReport(tmp_path / "r", max_labels_plotted=50, max_table_rows=10)
    decisions = probabilities >= thresholds
    paths = report.write_and_log(None, probabilities, decisions, targets, thresholds, names)
    stats = per_label_stats(probabilities, decisions, targets, thresholds, names)
    buckets = report_module.frequency_buckets(stats)
    curves = report._pr_curves(probabilities, targets, stats)
    report_module._log_to_wandb(
        logger, stats, ([0], [0], [0]), curves, paths, 0, buckets, 10, list(LARGE_FIGURE_FILES)
    )
    kept = [row[0] for row in logged["test/per_label"].data]
    most_frequent = np.argsort(-stats.support, kind="stable")[:10]
    assert sorted(kept) == sorted(names[i] for i in most_frequent)
    assert len(logged["test/frequency_buckets"].data) == len(buckets)
    assert "test/per_label_f1_chart" not in logged
    assert set(logged) >= {f"test/plots/{name}" for name in LARGE_FIGURE_FILES}
