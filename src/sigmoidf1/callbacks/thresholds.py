"""Decision thresholds tuned on the validation set to maximise F1, safely for rare labels.

Two exact searches over scores (logits) ``[N, L]`` and binary targets, predicting
``score >= threshold``:

``best_f1_thresholds`` (per label): sorting each column once gives every achievable prediction set
(the top ``k`` scores, ``k = 1..N``) with its true positives as a cumulative sum, so the search is
exact and costs O(N log N) per label, vectorised over a block of ``chunk_labels`` labels at a time:

    tp_k = sum of the targets of the k highest scores,   F1_k = 2 tp_k / (k + P)

where ``P`` is the label's number of positives. Only cuts between two *distinct* scores are
candidates (tied scores are always predicted together); among equal F1 values the highest threshold
(the smallest ``k``) wins. The threshold returned is the midpoint of the two scores around the best
cut, or one unit below the lowest score when every example is predicted positive. A label without
positives has F1 = 0 at every threshold (zero_division): it keeps the ``fallback`` threshold.

``best_micro_f1_threshold`` (one threshold for all labels): the same search on the ``N * L`` pooled
scores, i.e. the micro-F1 optimum, with the same tie rules and the same result as
``best_f1_thresholds(scores.reshape(-1, 1), ...)``. It never sorts the pooled scores: the best cut
always sits just below a positive's score (lowering a cut past negatives only adds false
positives), so the candidates are the ``P`` distinct positive scores ``c``, and
``#{score >= c}`` is counted block by block of labels.

``ThresholdTuning`` is the Lightning callback that runs them at the end of every validation epoch
and puts the result in the model's ``thresholds`` buffer; its ``mode``, ``min_positives``,
``shrinkage``, ``anchor`` and ``guard`` choose how far each label may move away from a common
threshold, and whether tuning is kept at all (see there).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from sigmoidf1.metrics import shift_to_threshold
from sigmoidf1.utils.distributed import gather_rows

MODES = ("per_label", "global", "fixed")
ANCHORS = ("auto", "global", "fixed")
UNTUNED_PREFIX = "test_untuned/"
TUNED_VAL_PREFIX = "val_tuned/"


def _check_scores(scores: Tensor, targets: Tensor, chunk_labels: int | None) -> None:
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(
            "scores and targets must both be [N, L], "
            f"got {tuple(scores.shape)} and {tuple(targets.shape)}"
        )
    if scores.shape[0] == 0:
        raise ValueError("no examples to tune thresholds on (N = 0)")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values: cannot tune thresholds")
    if chunk_labels is not None and chunk_labels < 1:
        raise ValueError(f"chunk_labels must be >= 1 or None, got {chunk_labels}")


def _label_blocks(num_labels: int, chunk_labels: int | None) -> list[slice]:
    step = num_labels if chunk_labels is None else chunk_labels
    return [slice(start, start + step) for start in range(0, num_labels, max(step, 1))]


def best_f1_thresholds(
    scores: Tensor, targets: Tensor, fallback: float = 0.0, chunk_labels: int | None = 256
) -> tuple[Tensor, Tensor, Tensor]:
    """Per column, the threshold ``t`` maximising the F1 of ``scores >= t`` against ``targets``.

    Args:
        scores: ``[N, L]`` real scores (logits; any monotone score works), finite.
        targets: ``[N, L]`` in {0, 1}.
        fallback: the threshold (in score units) of columns without any positive.
        chunk_labels: columns searched at once (``None``: all). The search's extra memory is about
            ``50 * N * chunk_labels`` bytes (float64 sort, order, cumulative sums); the result does
            not depend on it.

    Returns:
        ``(thresholds [L], best_f1 [L], has_positive [L] bool)``, float64 on ``scores.device``.
    """
    _check_scores(scores, targets, chunk_labels)
    blocks = [
        _best_f1_block(scores[:, block], targets[:, block], fallback)
        for block in _label_blocks(scores.shape[1], chunk_labels)
    ]
    return tuple(torch.cat(parts) for parts in zip(*blocks, strict=True))  # type: ignore[return-value]


def _best_f1_block(
    scores: Tensor, targets: Tensor, fallback: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``best_f1_thresholds`` on one block of columns, all sorted at once."""
    n = scores.shape[0]
    sorted_scores, order = torch.sort(scores.to(torch.float64), dim=0, descending=True)
    hits = torch.gather(targets.to(torch.float64), 0, order)
    del order
    tp = hits.cumsum(dim=0)  # [N, l]: true positives when the top k = 1..N are predicted positive
    del hits
    positives = tp[-1]  # [l]
    k = torch.arange(1, n + 1, dtype=torch.float64, device=scores.device).unsqueeze(1)
    f1 = 2 * tp / (k + positives)
    # a cut after row i is achievable only if the next score is strictly lower (or i is last)
    achievable = torch.ones_like(f1, dtype=torch.bool)
    achievable[:-1] = sorted_scores[:-1] > sorted_scores[1:]
    f1 = f1.masked_fill_(~achievable, -1.0)
    best_f1, best = f1.max(dim=0)  # first maximum = highest threshold among ties
    above = sorted_scores.gather(0, best.unsqueeze(0)).squeeze(0)
    below = sorted_scores.gather(0, (best + 1).clamp(max=n - 1).unsqueeze(0)).squeeze(0)
    thresholds = torch.where(best < n - 1, (above + below) / 2, above - 1.0)
    has_positive = positives > 0
    thresholds = torch.where(has_positive, thresholds, torch.full_like(thresholds, fallback))
    best_f1 = torch.where(has_positive, best_f1, torch.zeros_like(best_f1))
    return thresholds, best_f1, has_positive


def best_micro_f1_threshold(
    scores: Tensor, targets: Tensor, fallback: float = 0.0, chunk_labels: int | None = 256
) -> tuple[Tensor, Tensor, Tensor]:
    """The one threshold ``t`` maximising the micro-F1 of ``scores >= t`` over all ``[N, L]``.

    Equal to ``best_f1_thresholds(scores.reshape(-1, 1), targets.reshape(-1, 1), fallback)`` (same
    value, same tie rules), in O(P + N * chunk_labels) extra memory instead of O(N * L), where
    ``P`` is the number of positives: with the distinct positive scores ``c`` as candidates,

        TP(c) = #{positives >= c},   Pred(c) = #{scores >= c},   F1(c) = 2 TP(c) / (Pred(c) + P)

    and the threshold is the midpoint of the best ``c`` and the highest score below it (or
    ``c - 1`` when there is none).

    Returns:
        ``(threshold, best_f1, positives)`` as 0-dim tensors: float64, float64 and the number of
        positives (int64), on ``scores.device``.
    """
    _check_scores(scores, targets, chunk_labels)
    positive_scores = scores[targets.bool()].to(torch.float64)
    num_positives = torch.tensor(positive_scores.numel(), device=scores.device)
    if positive_scores.numel() == 0:
        zero = torch.zeros((), dtype=torch.float64, device=scores.device)
        return zero + fallback, zero, num_positives
    # descending, so that the first maximum below is the highest threshold among equal F1 values
    candidates, counts = torch.unique(positive_scores, sorted=True, return_counts=True)
    candidates, counts = candidates.flip(0), counts.flip(0)
    true_positives = counts.cumsum(0).to(torch.float64)
    predicted = torch.zeros_like(candidates)
    below = torch.full_like(candidates, -math.inf)
    for block in _label_blocks(scores.shape[1], chunk_labels):
        ascending = scores[:, block].reshape(-1).to(torch.float64).sort().values
        lower = torch.searchsorted(ascending, candidates)  # how many scores are < c
        predicted += ascending.numel() - lower
        highest_lower = ascending[(lower - 1).clamp(min=0)]
        below = torch.maximum(below, torch.where(lower > 0, highest_lower, -math.inf))
    f1 = 2 * true_positives / (predicted + positive_scores.numel())
    best_f1, best = f1.max(dim=0)
    above = candidates[best]
    threshold = torch.where(below[best] > -math.inf, (above + below[best]) / 2, above - 1.0)
    return threshold, best_f1, num_positives


def _counts(predicted: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Per label ``(tp, predicted + positives)`` of boolean predictions ``[N, L]``, float64."""
    predicted = predicted.to(torch.float64)
    targets = targets.to(torch.float64)
    return (predicted * targets).sum(0), predicted.sum(0) + targets.sum(0)


def _f1(tp: Tensor, denominator: Tensor) -> Tensor:
    return torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), 0.0)


def per_label_f1(predicted: Tensor, targets: Tensor) -> Tensor:
    """F1 ``[L]`` of each column of boolean predictions ``[N, L]`` (0 without support)."""
    return _f1(*_counts(predicted, targets))


def f1_scores(predicted: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """``(micro F1, macro F1)`` of boolean predictions ``[N, L]``; labels without support: 0."""
    tp, denominator = _counts(predicted, targets)
    return _f1(tp.sum(), denominator.sum()), _f1(tp, denominator).mean()


class ThresholdTuning(Callback):
    """Tune decision thresholds on the validation set to maximise F1, never trusting few positives.

    When: at the end of every validation epoch (sanity checks excluded) the callback gathers the
    epoch's validation logits and targets from all processes and tunes thresholds on them. Every
    rank gathers the same rows in the same order and runs the same deterministic computation, so
    every rank holds the same thresholds.

    The strategy (``mode``, ``min_positives``, ``shrinkage``, ``anchor``, ``guard``), in logit
    space, with ``t_fixed`` the model's ``threshold``, ``t_global`` the micro-F1-optimal threshold
    of the pooled ``[N, L]`` scores (``best_micro_f1_threshold``), ``t_l`` label ``l``'s own
    F1-optimal threshold (``best_f1_thresholds``) and ``n_l`` its number of validation positives:

    - ``mode="per_label"`` (the default):
      ``t = a + w_l (t_l - a)``, ``w_l = n_l / (n_l + shrinkage)`` if ``n_l >= min_positives``,
      else ``w_l = 0``. A label moves away from the anchor ``a`` only as far as its own positives
      support. The anchor is ``t_global`` or ``t_fixed`` (``anchor="global"``, ``"fixed"``) or,
      with ``anchor="auto"`` (the default), whichever of the two gives the rare labels
      (``n_l < min_positives``; all labels if none is rare) the higher mean validation F1: one
      choice fitted on many labels, not one per label. ``t_global`` suits models whose scores
      share one scale; ``t_fixed`` those that already rank rare labels at 0.5 (ASL, sigmoidF1 on
      Reuters), where the pooled cut, set by the frequent labels, would silence the rare ones.
      Use it by default; with many positives per label it approaches the exact per-label optimum
      (hence macro-F1), with few it is the anchor.
    - ``guard=True`` (the default, every mode): if the tuned thresholds score a lower micro-F1 *or*
      a lower macro-F1 on the validation set than ``t_fixed`` for every label, ``t_fixed`` is
      kept for every label (``fell_back``, logged as ``val_tuned/fell_back``). Per-label cuts
      maximise each label's F1, not the pooled one, and can cost micro-F1; tuning is kept only
      where it wins on both.
    - ``mode="per_label", min_positives=0, shrinkage=0, guard=False``: the exact per-label search,
      ``t = t_l`` (labels without positives: the anchor). Use it only when every label has many
      validation positives (hundreds). Why not otherwise: F1 rewards any true positive over none,
      so for a label with one or two positives the search picks whatever threshold catches them,
      even one that flags hundreds of negatives (Lipton et al. 2014, "Thresholding Classifiers to
      Maximize F1"); on Reuters with BCE this took test micro-F1 from 0.795 to 0.555.
    - ``mode="global"``: ``t = t_global`` for every label: one parameter fitted on all ``N * L``
      pooled scores, so it is stable even when most labels are rare. Use it to optimise micro-F1,
      or when the labels' scores are on one common scale (one calibration error for all). The
      guard still applies (it keeps ``t_fixed`` when ``t_global`` costs validation macro-F1).
    - ``mode="fixed"``: ``t = t_fixed`` (no tuning; ``test/`` equals ``test_untuned/``). Use it as
      the baseline, or when the validation set is tiny.

    Every estimate needs support: if the whole validation set has fewer than
    ``max(min_positives, 1)`` positives, ``t_global`` is replaced by ``t_fixed``.

    Defaults: ``min_positives=10``: below ten positives a single positive moves the label's recall
    by more than 10 points, so its best cut is decided by the score of one or two examples (the
    failure above); ten events is also the usual minimum for fitting one parameter of a logistic
    model. ``shrinkage=10``: a label with 10 positives moves halfway to its own optimum, one with
    100 positives 91% of the way; the weight is the posterior weight of ``n_l`` observations
    against a prior worth ``shrinkage`` observations centred on the pooled threshold.

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
        mode: ``"per_label"``, ``"global"`` or ``"fixed"`` (above).
        min_positives: validation positives a label needs to move from ``t_global`` (and the
            whole validation set needs for ``t_global`` to move from ``t_fixed``); ``>= 0``.
        shrinkage: prior strength, in positives, pulling a label's threshold toward ``t_global``;
            ``0`` keeps each label's own optimum; ``>= 0``.
        max_abs_logit: tuned thresholds are clipped to ``sigmoid(+-max_abs_logit)``: the buffer
            is float32, and probabilities closer to 0 or 1 lose the precision needed to recover the
            logit.
        chunk_labels: labels searched at once; bounds the search's extra memory to about
            ``50 * N * chunk_labels`` bytes for ``N`` validation examples (``None``: all labels at
            once). The thresholds do not depend on it.
        anchor: ``"auto"``, ``"global"`` or ``"fixed"``: what rare labels take and the others are
            shrunk toward (``per_label`` only; above).
        guard: keep ``t_fixed`` everywhere unless the tuned thresholds score at least its
            micro-F1 and its macro-F1 on the validation set (above).
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
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
        if not (isinstance(min_positives, int) and min_positives >= 0):
            raise ValueError(f"min_positives must be an integer >= 0, got {min_positives!r}")
        if not shrinkage >= 0:
            raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
        if not max_abs_logit > 0:
            raise ValueError(f"max_abs_logit must be > 0, got {max_abs_logit}")
        if chunk_labels is not None and chunk_labels < 1:
            raise ValueError(f"chunk_labels must be >= 1 or None, got {chunk_labels}")
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
        """Probability thresholds ``[L]`` (float32) for ``logits``/``targets`` ``[N, L]``.

        A deterministic function of its arguments (no randomness, no reduction whose order
        depends on the process), so that every rank, given the same gathered rows, agrees. Sets
        ``fell_back`` (whether the guard chose the fixed threshold).
        """
        num_labels = logits.shape[1]
        fixed_cut = torch.full(
            (num_labels,), math.log(fixed / (1 - fixed)), dtype=torch.float64, device=logits.device
        )
        self.fell_back = False
        if self.mode == "fixed":
            return torch.sigmoid(fixed_cut).to(torch.float32)
        needed = max(self.min_positives, 1)
        pooled, _, pooled_positives = best_micro_f1_threshold(
            logits, targets, fixed_cut[0].item(), self.chunk_labels
        )
        global_cut = torch.where(pooled_positives >= needed, pooled, fixed_cut)
        cut = global_cut
        if self.mode == "per_label":
            positives = targets.to(torch.float64).sum(0)
            rare = positives < needed
            anchor = self._anchor(logits, targets, global_cut, fixed_cut, rare)
            own, _, _ = best_f1_thresholds(logits, targets, 0.0, self.chunk_labels)
            weight = positives / (positives + self.shrinkage).clamp_min(1)
            weight = torch.where(rare, 0.0, weight)
            cut = (1 - weight) * anchor + weight * own  # exactly `own` at weight 1
        cut = cut.clamp(-self.max_abs_logit, self.max_abs_logit)
        if self.guard:
            tuned_f1 = f1_scores(logits >= cut, targets)
            fixed_f1 = f1_scores(logits >= fixed_cut, targets)
            if any(t < f for t, f in zip(tuned_f1, fixed_f1, strict=True)):
                cut, self.fell_back = fixed_cut, True
        return torch.sigmoid(cut).to(torch.float32)

    def _anchor(
        self, logits: Tensor, targets: Tensor, global_cut: Tensor, fixed_cut: Tensor, rare: Tensor
    ) -> Tensor:
        """The cut the rare labels take and the others are shrunk toward (``anchor``)."""
        if self.anchor != "auto":
            return global_cut if self.anchor == "global" else fixed_cut
        group = rare if bool(rare.any()) else torch.ones_like(rare)
        scores, group_targets = logits[:, group], targets[:, group]
        f1_global = per_label_f1(scores >= global_cut[group], group_targets).mean()
        f1_fixed = per_label_f1(scores >= fixed_cut[group], group_targets).mean()
        return global_cut if f1_global >= f1_fixed else fixed_cut

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
