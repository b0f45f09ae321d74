"""Decision thresholds tuned on the validation set to maximise F1.

``best_f1_thresholds`` is the search: for scores ``[N, L]`` (logits) and binary targets, the
threshold of each label that maximises that label's F1 when predicting ``score >= threshold``.
Sorting each column once gives every achievable prediction set (the top ``k`` scores, ``k = 1..N``)
with its true positives as a cumulative sum, so the search is exact and costs O(N log N) per label,
vectorised over labels:

    tp_k = sum of the targets of the k highest scores,   F1_k = 2 tp_k / (k + P)

where ``P`` is the label's number of positives. Only cuts between two *distinct* scores are
candidates (tied scores are always predicted together); among equal F1 values the highest threshold
(the smallest ``k``) wins. The threshold returned is the midpoint of the two scores around the best
cut, or one unit below the lowest score when every example is predicted positive. A label without
positives has F1 = 0 at every threshold (zero_division): it keeps the ``fallback`` threshold.

``ThresholdTuning`` is the Lightning callback that runs the search at the end of every validation
epoch and puts the result in the model's ``thresholds`` buffer (see ``ThresholdTuning``).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from sigmoidf1.metrics import build_metrics, shift_to_threshold
from sigmoidf1.utils.distributed import gather_rows

MODES = ("per_label", "global")
UNTUNED_PREFIX = "test_untuned/"
TUNED_VAL_PREFIX = "val_tuned/"


def best_f1_thresholds(
    scores: Tensor, targets: Tensor, fallback: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Per column, the threshold ``t`` maximising the F1 of ``scores >= t`` against ``targets``.

    Args:
        scores: ``[N, L]`` real scores (logits; any monotone score works), finite.
        targets: ``[N, L]`` in {0, 1}.
        fallback: the threshold (in score units) of columns without any positive.

    Returns:
        ``(thresholds [L], best_f1 [L], has_positive [L] bool)``, float64 on ``scores.device``.
    """
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(
            f"scores and targets must both be [N, L], got {tuple(scores.shape)} and {tuple(targets.shape)}"
        )
    if scores.shape[0] == 0:
        raise ValueError("no examples to tune thresholds on (N = 0)")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values: cannot tune thresholds")
    n = scores.shape[0]
    sorted_scores, order = torch.sort(scores.to(torch.float64), dim=0, descending=True)
    hits = torch.gather(targets.to(torch.float64), 0, order)
    tp = hits.cumsum(dim=0)  # [N, L]: true positives when the top k = 1..N are predicted positive
    positives = tp[-1]  # [L]
    k = torch.arange(1, n + 1, dtype=torch.float64, device=scores.device).unsqueeze(1)
    f1 = 2 * tp / (k + positives)
    # a cut after row i is achievable only if the next score is strictly lower (or i is the last row)
    achievable = torch.ones_like(f1, dtype=torch.bool)
    achievable[:-1] = sorted_scores[:-1] > sorted_scores[1:]
    f1 = torch.where(achievable, f1, torch.full_like(f1, -1.0))
    best_f1, best = f1.max(dim=0)  # first maximum = highest threshold among ties
    above = sorted_scores.gather(0, best.unsqueeze(0)).squeeze(0)
    below = sorted_scores.gather(0, (best + 1).clamp(max=n - 1).unsqueeze(0)).squeeze(0)
    thresholds = torch.where(best < n - 1, (above + below) / 2, above - 1.0)
    has_positive = positives > 0
    thresholds = torch.where(has_positive, thresholds, torch.full_like(thresholds, fallback))
    best_f1 = torch.where(has_positive, best_f1, torch.zeros_like(best_f1))
    return thresholds, best_f1, has_positive


def f1_scores(predicted: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """``(micro F1, macro F1)`` of boolean predictions ``[N, L]``; labels with no support score 0."""
    predicted = predicted.to(torch.float64)
    targets = targets.to(torch.float64)
    tp = (predicted * targets).sum(0)
    denominator = predicted.sum(0) + targets.sum(0)
    per_label = torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), 0.0)
    micro = 2 * tp.sum() / denominator.sum().clamp_min(1)
    return micro, per_label.mean()


class ThresholdTuning(Callback):
    """Tune per-label (or one global) decision thresholds on the validation set to maximise F1.

    When: at the end of every validation epoch (sanity checks excluded) the callback gathers the
    epoch's validation logits and targets from all processes (so every rank picks the same
    thresholds), and runs ``best_f1_thresholds``:

    - ``mode="per_label"``: each label gets the threshold maximising its own F1 (hence macro-F1);
    - ``mode="global"``: one threshold for all labels, maximising micro-F1 over the pooled scores.

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

    Args:
        mode: ``"per_label"`` or ``"global"``.
        max_abs_logit: tuned thresholds are clipped to ``sigmoid(+-max_abs_logit)``: the buffer is
            float32, and probabilities closer to 0 or 1 lose the precision needed to recover the logit.
    """

    def __init__(self, mode: str = "per_label", max_abs_logit: float = 10.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not max_abs_logit > 0:
            raise ValueError(f"max_abs_logit must be > 0, got {max_abs_logit}")
        self.mode = mode
        self.max_abs_logit = float(max_abs_logit)
        # probability thresholds [L] tuned at the latest validation epoch
        self.tuned: Tensor | None = None
        self._logits: list[Tensor] = []
        self._targets: list[Tensor] = []
        self._untuned_metrics = None

    # --- the search on gathered predictions ----------------------------------------------------
    def tune(self, logits: Tensor, targets: Tensor, fixed: float) -> Tensor:
        """Probability thresholds ``[L]`` (float32) for ``logits``/``targets`` ``[N, L]``."""
        fallback = math.log(fixed / (1 - fixed))
        if self.mode == "per_label":
            cut, _, _ = best_f1_thresholds(logits, targets, fallback=fallback)
        else:
            cut, _, _ = best_f1_thresholds(logits.reshape(-1, 1), targets.reshape(-1, 1), fallback)
            cut = cut.expand(logits.shape[1])
        cut = cut.clamp(-self.max_abs_logit, self.max_abs_logit)
        return torch.sigmoid(cut).to(torch.float32)

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
        # all ranks' rows (ranks may hold different numbers), so every rank picks the same thresholds
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
        metrics = build_metrics(
            len(pl_module.thresholds), UNTUNED_PREFIX, pl_module.hparams.ap_thresholds
        )
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
