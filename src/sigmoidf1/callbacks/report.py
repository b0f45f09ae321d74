"""Per-label test report: a table and three plots of the test set, whatever the logger.

During ``trainer.test`` the callback keeps each batch's logits ``z`` and targets ``y`` (shape
``[batch, L]``); at the end of the epoch it gathers them from every process and, on rank zero,
writes to ``output_dir`` (``<run dir>/report/`` in the configs):

=====================  ============================================================================
``per_label.csv``      label, support, predicted, tp, fp, fn, precision, recall, f1,
                       average_precision, threshold — one row per label
``label_counts.csv``   labels_per_example k, examples with k true labels, with k predicted labels
``f1_per_label.png``   F1 bar per label with precision/recall markers and the macro-F1 line
``pr_curves.png``      precision-recall curve per label, a dot at each chosen threshold
``label_counts.png``   histogram of true vs predicted labels per example
``predictions.npz``    ``probabilities`` [N, L] float32, ``targets`` [N, L] uint8, ``thresholds``
                       [L], ``label_names`` [L] (when ``save_predictions``)
=====================  ============================================================================

Above ``max_labels_plotted`` labels (50 by default) one bar per label would be unreadable, so
``f1_per_label.png`` gives way to a summary (the CSVs stay complete):

=========================  ========================================================================
``frequency_buckets.csv``  labels grouped by test support (0, 1, 2-4, 5-9, 10-19, 20-49, ...):
                           labels, positives, mean F1 / precision / recall / AP, micro F1
``f1_by_frequency.png``    those buckets as bars
``f1_top_bottom.png``      the ``top_bottom`` best and worst labels by F1 among those with at least
                           ``min_support_ranked`` test positives
=========================  ========================================================================

and the pooled precision-recall curve is binned (1,000 probability bins) once the test scores
exceed ``2^24`` values, instead of sorting them all.

It then hands the same report to the loggers present: W&B gets a ``wandb.Table`` (at most
``max_table_rows`` labels, the most frequent; plus the bucket table when there is one), a bar
chart, a precision-recall line chart and the images; TensorBoard the figures; MLflow the files as
run artifacts. CSV-only runs have the files.

Definitions, per label ``l`` over the N test examples: the decision is ``d = sigmoid(z) >= t_l``
with ``t_l`` the module's ``thresholds`` buffer (0.5 unless a threshold-tuning callback changed it),
computed exactly as the test metrics compute it; ``tp = sum(d * y)``, ``fp = sum(d * (1 - y))``,
``fn = sum((1 - d) * y)``, ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``,
``f1 = 2 tp / (2 tp + fp + fn)``, each 0 when its denominator is 0 (torchmetrics'
``zero_division``),
so the mean of the ``f1`` column is ``test/f1_macro``. ``average_precision`` is exact
(``average_precision_per_label``: scikit-learn's and torchmetrics' definition, ties included),
whose mean is ``test/map_macro`` with ``ap_thresholds: null``.

Under DDP, Lightning's ``DistributedSampler`` pads the test set by repeating examples so that every
process gets the same number; the gathered rows are put back in dataset order and the repeats
dropped, so the report counts each test example once (the logged ``test/*`` metrics, synchronised
by torchmetrics, include the repeats and can differ very slightly).
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger
from torch import Tensor
from torch.utils.data import DistributedSampler

from sigmoidf1.distributed import gather_rows
from sigmoidf1.metrics import Counts, average_precision_per_label, confusion_counts
from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)

PER_LABEL_FILE = "per_label.csv"
LABEL_COUNTS_FILE = "label_counts.csv"
PREDICTIONS_FILE = "predictions.npz"
BUCKETS_FILE = "frequency_buckets.csv"
FIGURE_FILES = {
    "f1_per_label": "f1_per_label.png",
    "pr_curves": "pr_curves.png",
    "label_counts": "label_counts.png",
}
# above max_labels_plotted labels, instead of f1_per_label.png
LARGE_FIGURE_FILES = {
    "f1_by_frequency": "f1_by_frequency.png",
    "f1_top_bottom": "f1_top_bottom.png",
    "pr_curves": "pr_curves.png",
    "label_counts": "label_counts.png",
}
BUCKET_COLUMNS = (
    "support_from",
    "support_to",
    "labels",
    "positives",
    "f1_mean",
    "precision_mean",
    "recall_mean",
    "average_precision_mean",
    "f1_micro",
)
POOLED_EXACT_LIMIT = 2**24  # test scores above which the pooled PR curve is binned
POOLED_BINS = 1000
PER_LABEL_COLUMNS = (
    "label",
    "support",
    "predicted",
    "tp",
    "fp",
    "fn",
    "precision",
    "recall",
    "f1",
    "average_precision",
    "threshold",
)


@dataclass
class PerLabelStats:
    """Per-label counts and scores; every array has shape ``[L]``."""

    label_names: list[str]
    support: np.ndarray
    predicted: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    average_precision: np.ndarray
    threshold: np.ndarray

    def rows(self) -> list[list[Any]]:
        """One ``PER_LABEL_COLUMNS`` row per label (ints as ints, scores as floats)."""
        return [
            [
                name,
                int(self.support[i]),
                int(self.predicted[i]),
                int(self.tp[i]),
                int(self.fp[i]),
                int(self.fn[i]),
                float(self.precision[i]),
                float(self.recall[i]),
                float(self.f1[i]),
                float(self.average_precision[i]),
                float(self.threshold[i]),
            ]
            for i, name in enumerate(self.label_names)
        ]


def per_label_stats(
    probabilities: Tensor,
    decisions: Tensor,
    targets: Tensor,
    thresholds: Tensor,
    label_names: Sequence[str],
) -> PerLabelStats:
    """Per-label statistics (see the module docstring for the definitions).

    Args:
        probabilities: ``sigmoid(logits)``, ``[N, L]`` (used for average precision only).
        decisions: predicted labels, bool ``[N, L]``.
        targets: ``[N, L]`` in {0, 1}.
        thresholds: ``[L]``, reported as the chosen threshold.
        label_names: L names.
    """
    num_labels = len(label_names)
    if probabilities.ndim != 2 or probabilities.shape[1] != num_labels:
        raise ValueError(
            f"expected probabilities of shape [N, {num_labels}], got {tuple(probabilities.shape)}"
        )
    counts = confusion_counts(decisions.bool(), targets.bool())
    ap = average_precision_per_label(probabilities.float(), targets.bool())
    return PerLabelStats(
        label_names=list(label_names),
        support=counts.support.long().numpy(),
        predicted=counts.predicted.long().numpy(),
        tp=counts.tp.long().numpy(),
        fp=counts.fp.long().numpy(),
        fn=counts.fn.long().numpy(),
        precision=counts.precision.numpy(),
        recall=counts.recall.numpy(),
        f1=counts.f1.numpy(),
        average_precision=ap.numpy(),
        threshold=thresholds.double().cpu().numpy(),
    )


def label_count_table(
    decisions: Tensor, targets: Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(k, examples with k true labels, examples with k predicted labels)`` for k = 0..max."""
    true_counts = targets.bool().sum(1)
    predicted_counts = decisions.bool().sum(1)
    top = int(max(true_counts.max(), predicted_counts.max())) if targets.shape[0] else 0
    k = np.arange(top + 1)
    return (
        k,
        torch.bincount(true_counts, minlength=top + 1).numpy(),
        torch.bincount(predicted_counts, minlength=top + 1).numpy(),
    )


def support_edges(max_support: int) -> list[int]:
    """Bucket edges ``0, 1, 2, 5, 10, 20, 50, ...`` up to past ``max_support``: bucket ``i`` holds
    the labels with ``edges[i] <= support < edges[i + 1]``."""
    edges, scale = [0, 1, 2, 5], 10
    while edges[-1] <= max_support:
        edges += [scale, 2 * scale, 5 * scale]
        scale *= 10
    while len(edges) > 2 and edges[-2] > max_support:
        edges.pop()
    return edges


def frequency_buckets(stats: PerLabelStats) -> list[list[Any]]:
    """``BUCKET_COLUMNS`` rows: the labels grouped by test support (``support_edges``), with the
    mean of their per-label scores and their pooled (micro) F1. Empty buckets are left out."""
    edges = support_edges(int(stats.support.max()) if len(stats.support) else 0)
    rows = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (stats.support >= low) & (stats.support < high)
        if not inside.any():
            continue
        pooled = Counts(
            *(
                torch.as_tensor(c[inside], dtype=torch.float64)
                for c in (stats.tp, stats.fp, stats.fn)
            )
        ).pooled()
        rows.append(
            [
                low,
                high - 1,
                int(inside.sum()),
                int(stats.support[inside].sum()),
                float(stats.f1[inside].mean()),
                float(stats.precision[inside].mean()),
                float(stats.recall[inside].mean()),
                float(stats.average_precision[inside].mean()),
                float(pooled.f1),
            ]
        )
    return rows


def top_and_bottom_labels(stats: PerLabelStats, count: int, min_support: int) -> np.ndarray:
    """Indices of the ``count`` best then the ``count`` worst labels by F1 (ties: the more
    frequent first) among those with at least ``min_support`` test positives."""
    eligible = np.flatnonzero(stats.support >= min_support)
    ranked = eligible[np.lexsort((-stats.support[eligible], -stats.f1[eligible]))]
    if len(ranked) <= 2 * count:
        return ranked
    worst = eligible[np.lexsort((-stats.support[eligible], stats.f1[eligible]))][:count]
    return np.concatenate([ranked[:count], worst[::-1]])


def pooled_pr_curve(
    probabilities: Tensor, targets: Tensor, bins: int = POOLED_BINS, chunk: int = 2**22
) -> tuple[np.ndarray, np.ndarray, float]:
    """``(recall, precision, AP)`` of all scores pooled, binned at thresholds ``j / bins``.

    A score ``p`` is predicted positive at threshold ``j / bins`` when ``floor(p * bins) >= j``;
    histograms of all scores and of the positives' scores, accumulated over chunks of rows, give
    every threshold's counts by reversed cumulative sums: O(N L) time, O(bins) extra memory.
    ``AP = sum_j (R_j - R_(j+1)) P_j`` over the bins.
    """
    every = torch.zeros(bins, dtype=torch.float64)
    positive = torch.zeros(bins, dtype=torch.float64)
    rows = max(1, chunk // max(probabilities.shape[1], 1))
    for start in range(0, probabilities.shape[0], rows):
        scores = probabilities[start : start + rows]
        index = (scores.double() * bins).floor().clamp(0, bins - 1).long()
        every += torch.bincount(index.flatten(), minlength=bins).double()
        positive += torch.bincount(index[targets[start : start + rows] > 0], minlength=bins)
    predicted = every.flip(0).cumsum(0).flip(0)  # scores >= j / bins
    true_positives = positive.flip(0).cumsum(0).flip(0)
    total = float(true_positives[0]) if len(true_positives) else 0.0
    precision = torch.where(predicted > 0, true_positives / predicted.clamp_min(1), 1.0)
    recall = true_positives / total if total else torch.zeros_like(true_positives)
    gained = recall - torch.cat([recall[1:], recall.new_zeros(1)])
    return recall.numpy(), precision.numpy(), float((gained * precision).sum())


def _dataset_size_if_interleaved(trainer: L.Trainer) -> int | None:
    loaders = trainer.test_dataloaders
    loader = loaders[0] if isinstance(loaders, Sequence) else loaders
    sampler = getattr(loader, "sampler", None)
    # Lightning's padded sampler and the unpadded subclass of it (data/samplers.py) both deal
    # positions r, r + W, ... to rank r
    if isinstance(sampler, DistributedSampler) and not sampler.shuffle and not sampler.drop_last:
        return len(sampler.dataset)
    return None


class PerLabelReport(L.Callback):
    """Write (and log) the per-label report of the first test dataloader; see the module docstring.

    Args:
        output_dir: where the files go (created on rank zero).
        save_predictions: also write ``predictions.npz`` (probabilities and targets, N x L).
        max_pr_curves: draw at most this many labels' curves (the most frequent ones) in
            ``pr_curves.png``; the pooled curve is always drawn.
        log_to_loggers: hand the report to the W&B / TensorBoard / MLflow loggers present.
        max_labels_plotted: above this many labels, the frequency-bucket summary and the top and
            bottom labels replace the one-bar-per-label chart.
        top_bottom: labels shown at each end of ``f1_top_bottom.png``.
        min_support_ranked: test positives a label needs to be ranked in ``f1_top_bottom.png``.
        max_table_rows: labels (the most frequent) in the W&B per-label table; the CSV has all.
    """

    def __init__(
        self,
        output_dir: str | Path,
        save_predictions: bool = True,
        max_pr_curves: int = 20,
        log_to_loggers: bool = True,
        max_labels_plotted: int = 50,
        top_bottom: int = 20,
        min_support_ranked: int = 5,
        max_table_rows: int = 1000,
    ) -> None:
        for name, value in (
            ("max_pr_curves", max_pr_curves),
            ("max_labels_plotted", max_labels_plotted),
            ("top_bottom", top_bottom),
            ("min_support_ranked", min_support_ranked),
            ("max_table_rows", max_table_rows),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.output_dir = Path(output_dir)
        self.save_predictions = save_predictions
        self.max_pr_curves = max_pr_curves
        self.log_to_loggers = log_to_loggers
        self.max_labels_plotted = max_labels_plotted
        self.top_bottom = top_bottom
        self.min_support_ranked = min_support_ranked
        self.max_table_rows = max_table_rows
        self._logits: list[Tensor] = []
        self._targets: list[Tensor] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._logits, self._targets = [], []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if dataloader_idx != 0:
            return
        if not isinstance(outputs, Mapping) or "logits" not in outputs:
            raise TypeError(
                f"{type(self).__name__} needs test_step to return {{'logits': Tensor[batch, "
                f"num_labels]}}; {type(pl_module).__name__}.test_step returned "
                f"{type(outputs).__name__}"
            )
        self._logits.append(outputs["logits"].detach().float())
        self._targets.append(batch[1].detach().float())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        label_names = list(getattr(pl_module, "label_names", None) or [])
        num_labels = len(label_names) or (self._logits[0].shape[1] if self._logits else 0)
        label_names = label_names or [f"label_{i}" for i in range(num_labels)]
        empty = torch.zeros((0, num_labels), device=pl_module.device)
        logits = torch.cat(self._logits) if self._logits else empty
        targets = torch.cat(self._targets) if self._targets else empty
        self._logits, self._targets = [], []
        dataset_size = _dataset_size_if_interleaved(trainer) if trainer.world_size > 1 else None
        logits = gather_rows(logits, dataset_size)  # every rank takes part
        targets = gather_rows(targets, dataset_size)
        if not trainer.is_global_zero:
            return
        if logits.shape[0] == 0:
            log.warning("Per-label report skipped: the test stage saw no examples")
            return
        thresholds = getattr(pl_module, "thresholds", None)
        if thresholds is None:
            thresholds = torch.full((num_labels,), 0.5, device=logits.device)
        if hasattr(pl_module, "predict_proba"):  # the module's own decision rule, as in its metrics
            decisions = pl_module.predict_proba(logits) >= 0.5
        else:
            decisions = torch.sigmoid(logits) >= thresholds
        self.write_and_log(
            trainer,
            torch.sigmoid(logits).cpu(),
            decisions.cpu(),
            targets.cpu(),
            thresholds.cpu(),
            label_names,
        )

    # --- rank zero ------------------------------------------------------------------------------
    def write_and_log(
        self,
        trainer: L.Trainer | None,
        probabilities: Tensor,
        decisions: Tensor,
        targets: Tensor,
        thresholds: Tensor,
        label_names: Sequence[str],
    ) -> dict[str, Path]:
        """Write the report files; log them when ``trainer`` has loggers. Returns the file paths."""
        stats = per_label_stats(probabilities, decisions, targets, thresholds, label_names)
        counts = label_count_table(decisions, targets)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        paths = {
            "per_label": self.output_dir / PER_LABEL_FILE,
            "label_counts_csv": self.output_dir / LABEL_COUNTS_FILE,
        }
        _write_csv(paths["per_label"], PER_LABEL_COLUMNS, stats.rows())
        _write_csv(
            paths["label_counts_csv"],
            ("labels_per_example", "examples_true", "examples_predicted"),
            [[int(k), int(t), int(p)] for k, t, p in zip(*counts, strict=True)],
        )
        if self.save_predictions:
            paths["predictions"] = self.output_dir / PREDICTIONS_FILE
            np.savez_compressed(
                paths["predictions"],
                probabilities=probabilities.numpy().astype(np.float32),
                targets=targets.numpy().astype(np.uint8),
                thresholds=thresholds.numpy().astype(np.float32),
                label_names=np.array(list(label_names)),
            )
        buckets = None
        if len(stats.label_names) > self.max_labels_plotted:
            buckets = frequency_buckets(stats)
            paths["buckets"] = self.output_dir / BUCKETS_FILE
            _write_csv(paths["buckets"], BUCKET_COLUMNS, buckets)
        curves = self._pr_curves(probabilities, targets, stats)
        figures = self._figures(stats, counts, curves, decisions, targets, buckets)
        for name, figure in figures.items():
            paths[name] = self.output_dir / {**FIGURE_FILES, **LARGE_FIGURE_FILES}[name]
            figure.savefig(paths[name], dpi=100)
        if trainer is not None and self.log_to_loggers:
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    _log_to_wandb(
                        logger,
                        stats,
                        counts,
                        curves,
                        paths,
                        trainer.global_step,
                        buckets,
                        self.max_table_rows,
                        list(figures),
                    )
                elif isinstance(logger, TensorBoardLogger):
                    for name, figure in figures.items():
                        logger.experiment.add_figure(
                            f"test/{name}", figure, trainer.global_step, close=False
                        )
                elif isinstance(logger, MLFlowLogger):
                    logger.experiment.log_artifacts(
                        logger.run_id, str(self.output_dir), artifact_path="report"
                    )
        log.info(f"Per-label report: {self.output_dir} (macro F1 {float(np.mean(stats.f1)):.4f})")
        return paths

    def _pr_curves(
        self, probabilities: Tensor, targets: Tensor, stats: PerLabelStats
    ) -> dict[str, Any]:
        """Precision-recall curves of the ``max_pr_curves`` most frequent labels (``precision``
        and ``recall``: label index -> array) and of all scores pooled (``pooled``)."""
        from torchmetrics.functional.classification import (
            binary_average_precision,
            binary_precision_recall_curve,
        )

        order = np.argsort(-stats.support, kind="stable")[: self.max_pr_curves]
        shown = [int(i) for i in order if stats.support[i] > 0]
        curves: dict[str, Any] = {"labels": shown, "precision": {}, "recall": {}}
        for i in shown:
            precision, recall, _ = binary_precision_recall_curve(
                probabilities[:, i], targets[:, i].int()
            )
            curves["precision"][i], curves["recall"][i] = precision.numpy(), recall.numpy()
        if probabilities.numel() > POOLED_EXACT_LIMIT:
            curves["pooled"] = pooled_pr_curve(probabilities, targets)
            return curves
        with warnings.catch_warnings():  # no positive at all: recall is undefined
            warnings.simplefilter("ignore", UserWarning)
            pooled_p, pooled_r, _ = binary_precision_recall_curve(
                probabilities.flatten(), targets.int().flatten()
            )
            pooled_ap = float(
                binary_average_precision(probabilities.flatten(), targets.int().flatten())
            )
        curves["pooled"] = (pooled_r.numpy(), pooled_p.numpy(), pooled_ap)
        return curves

    def _figures(
        self,
        stats: PerLabelStats,
        counts: tuple,
        curves: dict[str, Any],
        decisions: Tensor,
        targets: Tensor,
        buckets: list[list[Any]] | None,
    ) -> dict[str, Any]:
        from sigmoidf1.callbacks import plots

        n = targets.shape[0]
        card_mae = float((decisions.sum(1) - targets.sum(1)).abs().float().mean())
        shown = curves["labels"]
        bars = (stats.label_names, stats.f1, stats.precision, stats.recall, stats.support)
        if buckets is None:
            figures = {
                "f1_per_label": plots.f1_bar_chart(*bars, title=f"Per-label F1, {n} test examples")
            }
        else:
            ranked = top_and_bottom_labels(stats, self.top_bottom, self.min_support_ranked)
            figures = {
                "f1_by_frequency": plots.bucket_chart(
                    buckets,
                    title=f"F1 by label frequency: {len(stats.label_names):,} labels, {n:,} "
                    "test examples",
                ),
                "f1_top_bottom": plots.f1_bar_chart(
                    *bars,
                    rows=ranked,
                    title=f"Best and worst {self.top_bottom} labels by F1 (at least "
                    f"{self.min_support_ranked} test positives)",
                ),
            }
        return {
            **figures,
            "pr_curves": plots.pr_curves(
                [
                    (
                        stats.label_names[i],
                        curves["recall"][i],
                        curves["precision"][i],
                        float(stats.average_precision[i]),
                    )
                    for i in shown
                ],
                [(float(stats.recall[i]), float(stats.precision[i])) for i in shown],
                micro=curves["pooled"],
                title="Precision-recall (test)"
                if len(shown) == len(stats.label_names)
                else f"Precision-recall (test, {len(shown)} most frequent labels)",
            ),
            "label_counts": plots.label_count_histogram(
                *counts,
                title=f"Labels per example (test): mean |predicted - true| = {card_mae:.3f}",
            ),
        }


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])


def _downsample(x: np.ndarray, y: np.ndarray, points: int = 200) -> tuple[list[float], list[float]]:
    if len(x) > points:
        keep = np.unique(np.linspace(0, len(x) - 1, points).round().astype(int))
        x, y = x[keep], y[keep]
    return [float(v) for v in x], [float(v) for v in y]


def _log_to_wandb(
    logger: WandbLogger,
    stats: PerLabelStats,
    counts: tuple,
    curves: dict[str, Any],
    paths: Mapping[str, Path],
    step: int,
    buckets: list[list[Any]] | None = None,
    max_table_rows: int = 1000,
    figures: Sequence[str] = tuple(FIGURE_FILES),
) -> None:
    """Table (the ``max_table_rows`` most frequent labels), native charts (interactive in the
    UI) and the PNGs, under ``test/...``."""
    import wandb

    rows = stats.rows()
    if len(rows) > max_table_rows:
        keep = np.sort(np.argsort(-stats.support, kind="stable")[:max_table_rows])
        rows = [rows[i] for i in keep]
    table = wandb.Table(columns=list(PER_LABEL_COLUMNS), data=rows)
    count_table = wandb.Table(
        columns=["labels_per_example", "examples_true", "examples_predicted"],
        data=[[int(k), int(t), int(p)] for k, t, p in zip(*counts, strict=True)],
    )
    xs, ys, keys = [], [], []
    for i in curves["labels"]:
        x, y = _downsample(curves["recall"][i], curves["precision"][i])
        xs.append(x)
        ys.append(y)
        keys.append(stats.label_names[i])
    payload: dict[str, Any] = {
        "test/per_label": table,
        "test/label_counts": count_table,
        **{f"test/plots/{name}": wandb.Image(str(paths[name])) for name in figures},
    }
    if buckets is None:
        payload["test/per_label_f1_chart"] = wandb.plot.bar(
            table, "label", "f1", title="Per-label F1 (test)"
        )
    else:
        bucket_table = wandb.Table(
            columns=["bucket", *BUCKET_COLUMNS], data=[[f"{r[0]}-{r[1]}", *r] for r in buckets]
        )
        payload["test/frequency_buckets"] = bucket_table
        payload["test/f1_by_frequency_chart"] = wandb.plot.bar(
            bucket_table, "bucket", "f1_mean", title="Mean F1 by test support (test)"
        )
    if keys:
        payload["test/pr_curves_chart"] = wandb.plot.line_series(
            xs=xs, ys=ys, keys=keys, title="Precision-recall (test)", xname="recall"
        )
    logger.log_metrics(payload, step=step)
