"""The sigmoidF1 family: ``1 - metric(soft confusion counts)``, one function and its presets.

sigmoidF1 (Bénédict et al. 2022, arXiv 2108.10566) replaces the thresholded predictions of a
confusion matrix by ``S(u) = sigmoid(beta * (u + eta))`` of the logits ``u``, so that batch-level
metrics such as F1 become differentiable (``confusion.py`` computes the counts)::

    sigmoidF1 = 1 - mean_over_labels( 2tp / (2tp + fn + fp + eps) )     (average="macro")
    micro:      1 - 2TP / (2TP + FN + FP + eps), with counts summed over labels first

``sigmoid_metric_loss`` is the one general function and ``SigmoidMetricLoss`` its module form;
every registered member is that class with some arguments fixed (the torchmetrics
``MultilabelF1Score(MultilabelFBetaScore)`` pattern: each preset spells out the options it keeps, so
that a reader, an IDE and a type checker see them)::

    sigmoid_fbeta   SigmoidFBetaLoss      metric="fbeta"
    sigmoid_f1      SigmoidF1Loss         metric="fbeta", f_beta=1          (sigmoid_fbeta's preset)
    unbounded_f1    UnboundedF1Loss       ... and beta=1, eta=0, official_compat=False
    sigmoid_precision / sigmoid_recall    metric="precision" / "recall"
    sigmoid_metric  SigmoidMetricLoss     nothing fixed; registered with metric="jaccard" by default

``sigmoid_f1_loss`` is the paper's loss as a function. An option added to ``sigmoid_metric_loss``
(and ``check_options``) is added to the presets' signatures too
(``tests/core/test_losses_registry.py`` checks that they agree).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from sigmoidf1.losses.confusion import SOFT_METRICS, SoftCounts, soft_counts, soft_fbeta
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


def sigmoid_metric_loss(
    logits: Tensor,
    targets: Tensor,
    metric: str | MetricFn = "f1",
    *,
    beta: float = 1.0,
    eta: float = 0.0,
    f_beta: float = 1.0,
    average: str = "macro",
    official_compat: bool = False,
    sync_dist: bool | None = None,
    validate_targets: bool = False,
    eps: float = 1e-8,
) -> Tensor:
    """``1 - mean(metric(tp, fp, fn, tn))`` over the soft confusion counts of a batch.

    With ``S = sigmoid(beta * (logits + eta))`` and per label ``l``, summing over the batch,
    ``tp_l = sum S y``, ``fp_l = sum S (1-y)``, ``fn_l = sum (1-S) y``, ``tn_l = sum (1-S)(1-y)``.
    ``average="macro"`` applies ``metric`` per label and averages (the paper's sigmoidF1);
    ``"micro"`` sums the counts over labels first.

    Args:
        logits: ``[batch, num_labels]`` raw scores ``u`` (any float dtype; counted in >= float32).
        targets: ``[batch, num_labels]`` in {0, 1} (float, int or bool).
        metric: a name in ``SOFT_METRICS`` (``eps`` is added to its denominator)::

                f1          2tp / (2tp + fp + fn)               (= sigmoidF1)
                fbeta       (1 + f^2) tp / ((1 + f^2) tp + f^2 fn + fp),  f = f_beta
                precision   tp / (tp + fp)        recall       tp / (tp + fn)
                jaccard     tp / (tp + fp + fn)   accuracy     (tp + tn) / n
                specificity tn / (tn + fp)        balanced_accuracy  (recall + specificity) / 2

            or a callable ``metric(tp, fp, fn, tn) -> Tensor`` of ``[num_labels]`` tensors (macro)
            or 0-d tensors (micro), larger = better, handling its own zero denominators.
        beta: slope of ``S``, > 0 (sigmoidF1's beta, not F-beta's).
        eta: offset of ``S``: ``S = 0.5`` at ``logits = -eta``.
        f_beta: weight of recall for ``metric="fbeta"`` (> 0; 1 gives F1); any other metric
            requires the default 1.
        average: ``"macro"`` or ``"micro"``.
        official_compat: apply ``S`` to ``sigmoid(logits)`` rather than to the logits, as the
            authors' code (gabriben/metrics-as-losses) does: ``S = sigmoid(beta*(sigmoid(u)+eta))``,
            which lies in ``(sigmoid(beta*eta), sigmoid(beta*(1+eta)))``, e.g. (0.5, 0.73).
        sync_dist: ``None`` (auto: when ``torch.distributed`` runs with > 1 process), ``True`` or
            ``False``. When on, counts are summed over ranks with gradients: every rank returns
            the loss of the global batch and, after DDP's gradient averaging, gradients equal
            those of one process on the global batch. A collective: all ranks call in lockstep.
        validate_targets: check that targets are 0/1 (one device-host sync per call; the
            DataModules validate their targets once, so it is off by default).
        eps: > 0, added to denominators. A label with no positives in the batch has ``tp = 0``
            exactly, so its F1 / precision / recall is 0: a constant 1 per label, no gradient.

    Returns:
        0-d tensor (float32, or float64 for float64 logits); in [0, 1] for the named metrics.
    """
    check_options(
        metric,
        beta=beta,
        eta=eta,
        f_beta=f_beta,
        average=average,
        official_compat=official_compat,
        sync_dist=sync_dist,
        validate_targets=validate_targets,
        eps=eps,
    )
    check_inputs(logits, targets, validate_targets)
    counts = soft_counts(logits, targets, beta, eta, official_compat, sync_dist)
    if average == "micro":
        counts = counts.pooled()
    return 1 - _score(counts, metric, f_beta, eps).mean()


def _score(counts: SoftCounts, metric: str | MetricFn, f_beta: float, eps: float) -> Tensor:
    if callable(metric):
        return metric(counts.tp, counts.fp, counts.fn, counts.tn)
    if metric == "fbeta":
        return soft_fbeta(counts, eps, f_beta)
    return SOFT_METRICS[metric](counts, eps)


def check_options(
    metric: str | MetricFn,
    *,
    beta: float,
    eta: float,
    f_beta: float,
    average: str,
    official_compat: bool,
    sync_dist: bool | None,
    validate_targets: bool,
    eps: float,
) -> None:
    """Raise ``ValueError`` naming the first invalid option of ``sigmoid_metric_loss``."""
    if not callable(metric) and metric not in SOFT_METRICS:
        raise ValueError(
            f"metric must be a callable (tp, fp, fn, tn) -> Tensor or one of "
            f"{', '.join(map(repr, sorted(SOFT_METRICS)))}; got {metric!r}"
        )
    check_beta(beta)
    check_real("eta", eta)
    check_positive("f_beta", f_beta, "it is the weight of recall relative to precision")
    if f_beta != 1.0 and metric != "fbeta":
        raise ValueError(f"f_beta={f_beta} applies to metric='fbeta' only; got metric={metric!r}")
    check_choice("average", average, AVERAGES)
    check_bool("official_compat", official_compat)
    check_sync_dist(sync_dist)
    check_bool("validate_targets", validate_targets)
    check_positive("eps", eps, "it keeps 0/0 (a label with no positives) finite")


class SigmoidMetricLoss(nn.Module):
    """Module form of ``sigmoid_metric_loss``: ``1 - metric(soft counts)``, any metric.

    ``loss(logits, targets)``, both ``[batch, num_labels]`` -> 0-d tensor. The options are the
    function's, checked here once; the presets below are this class with some of them fixed.
    """

    def __init__(
        self,
        metric: str | MetricFn = "f1",
        *,
        beta: float = 1.0,
        eta: float = 0.0,
        f_beta: float = 1.0,
        average: str = "macro",
        official_compat: bool = False,
        sync_dist: bool | None = None,
        validate_targets: bool = False,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.arguments = {
            "metric": metric,
            "beta": beta,
            "eta": eta,
            "f_beta": f_beta,
            "average": average,
            "official_compat": official_compat,
            "sync_dist": sync_dist,
            "validate_targets": validate_targets,
            "eps": eps,
        }
        check_options(**self.arguments)

    @property
    def options(self) -> dict[str, Any]:
        """The constructor's own arguments (a preset's fixed ones left out):
        ``type(loss)(**loss.options)`` builds the same loss."""
        return {name: self.arguments[name] for name in inspect.signature(type(self)).parameters}

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_metric_loss(logits, targets, **self.arguments)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.options.items())


# `loss=sigmoid_metric` has meant soft Jaccard since it was added (its config says so)
register_loss("sigmoid_metric")(functools.partial(SigmoidMetricLoss, metric="jaccard"))


@register_loss("sigmoid_fbeta")
class SigmoidFBetaLoss(SigmoidMetricLoss):
    """sigmoidF-beta: ``1 - mean_l (1+f^2) tp_l / ((1+f^2) tp_l + f^2 fn_l + fp_l + eps)``,
    ``f = f_beta`` > 0 weighs recall ``f`` times as much as precision (1 gives sigmoidF1).
    ``SigmoidMetricLoss`` with ``metric="fbeta"``."""

    def __init__(
        self,
        f_beta: float = 1.0,
        *,
        beta: float = 1.0,
        eta: float = 0.0,
        average: str = "macro",
        official_compat: bool = False,
        sync_dist: bool | None = None,
        validate_targets: bool = False,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(
            "fbeta",
            f_beta=f_beta,
            beta=beta,
            eta=eta,
            average=average,
            official_compat=official_compat,
            sync_dist=sync_dist,
            validate_targets=validate_targets,
            eps=eps,
        )


@register_loss("sigmoid_f1")
class SigmoidF1Loss(SigmoidFBetaLoss):
    """sigmoidF1, the paper's loss: ``1 - mean_l 2tp_l / (2tp_l + fn_l + fp_l + eps)``, with the
    counts from ``S = sigmoid(beta * (logits + eta))``. ``SigmoidFBetaLoss`` with ``f_beta=1``.

    Args: ``beta``, ``eta``, ``average``, ``official_compat``, ``sync_dist``,
    ``validate_targets``, ``eps``: see ``sigmoid_metric_loss``.
    """

    def __init__(
        self,
        *,
        beta: float = 1.0,
        eta: float = 0.0,
        average: str = "macro",
        official_compat: bool = False,
        sync_dist: bool | None = None,
        validate_targets: bool = False,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(
            1.0,
            beta=beta,
            eta=eta,
            average=average,
            official_compat=official_compat,
            sync_dist=sync_dist,
            validate_targets=validate_targets,
            eps=eps,
        )


@register_loss("unbounded_f1")
class UnboundedF1Loss(SigmoidF1Loss):
    """The paper's "unboundedF1" baseline: soft F1 of plain ``sigmoid(logits)``. It is exactly
    ``SigmoidF1Loss`` with ``beta=1, eta=0, official_compat=False`` (sigmoid_f1's defaults)."""

    def __init__(
        self,
        *,
        average: str = "macro",
        sync_dist: bool | None = None,
        validate_targets: bool = False,
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


class _SigmoidRatioLoss(SigmoidMetricLoss):
    """``SigmoidMetricLoss`` with a fixed named ``metric`` and no ``f_beta`` (F-beta's only)."""

    metric: str

    def __init__(
        self,
        *,
        beta: float = 1.0,
        eta: float = 0.0,
        average: str = "macro",
        official_compat: bool = False,
        sync_dist: bool | None = None,
        validate_targets: bool = False,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(
            self.metric,
            beta=beta,
            eta=eta,
            average=average,
            official_compat=official_compat,
            sync_dist=sync_dist,
            validate_targets=validate_targets,
            eps=eps,
        )


@register_loss("sigmoid_precision")
class SigmoidPrecisionLoss(_SigmoidRatioLoss):
    """``1 - mean_l tp_l / (tp_l + fp_l + eps)``: ``SigmoidMetricLoss`` with
    ``metric="precision"``."""

    metric = "precision"


@register_loss("sigmoid_recall")
class SigmoidRecallLoss(_SigmoidRatioLoss):
    """``1 - mean_l tp_l / (tp_l + fn_l + eps)``: ``SigmoidMetricLoss`` with ``metric="recall"``."""

    metric = "recall"


def sigmoid_f1_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    beta: float = 1.0,
    eta: float = 0.0,
    average: str = "macro",
    official_compat: bool = False,
    sync_dist: bool | None = None,
    validate_targets: bool = False,
    eps: float = 1e-8,
) -> Tensor:
    """sigmoidF1 (Bénédict et al. 2022), functional: ``1 - mean_l 2tp_l / (2tp_l + fn_l + fp_l)``
    over the soft counts of ``S = sigmoid(beta * (logits + eta))``; ``logits`` and ``targets``
    ``[batch, num_labels]`` -> 0-d tensor. ``sigmoid_metric_loss`` with ``metric="fbeta",
    f_beta=1`` (the options are explained there); equal to ``SigmoidF1Loss(...)(logits, targets)``.
    """
    return sigmoid_metric_loss(
        logits,
        targets,
        "fbeta",
        f_beta=1.0,
        beta=beta,
        eta=eta,
        average=average,
        official_compat=official_compat,
        sync_dist=sync_dist,
        validate_targets=validate_targets,
        eps=eps,
    )
