"""Multilabel losses on logits: the sigmoidF1 family and baselines, behind a name registry.

    from sigmoidf1.losses import get_loss, available_losses, register_loss

    loss_fn = get_loss("sigmoid_f1", beta=1.0, eta=0.0)
    loss = loss_fn(logits, targets)        # [batch, num_labels] each -> 0-d tensor

Every module of this package is imported here, so a new loss is one file
``src/sigmoidf1/losses/my_loss.py`` with ``@register_loss("my_loss")`` on an ``nn.Module`` class
(or factory), plus ``configs/loss/my_loss.yaml`` (``_target_: sigmoidf1.losses.get_loss``,
``name: my_loss``, its parameters): nothing else is edited. What such a loss must do is in
``registry.py`` (``register_loss``); ``pytest tests/core/test_loss_contract.py`` checks it.

Files: ``registry.py`` (names), ``confusion.py`` (soft counts and metrics), ``family.py`` (the
sigmoidF1 family), ``baselines.py`` (bce, focal, asl, zlpr), ``two_way.py`` (two-way loss),
``validation.py`` (checks). Counts are summed over ranks with ``sigmoidf1.distributed``. Torch only.
"""

import importlib
import pkgutil

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
    sigmoid_metric_loss,
)
from sigmoidf1.losses.registry import available_losses, get_loss, register_loss
from sigmoidf1.losses.two_way import TwoWayLoss, two_way_loss

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
    "TwoWayLoss",
    "UnboundedF1Loss",
    "ZLPRLoss",
    "asymmetric_loss",
    "available_losses",
    "bce_loss",
    "focal_loss",
    "get_loss",
    "register_loss",
    "sigmoid_f1_loss",
    "sigmoid_metric_loss",
    "soft_counts",
    "two_way_loss",
    "zlpr_loss",
]

# discovery: a module dropped into this folder registers its losses on import
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
