"""``MultilabelClassifier``: any backbone + a linear head, trained with any registered loss.

The model emits logits ``[batch, num_labels]``; the loss takes logits. Probabilities appear only in
metrics, thresholding and prediction. The backbone and head are built in ``setup()`` from the
DataModule (``backbone_inputs``, ``label_names``), so configs never state ``num_labels``; ``build()``
does the same by hand (evaluation, prediction, tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from sigmoidf1.backbones import build_backbone
from sigmoidf1.metrics import ChunkedUpdates, build_metrics, shift_to_threshold

CHECKPOINT_KEY = "sigmoidf1"
STAGES = ("train", "val", "test")


class MultilabelClassifier(L.LightningModule):
    """Backbone + linear head for multilabel classification.

    Args:
        backbone: an ``nn.Module`` with ``out_features``, or a factory (Hydra ``_partial_``) that
            ``build_backbone`` completes with the DataModule's ``backbone_inputs``.
        loss: ``loss(logits, targets) -> scalar`` (see ``sigmoidf1.losses``).
        optimizer: factory ``optimizer(params) -> torch.optim.Optimizer`` (Hydra ``_partial_``).
        scheduler: optional factory ``scheduler(optimizer) -> LRScheduler``.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        threshold: initial decision threshold for every label (tuned per label by a callback).
        ap_thresholds: ``None`` for exact average precision, an int for binned (constant memory).
        run_config: the resolved run config, stored in checkpoints so that eval/predict can rebuild.
    """

    def __init__(
        self,
        backbone: nn.Module | Callable[..., nn.Module],
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "epoch",
        threshold: float = 0.5,
        ap_thresholds: int | None = None,
        run_config: dict | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        self.backbone_factory = backbone
        self.loss_fn = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.initial_threshold = threshold
        self.ap_thresholds = ap_thresholds
        self.run_config = run_config or {}
        self.label_names: list[str] = []
        self.backbone_inputs: dict[str, Any] = {}
        self.backbone: nn.Module | None = None
        self.head: nn.Linear | None = None

    # --- construction ---------------------------------------------------------------------------
    @property
    def is_built(self) -> bool:
        return self.head is not None

    def build(self, backbone_inputs: dict[str, Any], label_names: Sequence[str]) -> None:
        """Create backbone, head (``out_features -> len(label_names)``), thresholds and metrics."""
        if not label_names:
            raise ValueError("the dataset has no labels: cannot build a multilabel classifier")
        self.label_names = list(label_names)
        self.backbone_inputs = dict(backbone_inputs)
        factory = self.backbone_factory
        self.backbone = factory if isinstance(factory, nn.Module) else build_backbone(factory, backbone_inputs)
        self.head = nn.Linear(self.backbone.out_features, len(self.label_names))
        self.register_buffer(
            "thresholds", torch.full((len(self.label_names),), float(self.initial_threshold))
        )
        self._metric_updates = {}
        for stage in STAGES:
            metrics = build_metrics(len(self.label_names), f"{stage}/", self.ap_thresholds)
            setattr(self, f"{stage}_metrics", metrics)
            self._metric_updates[stage] = ChunkedUpdates(metrics)
            # epoch loss = mean over examples, summed over ranks (Lightning's own weighted mean
            # truncates the averaged batch size to an integer when ranks' batches differ in size)
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))

    def setup(self, stage: str) -> None:
        if not self.is_built:
            datamodule = self.trainer.datamodule
            self.build(datamodule.backbone_inputs, datamodule.label_names)

    # --- forward and steps ----------------------------------------------------------------------
    def forward(self, inputs: Tensor | dict[str, Tensor]) -> Tensor:
        """``inputs -> logits [batch, num_labels]``."""
        return self.head(self.backbone(inputs))

    def predict_proba(self, logits: Tensor) -> Tensor:
        """Threshold-shifted probabilities: ``>= 0.5`` exactly where ``sigmoid(logits) >= thresholds``."""
        return shift_to_threshold(logits, self.thresholds)

    def _step(self, batch: tuple[Any, Tensor], stage: str) -> tuple[Tensor, Tensor]:
        """Loss and metrics of one batch; returns ``(loss, logits)``."""
        inputs, targets = batch
        logits = self(inputs)
        loss = self.loss_fn(logits, targets)
        if stage == "train" and not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at global step {self.global_step}: "
                "stopping before a NaN checkpoint is written (lower the learning rate, check the inputs)"
            )
        batch_size = targets.shape[0]
        getattr(self, f"{stage}_loss").update(loss.detach(), batch_size)
        if stage == "train" and self._is_logging_step():
            self.log("train/loss_step", loss.detach(), prog_bar=True, batch_size=batch_size)
        self._metric_updates[stage].add(self.predict_proba(logits.detach()), targets.int())
        return loss, logits

    # Speed on small models (benchmarks/throughput.py): a Lightning `log` call or a metric update
    # per step costs more than a small model's training step. So the loss mean and the metrics
    # are logged once per epoch (as Metric objects: Lightning computes, syncs and resets them),
    # the metrics are updated in chunks of batches (same values), and the step loss is logged
    # only on the steps that loggers record.
    def _is_logging_step(self) -> bool:
        every = self.trainer.log_every_n_steps
        return bool(self.trainer.fast_dev_run) or bool(every and (self.global_step + 1) % every == 0)

    def _log_epoch(self, stage: str) -> None:
        self._metric_updates[stage].flush()
        loss_name = "train/loss_epoch" if stage == "train" else f"{stage}/loss"
        self.log(loss_name, getattr(self, f"{stage}_loss"), prog_bar=True)
        self.log_dict(getattr(self, f"{stage}_metrics"))

    def on_train_epoch_start(self) -> None:
        self._metric_updates["train"].clear()

    def on_validation_epoch_start(self) -> None:
        self._metric_updates["val"].clear()

    def on_test_epoch_start(self) -> None:
        self._metric_updates["test"].clear()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def training_step(self, batch: tuple[Any, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")[0]

    # Evaluation steps return {"logits": [batch, num_labels]} for callbacks (`on_*_batch_end`):
    # threshold tuning, the per-label report.
    def validation_step(self, batch: tuple[Any, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return {"logits": self._step(batch, "val")[1].detach()}

    def test_step(self, batch: tuple[Any, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return {"logits": self._step(batch, "test")[1].detach()}

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        return torch.sigmoid(self(inputs).float())

    # --- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.scheduler_interval,
                "monitor": "val/f1_macro",
            },
        }

    # --- checkpoints ----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store what rebuilding needs, as plain data (loadable with ``weights_only=True``).

        Raises ``FloatingPointError`` instead of writing a checkpoint with non-finite weights.
        """
        bad = [name for name, p in self.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise FloatingPointError(
                f"non-finite weights ({bad[0]}) at global step {self.global_step}: training "
                "diverged; not writing a checkpoint (lower the learning rate, check the inputs)"
            )
        checkpoint[CHECKPOINT_KEY] = {
            "label_names": list(self.label_names),
            "backbone_inputs": _plain(self.backbone_inputs),
            "config": self.run_config,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not self.is_built:
            stored = checkpoint.get(CHECKPOINT_KEY)
            if stored is None:
                raise ValueError("checkpoint was not written by sigmoidf1 (no 'sigmoidf1' entry)")
            self.build(stored["backbone_inputs"], stored["label_names"])


def _plain(value: Any) -> Any:
    """Reduce numpy/torch scalars in nested containers to Python values for safe checkpoints."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
