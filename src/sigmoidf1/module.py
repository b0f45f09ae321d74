"""``MultilabelClassifier``: any backbone + a linear head, trained with any registered loss.

The model emits logits ``[batch, num_labels]``; the loss takes logits. Probabilities appear only in
metrics, thresholding and prediction.

Construction is eager and Lightning's own: the module is given the backbone, loss and optimizer
*configs* (plain dicts with ``_target_``, as Hydra writes them), the label names and the facts a
backbone needs from the data (``backbone_inputs``: ``in_features``, ``vocab_size`` ...), and calls
``save_hyperparameters``. Everything it stores is plain data, so a checkpoint alone rebuilds it::

    model = MultilabelClassifier.load_from_checkpoint("logs/train/runs/<run>/checkpoints/last.ckpt")
    logits = model(inputs)          # [batch, num_labels]

A checkpoint is data: ``load_from_checkpoint`` checks the targets of the configs the file stores
before instantiating any (``trusted_targets=[...]`` for a model built from your own classes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import Tensor, nn
from torchmetrics import MeanMetric

from sigmoidf1.backbones import build_backbone
from sigmoidf1.metrics import (
    ChunkedUpdates,
    build_metrics,
    build_train_metrics,
    shift_to_threshold,
)
from sigmoidf1.utils.errors import config_section

STAGES = ("train", "val", "test")
DEFAULT_LOSS = {"_target_": "sigmoidf1.losses.get_loss", "name": "sigmoid_f1"}
DEFAULT_OPTIMIZER = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3}


class MultilabelClassifier(L.LightningModule):
    """Backbone + linear head ``out_features -> len(label_names)`` for multilabel classification.

    Args:
        backbone: config of a backbone factory (``_target_`` + ``_partial_: true`` + options); it is
            completed with the entries of ``backbone_inputs`` it accepts (``build_backbone``).
        label_names: one name per output; the head has ``len(label_names)`` outputs.
        backbone_inputs: facts of the data a backbone may need (``in_features``, ``vocab_size``,
            ``in_channels`` ...), from the DataModule.
        loss: config of a loss (``_target_: sigmoidf1.losses.get_loss``, ``name``, parameters);
            ``loss(logits, targets) -> scalar``.
        optimizer: config of ``optimizer(params)`` (``_partial_: true``).
        scheduler: optional config of ``scheduler(optimizer)`` (``_partial_: true``).
        scheduler_interval: step the scheduler every ``"epoch"`` or every ``"step"``.
        monitor: the metric a plateau scheduler follows (the run's ``optimized_metric``).
        threshold: initial decision threshold of every label (tuned per label by a callback).
        ap_thresholds: ``None`` for exact average precision, an int for binned (constant memory).
        metrics: options of ``build_metrics`` (``large_labels``, ``top_k``, ``propensity_a``,
            ``propensity_b``): above ``large_labels`` labels, the large-label metric set; and
            ``train`` (default true): the thresholded metrics on the training batches
            (``build_train_metrics``: no ``map_macro``); ``false``: none, only the loss.
        train_label_counts, train_size: training examples per label and in all (from the
            DataModule), for the propensity-scored ``psp_at_k`` of the large-label set.
        compile: ``torch.compile`` the backbone (in place: parameter names are unchanged).
        run_config: the run's resolved config (secrets masked), kept in the checkpoint so that
            ``sigmoidf1-eval`` and ``sigmoidf1-predict`` rebuild the data preprocessing from it.

    Config arguments may be ``DictConfig`` or ``dict``; they are stored as plain containers, so
    checkpoints load with ``torch.load(weights_only=True)``.
    """

    def __init__(
        self,
        backbone: Mapping[str, Any],
        label_names: Sequence[str],
        backbone_inputs: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        scheduler_interval: str = "epoch",
        monitor: str = "val/f1_macro",
        threshold: float = 0.5,
        ap_thresholds: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        train_label_counts: Sequence[int] | None = None,
        train_size: int | None = None,
        compile: bool = False,
        run_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not label_names:
            raise ValueError("the dataset has no labels: cannot build a multilabel classifier")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(
                f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}"
            )
        # plain containers before Lightning compares every argument with the hyperparameters:
        # comparing a DictConfig with a dict wraps the dict in OmegaConf nodes (minutes for the
        # 17k label names of data=wordnet)
        backbone, loss, optimizer, scheduler, metrics = map(
            _plain, (backbone, loss, optimizer, scheduler, metrics)
        )
        self.save_hyperparameters(
            {
                "backbone": _plain(backbone),
                "label_names": [str(name) for name in label_names],
                "backbone_inputs": _plain(backbone_inputs or {}),
                "loss": _plain(loss or DEFAULT_LOSS),
                "optimizer": _plain(optimizer or DEFAULT_OPTIMIZER),
                "scheduler": _plain(scheduler),
                "scheduler_interval": scheduler_interval,
                "monitor": monitor,
                "threshold": float(threshold),
                "ap_thresholds": ap_thresholds,
                "metrics": _plain(metrics or {}),
                "train_label_counts": _plain(train_label_counts),
                "train_size": train_size,
                "compile": bool(compile),
                "run_config": _plain(run_config or {}),
            },
            logger=False,  # the pipeline logs the whole run config instead
        )
        hp = self.hparams
        self.label_names = hp.label_names
        self.backbone = build_backbone(
            config_section("model.backbone", hp.backbone), hp.backbone_inputs
        )
        if hp.compile:
            self.backbone.compile()
        self.head = nn.Linear(self.backbone.out_features, len(self.label_names))
        self.loss_fn = config_section("loss", hp.loss)
        num_labels = len(self.label_names)
        self.register_buffer("thresholds", torch.full((num_labels,), hp.threshold))
        self._metric_updates, self._loss_updates = {}, {}
        metric_options = dict(hp.metrics)
        # off for large label spaces: on 65k x 17k training scores per epoch the metrics cost
        # about a fifth of each step; the loss is still logged
        self.train_metrics_on = bool(metric_options.pop("train", True))
        for stage in STAGES:  # attributes `train_metrics`, `train_loss`, `val_metrics` ...
            if stage == "train":  # the thresholded metrics only (no map_macro): see there
                metrics = build_train_metrics(num_labels)
            else:
                metrics = build_metrics(
                    num_labels,
                    f"{stage}/",
                    ap_thresholds,
                    train_label_counts=hp.train_label_counts,
                    train_size=hp.train_size,
                    **metric_options,
                )
            setattr(self, f"{stage}_metrics", metrics)
            self._metric_updates[stage] = ChunkedUpdates(metrics)
            # epoch loss = mean over examples, summed over ranks (Lightning's own weighted mean
            # truncates the averaged batch size to an integer when ranks' batches differ in size);
            # fed with (batch loss, batch size) pairs in chunks, like the metrics. The NaN strategy
            # "replace NaN by NaN" keeps a diverged epoch visible; "disable" would drop the batch
            # sizes (torchmetrics #3434: it replaces the weights by ones)
            loss_mean = MeanMetric(nan_strategy=float("nan"))
            setattr(self, f"{stage}_loss", loss_mean)
            self._loss_updates[stage] = ChunkedUpdates(loss_mean)

    # --- forward and steps ----------------------------------------------------------------------
    def forward(self, inputs: Tensor | dict[str, Tensor]) -> Tensor:
        """``inputs -> logits [batch, num_labels]``."""
        return self.head(self.backbone(inputs))

    def predict_proba(self, logits: Tensor) -> Tensor:
        """Threshold-shifted probabilities: ``>= 0.5`` exactly where ``sigmoid(logits) >=
        thresholds``."""
        return shift_to_threshold(logits, self.thresholds)

    def _step(self, batch: tuple[Any, Tensor], stage: str) -> tuple[Tensor, Tensor]:
        """Loss and metrics of one batch; returns ``(loss, logits)``. No host-device sync."""
        inputs, targets = batch
        logits = self(inputs)
        loss = self.loss_fn(logits, targets)
        batch_size = targets.shape[0]
        self._loss_updates[stage].add(loss.detach().reshape(1), loss.new_full((1,), batch_size))
        if stage == "train" and self._is_logging_step():
            self._stop_if_not_finite(loss)
            self.log("train/loss_step", loss.detach(), prog_bar=True, batch_size=batch_size)
        if stage != "train" or self.train_metrics_on:
            self._metric_updates[stage].add(self.predict_proba(logits.detach()), targets.int())
        return loss, logits

    # Speed: a Lightning `log` call or a metric update per step costs more than a small model's
    # training step, and reading a tensor's value on the host waits for the GPU. So the loss mean
    # and the metrics are logged once per epoch (as Metric objects: Lightning computes, syncs and
    # resets them), metrics and the loss mean are updated in chunks of batches (same values), and
    # the step loss is logged and checked only on the steps that loggers record.
    def _is_logging_step(self) -> bool:
        every = self.trainer.log_every_n_steps
        return bool(self.trainer.fast_dev_run) or bool(
            every and (self.global_step + 1) % every == 0
        )

    def _stop_if_not_finite(self, loss: Tensor) -> None:
        """Raise on every process when the loss is not finite on any (no rank waits forever)."""
        bad = not bool(torch.isfinite(loss.detach()))
        if self.trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise FloatingPointError(
                f"non-finite training loss at global step {self.global_step} on at least one "
                "process: stopping before a NaN checkpoint is written (lower the learning rate, "
                "check the inputs)"
            )

    def _log_epoch(self, stage: str) -> None:
        self._metric_updates[stage].flush()
        self._loss_updates[stage].flush()
        loss_name = "train/loss_epoch" if stage == "train" else f"{stage}/loss"
        self.log(loss_name, getattr(self, f"{stage}_loss"), prog_bar=True)
        if stage != "train" or self.train_metrics_on:
            self.log_dict(getattr(self, f"{stage}_metrics"))

    def on_train_epoch_start(self) -> None:
        self._metric_updates["train"].clear()
        self._loss_updates["train"].clear()

    def on_validation_epoch_start(self) -> None:
        self._metric_updates["val"].clear()
        self._loss_updates["val"].clear()

    def on_test_epoch_start(self) -> None:
        self._metric_updates["test"].clear()
        self._loss_updates["test"].clear()

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

    # --- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        if self.hparams.scheduler is None:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.hparams.scheduler_interval,
                "monitor": self.hparams.monitor,
            },
        }

    # --- checkpoints ----------------------------------------------------------------------------
    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path,
        map_location: str | torch.device | None = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        *,
        trusted_targets: Sequence[str] = (),
        **kwargs: Any,
    ) -> MultilabelClassifier:
        """The model of a checkpoint file, rebuilt from the file alone, as a checkpoint is data.

        Lightning's method, made safe: the file is read with ``torch.load(weights_only=True)``
        and every target in the configs it stores is checked before any is imported or called
        (``sigmoidf1.checkpoints.read_checkpoint``): sigmoidf1's own data modules, backbones and
        losses and torch.optim pass; a model trained with your own classes loads with
        ``trusted_targets=["mylab"]`` (module paths). ``kwargs`` replace stored hyperparameters
        (their stored configs are then not used). The model is built on the CPU and moved to
        ``map_location`` (a device) when given; ``strict`` as in ``load_state_dict``.
        ``hparams_file`` and ``weights_only=False`` are refused.
        """
        if hparams_file is not None:
            raise TypeError(
                "hparams_file is not supported: a sigmoidf1 checkpoint carries its own "
                "hyperparameters; pass replacements as keyword arguments"
            )
        if weights_only is False:
            raise ValueError("sigmoidf1 loads checkpoints with weights_only=True only")
        # the reader sits above this module (it knows the classifier): imported when called
        from sigmoidf1.checkpoints import HPARAMS_KEY, read_checkpoint

        checkpoint = read_checkpoint(checkpoint_path, trusted_targets, replaced=kwargs)
        model = cls(**{**checkpoint[HPARAMS_KEY], **kwargs})
        model.on_load_checkpoint(checkpoint)
        model.load_state_dict(
            checkpoint["state_dict"], strict=model.strict_loading if strict is None else strict
        )
        return model if map_location is None else model.to(torch.device(map_location))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Raise ``FloatingPointError`` instead of writing a checkpoint with non-finite weights."""
        finite = torch.stack([torch.isfinite(p).all() for p in self.parameters()])
        if not bool(finite.all()):
            name = next(
                n for (n, _), ok in zip(self.named_parameters(), finite, strict=True) if not ok
            )
            raise FloatingPointError(
                f"non-finite weights ({name}) at global step {self.global_step}: training "
                "diverged; not writing a checkpoint (lower the learning rate, check the inputs)"
            )


def _plain(value: Any) -> Any:
    """Config containers, numpy and torch scalars -> plain Python data (safe in checkpoints)."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value
