"""Multilabel losses on logits: the sigmoidF1 family and baselines, behind a name registry.

    from sigmoidf1.losses import get_loss, available_losses, register_loss

    loss_fn = get_loss("sigmoid_f1", beta=1.0, eta=0.0)
    loss = loss_fn(logits, targets)        # [batch, num_labels] each -> 0-d tensor

Every registered loss also exists as a function (``sigmoid_f1_loss``, ``bce_loss``, ...).
Files: ``registry.py`` (names), ``confusion.py`` (soft counts and metrics), ``family.py``
(sigmoidF1 family), ``baselines.py`` (bce, focal, asl, zlpr), ``validation.py`` (checks),
(summing counts over ranks with gradients: ``sigmoidf1.utils.distributed``).
"""

from sigmoidf1.losses.baselines import (
    AsymmetricLoss,
    BCELoss,
    FocalLoss,
    ZLPRLoss,
    asymmetric_loss,
    bce_loss,
    focal_loss,
    zlpr_loss,
)
from sigmoidf1.losses.confusion import SOFT_METRICS, SoftCounts, soft_counts
from sigmoidf1.losses.family import (
    SigmoidF1Loss,
    SigmoidFBetaLoss,
    SigmoidMetricLoss,
    SigmoidPrecisionLoss,
    SigmoidRecallLoss,
    UnboundedF1Loss,
    sigmoid_f1_loss,
    sigmoid_fbeta_loss,
    sigmoid_metric_loss,
    sigmoid_precision_loss,
    sigmoid_recall_loss,
    unbounded_f1_loss,
)
from sigmoidf1.losses.registry import available_losses, get_loss, register_loss

__all__ = [
    "SOFT_METRICS",
    "AsymmetricLoss",
    "BCELoss",
    "FocalLoss",
    "SigmoidF1Loss",
    "SigmoidFBetaLoss",
    "SigmoidMetricLoss",
    "SigmoidPrecisionLoss",
    "SigmoidRecallLoss",
    "SoftCounts",
    "UnboundedF1Loss",
    "ZLPRLoss",
    "asymmetric_loss",
    "available_losses",
    "bce_loss",
    "focal_loss",
    "get_loss",
    "register_loss",
    "sigmoid_f1_loss",
    "sigmoid_fbeta_loss",
    "sigmoid_metric_loss",
    "sigmoid_precision_loss",
    "sigmoid_recall_loss",
    "soft_counts",
    "unbounded_f1_loss",
    "zlpr_loss",
]
