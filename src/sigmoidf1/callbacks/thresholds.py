"""``ThresholdTuning``: decision thresholds tuned on the validation set at every validation epoch.

The search and the safe strategy are plain tensor functions of the core (``sigmoidf1.thresholds``:
``tune_thresholds``); this callback gathers the validation logits of every process, runs it, and
puts the result where checkpoints, tests and prediction find it.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from sigmoidf1.distributed import gather_rows
from sigmoidf1.metrics import f1_scores, shift_to_threshold
from sigmoidf1.thresholds import check_tuning_options, tune_thresholds

UNTUNED_PREFIX = "test_untuned/"
TUNED_VAL_PREFIX = "val_tuned/"


class ThresholdTuning(Callback):
    """Tune decision thresholds on the validation set to maximise F1, never trusting few positives.

    When: at the end of every validation epoch (sanity checks excluded) the callback gathers the
    epoch's validation logits and targets from all processes and tunes thresholds on them. Every
    rank gathers the same rows in the same order and runs the same deterministic computation, so
    every rank holds the same thresholds.

    The strategy (``mode``, ``min_positives``, ``shrinkage``, ``anchor``, ``guard``) is
    ``sigmoidf1.thresholds.tune_thresholds``'s, with the model's ``threshold`` as the fixed one:
    each label moves from a common anchor toward its own F1-optimal threshold only as far as its
    validation positives support, and the tuned thresholds are kept only when they score at least
    the fixed threshold's validation micro- and macro-F1 (``val_tuned/fell_back`` says when not).

    Where they go: into every checkpoint saved after that epoch (``state_dict["thresholds"]``, so
    the best checkpoint carries the thresholds tuned on *its* epoch's validation predictions), and
    into the model's ``thresholds`` buffer when fitting ends. Tested or predicting models use the
    buffer (``MultilabelClassifier.predict_proba``), so ``test/*`` metrics, ``sigmoidf1-eval`` and
    prediction use the tuned thresholds.

    What stays at the fixed threshold (the model's ``threshold``, 0.5 by default): everything
    computed during fitting. The buffer is held at the fixed value during training and validation
    epochs, so ``train/*`` and ``val/*`` metrics, and therefore model selection and early stopping,
    are identical with and without this callback. Logged in addition:

    - ``val_tuned/f1_micro``, ``val_tuned/f1_macro``: validation F1 at the thresholds just tuned on
      that same data (optimistic: tuned and scored on the same examples);
    - ``test_untuned/<metric>``: every test metric at the fixed threshold, next to ``test/<metric>``
      at the tuned thresholds. ``map_macro`` is threshold-free, so the two agree on it.

    Needs ``validation_step`` and ``test_step`` to return ``{"logits": [batch, num_labels]}`` and
    batches ``(inputs, targets)``, as ``MultilabelClassifier`` does. Under DDP the search sees the
    examples of every rank, each once with the template's DataModules (their evaluation sampler does
    not pad; a padding sampler's repeated examples would be included).

    Args: ``tune_thresholds``'s options (``mode``, ``min_positives``, ``shrinkage``,
        ``max_abs_logit``, ``chunk_labels``, ``anchor``, ``guard``), checked here at construction.
    """

    def __init__(
        self,
        mode: str = "per_label",
        min_positives: int = 10,
        shrinkage: float = 10.0,
        max_abs_logit: float = 10.0,
        chunk_labels: int | None = 256,
        anchor: str = "auto",
        guard: bool = True,
    ) -> None:
        check_tuning_options(mode, min_positives, shrinkage, anchor, max_abs_logit, chunk_labels)
        self.mode = mode
        self.min_positives = min_positives
        self.shrinkage = float(shrinkage)
        self.max_abs_logit = float(max_abs_logit)
        self.chunk_labels = chunk_labels
        self.anchor = anchor
        self.guard = bool(guard)
        self.fell_back = False
        # probability thresholds [L] tuned at the latest validation epoch
        self.tuned: Tensor | None = None
        self._logits: list[Tensor] = []
        self._targets: list[Tensor] = []
        self._untuned_metrics = None

    # --- the search on gathered predictions ----------------------------------------------------
    def tune(self, logits: Tensor, targets: Tensor, fixed: float) -> Tensor:
        """Probability thresholds ``[L]`` (float32) for ``logits``/``targets`` ``[N, L]``
        (``tune_thresholds`` with this callback's options); sets ``fell_back``."""
        tuned = tune_thresholds(
            logits,
            targets,
            fixed,
            mode=self.mode,
            min_positives=self.min_positives,
            shrinkage=self.shrinkage,
            anchor=self.anchor,
            guard=self.guard,
            max_abs_logit=self.max_abs_logit,
            chunk_labels=self.chunk_labels,
        )
        self.fell_back = tuned.fell_back
        return tuned.thresholds

    # --- fitting: hold the fixed threshold, tune at each validation epoch end ------------------
    def _hold_fixed(self, pl_module: L.LightningModule) -> None:
        pl_module.thresholds.fill_(pl_module.hparams.threshold)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._hold_fixed(pl_module)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._logits.clear()
        self._targets.clear()
        if not trainer.sanity_checking:
            self._hold_fixed(pl_module)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking:
            return
        self._logits.append(_checked_logits(outputs, pl_module, "validation_step").float())
        self._targets.append(batch[1].detach().float())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        empty = pl_module.thresholds.new_zeros((0, len(pl_module.thresholds)))
        # all ranks' rows (ranks may hold different numbers): every rank picks the same thresholds
        logits = gather_rows(torch.cat(self._logits) if self._logits else empty, None)
        targets = gather_rows(torch.cat(self._targets) if self._targets else empty, None)
        self._logits.clear()
        self._targets.clear()
        if logits.shape[0] == 0:
            return
        self.tuned = self.tune(logits, targets, pl_module.hparams.threshold)
        predicted = logits >= torch.logit(self.tuned.to(logits.device))
        micro, macro = f1_scores(predicted, targets)
        # equal on every rank already: sync_dist averages equal values (and silences Lightning)
        pl_module.log(f"{TUNED_VAL_PREFIX}f1_micro", micro.float(), sync_dist=True)
        pl_module.log(f"{TUNED_VAL_PREFIX}f1_macro", macro.float(), sync_dist=True)
        fell_back = torch.tensor(float(self.fell_back), device=pl_module.device)
        pl_module.log(f"{TUNED_VAL_PREFIX}fell_back", fell_back, sync_dist=True)
        if trainer.state.fn != "fit":  # `trainer.validate`: use the thresholds from now on
            pl_module.thresholds.copy_(self.tuned)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = checkpoint.get("state_dict", {})
        if self.tuned is not None and "thresholds" in state:
            state["thresholds"] = self.tuned.to(state["thresholds"].device).clone()

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # resuming: until the next validation epoch, checkpoints keep the thresholds loaded
        stored = checkpoint.get("state_dict", {}).get("thresholds")
        if stored is not None:
            self.tuned = stored.detach().clone()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.tuned is not None:
            pl_module.thresholds.copy_(self.tuned)

    # --- testing: also report the metrics at the fixed threshold --------------------------------
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the module's own test collection (same metrics and options), unsynchronised and empty
        metrics = pl_module.test_metrics.clone(prefix=UNTUNED_PREFIX)
        metrics.reset()
        self._untuned_metrics = metrics.to(pl_module.device)

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        logits = _checked_logits(outputs, pl_module, "test_step")
        fixed = torch.full_like(pl_module.thresholds, pl_module.hparams.threshold)
        self._untuned_metrics.update(shift_to_threshold(logits, fixed), batch[1].int())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        values = self._untuned_metrics.compute()  # synchronised across processes by torchmetrics
        pl_module.log_dict({k: v.float() for k, v in values.items()}, sync_dist=True)
        self._untuned_metrics = None


def _checked_logits(outputs: Any, pl_module: L.LightningModule, hook: str) -> Tensor:
    """The logits a step returned: ``{"logits": [batch, L]}`` (or the tensor itself)."""
    logits = outputs.get("logits") if isinstance(outputs, dict) else outputs
    num_labels = len(pl_module.thresholds)
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[1] != num_labels:
        raise TypeError(
            f"ThresholdTuning needs {hook} to return {{'logits': [batch, {num_labels}]}}; got "
            f"{type(outputs).__name__}{tuple(logits.shape) if isinstance(logits, Tensor) else ''}"
        )
    return logits.detach()
