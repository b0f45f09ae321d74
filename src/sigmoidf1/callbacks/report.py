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

It then hands the same report to the loggers present: W&B gets a ``wandb.Table``, a bar chart, a
precision-recall line chart and the three images; TensorBoard the three figures; MLflow the files as
run artifacts. CSV-only runs have the files.

Definitions, per label ``l`` over the N test examples: the decision is ``d = sigmoid(z) >= t_l``
with ``t_l`` the module's ``thresholds`` buffer (0.5 unless a threshold-tuning callback changed it),
computed exactly as the test metrics compute it; ``tp = sum(d * y)``, ``fp = sum(d * (1 - y))``,
``fn = sum((1 - d) * y)``, ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``,
``f1 = 2 tp / (2 tp + fp + fn)``, each 0 when its denominator is 0 (torchmetrics'
``zero_division``),
so the mean of the ``f1`` column is ``test/f1_macro``. ``average_precision`` is torchmetrics'
(exact), whose mean is ``test/map_macro`` with ``ap_thresholds: null``.

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

from sigmoidf1.utils.distributed import gather_rows
from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)

PER_LABEL_FILE = "per_label.csv"
LABEL_COUNTS_FILE = "label_counts.csv"
PREDICTIONS_FILE = "predictions.npz"
FIGURE_FILES = {
    "f1_per_label": "f1_per_label.png",
    "pr_curves": "pr_curves.png",
    "label_counts": "label_counts.png",
}
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


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator`` with 0 where the denominator is 0."""
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1), 0.0)


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
    from torchmetrics.functional.classification import multilabel_average_precision

    num_labels = len(label_names)
    if probabilities.ndim != 2 or probabilities.shape[1] != num_labels:
        raise ValueError(
            f"expected probabilities of shape [N, {num_labels}], got {tuple(probabilities.shape)}"
        )
    truth = targets.bool()
    d = decisions.bool()
    tp = (d & truth).sum(0).double()
    fp = (d & ~truth).sum(0).double()
    fn = (~d & truth).sum(0).double()
    if probabilities.shape[0]:
        # a label without positives warns "no positive samples"; its AP is reported as 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ap = multilabel_average_precision(
                probabilities.float(), targets.int(), num_labels, average=None, thresholds=None
            )
        ap = torch.nan_to_num(ap.double(), nan=0.0)
    else:
        ap = torch.zeros(num_labels, dtype=torch.float64)
    return PerLabelStats(
        label_names=list(label_names),
        support=truth.sum(0).numpy(),
        predicted=d.sum(0).numpy(),
        tp=tp.long().numpy(),
        fp=fp.long().numpy(),
        fn=fn.long().numpy(),
        precision=_ratio(tp, tp + fp).numpy(),
        recall=_ratio(tp, tp + fn).numpy(),
        f1=_ratio(2 * tp, 2 * tp + fp + fn).numpy(),
        # torchmetrics returns -0.0 for labels without positives
        average_precision=ap.abs().numpy(),
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
    """

    def __init__(
        self,
        output_dir: str | Path,
        save_predictions: bool = True,
        max_pr_curves: int = 20,
        log_to_loggers: bool = True,
    ) -> None:
        if max_pr_curves < 0:
            raise ValueError(f"max_pr_curves must be >= 0, got {max_pr_curves}")
        self.output_dir = Path(output_dir)
        self.save_predictions = save_predictions
        self.max_pr_curves = max_pr_curves
        self.log_to_loggers = log_to_loggers
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
        curves = self._pr_curves(probabilities, targets, decisions, stats)
        figures = self._figures(stats, counts, curves, decisions, targets)
        for name, figure in figures.items():
            paths[name] = self.output_dir / FIGURE_FILES[name]
            figure.savefig(paths[name], dpi=100)
        if trainer is not None and self.log_to_loggers:
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    _log_to_wandb(logger, stats, counts, curves, paths, trainer.global_step)
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
        self, probabilities: Tensor, targets: Tensor, decisions: Tensor, stats: PerLabelStats
    ) -> dict[str, Any]:
        """Per-label and pooled precision-recall curves (``recall``, ``precision`` arrays)."""
        from torchmetrics.functional.classification import (
            binary_average_precision,
            binary_precision_recall_curve,
            multilabel_precision_recall_curve,
        )

        with warnings.catch_warnings():  # labels without positives: recall is undefined
            warnings.simplefilter("ignore", UserWarning)
            precision, recall, _ = multilabel_precision_recall_curve(
                probabilities, targets.int(), len(stats.label_names), thresholds=None
            )
            pooled_p, pooled_r, _ = binary_precision_recall_curve(
                probabilities.flatten(), targets.int().flatten()
            )
            pooled_ap = float(
                binary_average_precision(probabilities.flatten(), targets.int().flatten())
            )
        order = np.argsort(-stats.support, kind="stable")[: self.max_pr_curves]
        return {
            "labels": [int(i) for i in order if stats.support[i] > 0],
            "precision": [p.numpy() for p in precision],
            "recall": [r.numpy() for r in recall],
            "pooled": (pooled_r.numpy(), pooled_p.numpy(), pooled_ap),
        }

    @staticmethod
    def _figures(
        stats: PerLabelStats,
        counts: tuple,
        curves: dict[str, Any],
        decisions: Tensor,
        targets: Tensor,
    ) -> dict[str, Any]:
        from sigmoidf1.callbacks import plots

        n = targets.shape[0]
        card_mae = float((decisions.sum(1) - targets.sum(1)).abs().float().mean())
        shown = curves["labels"]
        return {
            "f1_per_label": plots.f1_bar_chart(
                stats.label_names,
                stats.f1,
                stats.precision,
                stats.recall,
                stats.support,
                title=f"Per-label F1, {n} test examples",
            ),
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
) -> None:
    """Table, native charts (interactive in the UI) and the PNGs, under ``test/...``."""
    import wandb

    table = wandb.Table(columns=list(PER_LABEL_COLUMNS), data=stats.rows())
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
        "test/per_label_f1_chart": wandb.plot.bar(
            table, "label", "f1", title="Per-label F1 (test)"
        ),
        **{f"test/plots/{name}": wandb.Image(str(paths[name])) for name in FIGURE_FILES},
    }
    if keys:
        payload["test/pr_curves_chart"] = wandb.plot.line_series(
            xs=xs, ys=ys, keys=keys, title="Precision-recall (test)", xname="recall"
        )
    logger.log_metrics(payload, step=step)
