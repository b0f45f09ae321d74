"""The sigmoidF1 family: ``1 - metric(soft counts)`` for F1, F-beta, precision, recall, any metric.

sigmoidF1 (Bénédict et al. 2022, arXiv 2108.10566) replaces the thresholded predictions of a
confusion matrix by ``S(u) = sigmoid(beta * (u + eta))`` of the logits ``u``, so that batch-level
metrics such as F1 become differentiable (see ``confusion.py`` for the counts)::

    sigmoidF1 = 1 - mean_over_labels( 2tp / (2tp + fn + fp + eps) )     (average="macro")
    micro:      1 - 2TP / (2TP + FN + FP + eps), with counts summed over labels first

Every loss here takes ``logits`` and ``targets`` of shape ``[batch, num_labels]`` (targets in
{0, 1}) and returns a 0-d tensor (float32, or float64 for float64 logits). Shared keywords:

* ``beta`` (> 0), ``eta``: slope and offset of ``S``.
* ``average``: ``"macro"`` (the paper's form: metric per label, then mean) or ``"micro"``.
* ``official_compat``: reproduce the authors' PyTorch code, which applies ``S`` to
  ``sigmoid(logits)`` rather than to the logits: ``S = sigmoid(beta * (sigmoid(u) + eta))``,
  (their ``1 / (1 + exp(S_ * (sigmoid(u) + E)))`` with ``S_ = -beta``, ``E = eta``). Note that
  ``S`` then lies in ``(sigmoid(beta*eta), sigmoid(beta*(1+eta)))``, e.g. (0.5, 0.73) by default.
* ``sync_dist``: ``None`` (auto: when ``torch.distributed`` runs with > 1 process), ``True`` or
  ``False``. When on, counts are summed over ranks with gradients, every rank returns the loss of
  the global batch, and after DDP's gradient averaging the gradients equal those of one process
  on the whole global batch. It is a collective: all ranks must call the loss in lockstep.
* ``validate_targets``: check that targets are 0/1 (a few cheap passes; ``False`` skips it).
* ``eps`` (> 0, default 1e-8): added to denominators. A label with no positives in the batch has
  ``tp = 0`` exactly, so its F1/precision/recall is ``0 / (sum S + eps) = 0``: it contributes a
  constant 1 to the per-label loss and no gradient (also when ``sum S`` is ~0, thanks to eps).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from sigmoidf1.losses.confusion import (
    SOFT_METRICS,
    SoftCounts,
    soft_counts,
    soft_f1,
    soft_fbeta,
    soft_precision,
    soft_recall,
)
from sigmoidf1.losses.registry import register_loss
from sigmoidf1.losses.validation import (
    AVERAGES,
    check_beta,
    check_bool,
    check_choice,
    check_inputs,
    check_positive,
    check_real,
    check_sync_dist,
)

MetricFn = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
_OPTIONS = ("beta", "eta", "average", "official_compat", "sync_dist", "validate_targets", "eps")


def _check_options(beta, eta, average, official_compat, sync_dist, validate_targets, eps) -> None:
    check_beta(beta)
    check_real("eta", eta)
    check_choice("average", average, AVERAGES)
    check_bool("official_compat", official_compat)
    check_sync_dist(sync_dist)
    check_bool("validate_targets", validate_targets)
    check_positive("eps", eps, "it keeps 0/0 (a label with no positives) finite")


def _batch_counts(
    logits: Tensor,
    targets: Tensor,
    beta: float,
    eta: float,
    average: str,
    official_compat: bool,
    sync_dist: bool | None,
    validate_targets: bool,
    eps: float,
) -> SoftCounts:
    """Checked soft counts: per label (macro) or pooled over labels (micro), synced if asked."""
    _check_options(beta, eta, average, official_compat, sync_dist, validate_targets, eps)
    check_inputs(logits, targets, validate_targets)
    counts = soft_counts(logits, targets, beta, eta, official_compat, sync_dist)
    return counts.pooled() if average == "micro" else counts


def sigmoid_f1_loss(
    logits: Tensor,
    targets: Tensor,
    beta: float = 1.0,
    eta: float = 0.0,
    average: str = "macro",
    official_compat: bool = False,
    sync_dist: bool | None = None,
    validate_targets: bool = True,
    eps: float = 1e-8,
) -> Tensor:
    """sigmoidF1 loss: ``1 - mean_l 2tp_l / (2tp_l + fn_l + fp_l + eps)``.

    Counts use ``S = sigmoid(beta * (logits + eta))``; see the module docstring for the keywords.

    Args:
        logits: ``[batch, num_labels]`` raw scores.
        targets: ``[batch, num_labels]`` in {0, 1}.

    Returns:
        0-d tensor in [0, 1].
    """
    counts = _batch_counts(
        logits, targets, beta, eta, average, official_compat, sync_dist, validate_targets, eps
    )
    return 1 - soft_f1(counts, eps).mean()


def unbounded_f1_loss(
    logits: Tensor,
    targets: Tensor,
    average: str = "macro",
    sync_dist: bool | None = None,
    validate_targets: bool = True,
    eps: float = 1e-8,
) -> Tensor:
    """Soft F1 on plain sigmoid probabilities (the paper's "unboundedF1" baseline).

    Identical to ``sigmoid_f1_loss(..., beta=1, eta=0)``: ``p = sigmoid(logits)``,
    ``tp = sum p*y``, loss ``1 - mean_l 2tp / (sum p + sum y + eps)``. Shapes as ``sigmoid_f1_loss``.
    """
    return sigmoid_f1_loss(
        logits, targets, 1.0, 0.0, average, False, sync_dist, validate_targets, eps
    )


def sigmoid_precision_loss(
    logits: Tensor,
    targets: Tensor,
    beta: float = 1.0,
    eta: float = 0.0,
    average: str = "macro",
    official_compat: bool = False,
    sync_dist: bool | None = None,
    validate_targets: bool = True,
    eps: float = 1e-8,
) -> Tensor:
    """``1 - mean_l tp_l / (tp_l + fp_l + eps)``; shapes and keywords as ``sigmoid_f1_loss``."""
    counts = _batch_counts(
        logits, targets, beta, eta, average, official_compat, sync_dist, validate_targets, eps
    )
    return 1 - soft_precision(counts, eps).mean()


def sigmoid_recall_loss(
    logits: Tensor,
    targets: Tensor,
    beta: float = 1.0,
    eta: float = 0.0,
    average: str = "macro",
    official_compat: bool = False,
    sync_dist: bool | None = None,
    validate_targets: bool = True,
    eps: float = 1e-8,
) -> Tensor:
    """``1 - mean_l tp_l / (tp_l + fn_l + eps)``; shapes and keywords as ``sigmoid_f1_loss``."""
    counts = _batch_counts(
        logits, targets, beta, eta, average, official_compat, sync_dist, validate_targets, eps
    )
    return 1 - soft_recall(counts, eps).mean()


def sigmoid_fbeta_loss(
    logits: Tensor,
    targets: Tensor,
    f_beta: float = 1.0,
    beta: float = 1.0,
    eta: float = 0.0,
    average: str = "macro",
    official_compat: bool = False,
    sync_dist: bool | None = None,
    validate_targets: bool = True,
    eps: float = 1e-8,
) -> Tensor:
    """``1 - mean_l (1+f^2) tp / ((1+f^2) tp + f^2 fn + fp + eps)`` with ``f = f_beta`` (> 0).

    ``f_beta`` weighs recall ``f_beta`` times as much as precision; ``f_beta=1`` is sigmoidF1.
    (``beta`` remains the slope of ``S``.) Shapes and other keywords as ``sigmoid_f1_loss``.
    """
    check_positive("f_beta", f_beta, "it is the weight of recall relative to precision")
    counts = _batch_counts(
        logits, targets, beta, eta, average, official_compat, sync_dist, validate_targets, eps
    )
    return 1 - soft_fbeta(counts, eps, f_beta).mean()


def _resolve_metric(metric: str | MetricFn, eps: float) -> Callable[[SoftCounts], Tensor]:
    if callable(metric):
        return lambda c: metric(c.tp, c.fp, c.fn, c.tn)
    if isinstance(metric, str) and metric in SOFT_METRICS:
        builtin = SOFT_METRICS[metric]
        return lambda c: builtin(c, eps)
    raise ValueError(
        f"metric must be a callable (tp, fp, fn, tn) -> Tensor or one of "
        f"{', '.join(map(repr, sorted(SOFT_METRICS)))}; got {metric!r}"
    )


def sigmoid_metric_loss(
    logits: Tensor,
    targets: Tensor,
    metric: str | MetricFn = "jaccard",
    beta: float = 1.0,
    eta: float = 0.0,
    average: str = "macro",
    official_compat: bool = False,
    sync_dist: bool | None = None,
    validate_targets: bool = True,
    eps: float = 1e-8,
) -> Tensor:
    """``1 - mean(metric(tp, fp, fn, tn))`` for any metric of the soft confusion counts.

    Args:
        metric: a built-in name (``"jaccard"`` = tp/(tp+fp+fn), ``"accuracy"`` = (tp+tn)/n,
            ``"specificity"`` = tn/(tn+fp), ``"balanced_accuracy"``, ``"f1"``, ``"precision"``,
            ``"recall"``; ``eps`` is added to their denominators) or a callable
            ``metric(tp, fp, fn, tn) -> Tensor`` of ``[num_labels]`` tensors (macro) or 0-d
            tensors (micro), larger = better, that handles its own zero denominators.
            ``fp``, ``fn``, ``tn`` are derived by subtraction, e.g. ``fp = sum S - tp``.

    Other keywords and shapes as ``sigmoid_f1_loss``.
    """
    resolved = _resolve_metric(metric, eps)
    counts = _batch_counts(
        logits, targets, beta, eta, average, official_compat, sync_dist, validate_targets, eps
    )
    return 1 - resolved(counts).mean()


# --- nn.Module wrappers --------------------------------------------------------------------------


class _SoftMetricLoss(nn.Module):
    """Stores (and checks, at construction) the keywords forwarded to a functional loss."""

    def __init__(self, **options) -> None:
        super().__init__()
        _check_options(**{key: options[key] for key in _OPTIONS})
        self.options = options

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


@register_loss("sigmoid_f1")
class SigmoidF1Loss(_SoftMetricLoss):
    """Module form of ``sigmoid_f1_loss``: ``loss(logits, targets)``, both ``[batch, num_labels]``."""

    def __init__(
        self,
        beta: float = 1.0,
        eta: float = 0.0,
        average: str = "macro",
        official_compat: bool = False,
        sync_dist: bool | None = None,
        validate_targets: bool = True,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(
            beta=beta,
            eta=eta,
            average=average,
            official_compat=official_compat,
            sync_dist=sync_dist,
            validate_targets=validate_targets,
            eps=eps,
        )

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_f1_loss(logits, targets, **self.options)


@register_loss("unbounded_f1")
class UnboundedF1Loss(_SoftMetricLoss):
    """Module form of ``unbounded_f1_loss`` (soft F1 of ``sigmoid(logits)``; beta=1, eta=0 fixed)."""

    def __init__(
        self,
        average: str = "macro",
        sync_dist: bool | None = None,
        validate_targets: bool = True,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(
            beta=1.0,
            eta=0.0,
            average=average,
            official_compat=False,
            sync_dist=sync_dist,
            validate_targets=validate_targets,
            eps=eps,
        )
        self.options = dict(
            average=average, sync_dist=sync_dist, validate_targets=validate_targets, eps=eps
        )

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return unbounded_f1_loss(logits, targets, **self.options)


@register_loss("sigmoid_precision")
class SigmoidPrecisionLoss(_SoftMetricLoss):
    """Module form of ``sigmoid_precision_loss``: ``1 - tp / (tp + fp)``."""

    def __init__(
        self,
        beta: float = 1.0,
        eta: float = 0.0,
        average: str = "macro",
        official_compat: bool = False,
        sync_dist: bool | None = None,
        validate_targets: bool = True,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(
            beta=beta,
            eta=eta,
            average=average,
            official_compat=official_compat,
            sync_dist=sync_dist,
            validate_targets=validate_targets,
            eps=eps,
        )

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_precision_loss(logits, targets, **self.options)


@register_loss("sigmoid_recall")
class SigmoidRecallLoss(_SoftMetricLoss):
    """Module form of ``sigmoid_recall_loss``: ``1 - tp / (tp + fn)``."""

    def __init__(
        self,
        beta: float = 1.0,
        eta: float = 0.0,
        average: str = "macro",
        official_compat: bool = False,
        sync_dist: bool | None = None,
        validate_targets: bool = True,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(
            beta=beta,
            eta=eta,
            average=average,
            official_compat=official_compat,
            sync_dist=sync_dist,
            validate_targets=validate_targets,
            eps=eps,
        )

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_recall_loss(logits, targets, **self.options)


@register_loss("sigmoid_fbeta")
class SigmoidFBetaLoss(_SoftMetricLoss):
    """Module form of ``sigmoid_fbeta_loss``; ``f_beta`` is the weight of recall (1 = F1)."""

    def __init__(
        self,
        f_beta: float = 1.0,
        beta: float = 1.0,
        eta: float = 0.0,
        average: str = "macro",
        official_compat: bool = False,
        sync_dist: bool | None = None,
        validate_targets: bool = True,
        eps: float = 1e-8,
    ) -> None:
        check_positive("f_beta", f_beta, "it is the weight of recall relative to precision")
        super().__init__(
            f_beta=f_beta,
            beta=beta,
            eta=eta,
            average=average,
            official_compat=official_compat,
            sync_dist=sync_dist,
            validate_targets=validate_targets,
            eps=eps,
        )

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_fbeta_loss(logits, targets, **self.options)


@register_loss("sigmoid_metric")
class SigmoidMetricLoss(_SoftMetricLoss):
    """Module form of ``sigmoid_metric_loss``: ``1 - metric(tp, fp, fn, tn)``.

    ``metric`` is a built-in name (``jaccard``, ``accuracy``, ``specificity``,
    ``balanced_accuracy``, ``f1``, ``precision``, ``recall``) or a callable.
    """

    def __init__(
        self,
        metric: str | MetricFn = "jaccard",
        beta: float = 1.0,
        eta: float = 0.0,
        average: str = "macro",
        official_compat: bool = False,
        sync_dist: bool | None = None,
        validate_targets: bool = True,
        eps: float = 1e-8,
    ) -> None:
        _resolve_metric(metric, eps)  # fail at construction on an unknown name
        super().__init__(
            metric=metric,
            beta=beta,
            eta=eta,
            average=average,
            official_compat=official_compat,
            sync_dist=sync_dist,
            validate_targets=validate_targets,
            eps=eps,
        )

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_metric_loss(logits, targets, **self.options)
