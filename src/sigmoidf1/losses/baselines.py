"""Per-element baselines from the literature: BCE, focal loss, ASL and ZLPR.

All take ``logits`` and binary ``targets`` of shape ``[batch, num_labels]`` and return a 0-d
tensor; half-precision logits are computed in float32. ``validate_targets=True`` checks that the
targets are 0/1 (a device-host sync per call; off by default, the DataModules check once).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sigmoidf1.losses.confusion import compute_dtype
from sigmoidf1.losses.registry import register_loss
from sigmoidf1.losses.validation import (
    REDUCTIONS,
    check_bool,
    check_choice,
    check_inputs,
    check_non_negative,
    check_positive,
    check_real,
)


def _upcast(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    dtype = compute_dtype(logits)
    return logits.to(dtype), targets.to(dtype)


# --- BCE -----------------------------------------------------------------------------------------


def _as_pos_weight(pos_weight: Sequence[float] | Tensor | None) -> Tensor | None:
    if pos_weight is None:
        return None
    if isinstance(pos_weight, Tensor):
        weight = pos_weight.detach().clone().float()
    else:
        try:
            weight = torch.as_tensor([float(w) for w in pos_weight], dtype=torch.float32)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"pos_weight must be None or a list/tensor of per-label numbers, got {pos_weight!r}"
            ) from error
    if weight.dim() != 1 or weight.numel() == 0:
        raise ValueError(f"pos_weight must be 1-D [num_labels], got shape {tuple(weight.shape)}")
    if not torch.isfinite(weight).all() or (weight < 0).any():
        raise ValueError(f"pos_weight must be finite and >= 0, got {weight.tolist()}")
    return weight


def bce_loss(
    logits: Tensor,
    targets: Tensor,
    pos_weight: Sequence[float] | Tensor | None = None,
    validate_targets: bool = False,
) -> Tensor:
    """Binary cross-entropy on logits, mean over all ``batch * num_labels`` elements::

        -[w_l * y * log sigmoid(u) + (1 - y) * log(1 - sigmoid(u))]

    Args:
        logits, targets: ``[batch, num_labels]``; targets in {0, 1}.
        pos_weight: ``None`` or ``[num_labels]`` weights ``w_l`` of the positive term
            (e.g. ``#neg / #pos`` per label).
    """
    check_inputs(logits, targets, validate_targets)
    weight = _as_pos_weight(pos_weight) if not isinstance(pos_weight, Tensor) else pos_weight
    u, y = _upcast(logits, targets)
    if weight is not None:
        if weight.shape != (u.shape[1],):
            raise ValueError(
                f"pos_weight has {weight.numel()} entries but the logits have {u.shape[1]} labels"
            )
        weight = weight.to(device=u.device, dtype=u.dtype)
    return F.binary_cross_entropy_with_logits(u, y, pos_weight=weight)


@register_loss("bce")
class BCELoss(nn.Module):
    """Module form of ``bce_loss``. ``pos_weight`` (list, tensor or None; a Hydra list works)
    is stored as a buffer, so it moves with the model's ``.to(device)``."""

    def __init__(
        self, pos_weight: Sequence[float] | Tensor | None = None, validate_targets: bool = False
    ) -> None:
        super().__init__()
        check_bool("validate_targets", validate_targets)
        self.validate_targets = validate_targets
        self.register_buffer("pos_weight", _as_pos_weight(pos_weight))

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return bce_loss(logits, targets, self.pos_weight, self.validate_targets)


# --- focal ---------------------------------------------------------------------------------------


def check_focal(alpha: float | None, gamma: float, validate_targets: bool) -> None:
    if alpha is not None and check_real("alpha", alpha) > 1:
        raise ValueError(f"alpha must be in [0, 1] (or None / < 0: no weighting), got {alpha}")
    check_non_negative("gamma", gamma, "it is the exponent of the focusing weight (1 - p_t)^gamma")
    check_bool("validate_targets", validate_targets)


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    validate_targets: bool = False,
) -> Tensor:
    """Sigmoid focal loss (Lin et al. 2017), mean over elements; same as
    ``torchvision.ops.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction="mean")``::

        p_t = p y + (1 - p)(1 - y),   alpha_t = alpha y + (1 - alpha)(1 - y)
        loss = alpha_t * (1 - p_t)^gamma * BCE(u, y)

    Args:
        logits, targets: ``[batch, num_labels]``; targets in {0, 1}.
        alpha: weight of positives in [0, 1]; ``None`` (or, as in torchvision, ``alpha < 0``)
            disables the weighting.
        gamma: focusing exponent >= 0 (0 gives BCE, times alpha_t).
    """
    check_focal(alpha, gamma, validate_targets)
    check_inputs(logits, targets, validate_targets)
    u, y = _upcast(logits, targets)
    p = torch.sigmoid(u)
    ce = F.binary_cross_entropy_with_logits(u, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None and alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss.mean()


@register_loss("focal")
class FocalLoss(nn.Module):
    """Module form of ``focal_loss`` (its options, checked once here)."""

    def __init__(
        self, alpha: float | None = 0.25, gamma: float = 2.0, validate_targets: bool = False
    ) -> None:
        super().__init__()
        check_focal(alpha, gamma, validate_targets)
        self.alpha, self.gamma, self.validate_targets = alpha, gamma, validate_targets

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return focal_loss(logits, targets, self.alpha, self.gamma, self.validate_targets)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}"


# --- ASL -----------------------------------------------------------------------------------------


def check_asl(
    gamma_neg: float,
    gamma_pos: float,
    clip: float,
    eps: float,
    disable_torch_grad_focal_loss: bool,
    reduction: str,
    validate_targets: bool,
) -> None:
    check_non_negative("gamma_neg", gamma_neg, "it is a focusing exponent")
    check_non_negative("gamma_pos", gamma_pos, "it is a focusing exponent")
    clip = check_real("clip", clip)
    if not 0 <= clip < 1:
        raise ValueError(f"clip must be in [0, 1), got {clip}: it is the probability margin m")
    check_positive("eps", eps, "it is the lower clamp inside the logs")
    check_choice("reduction", reduction, REDUCTIONS)
    check_bool("disable_torch_grad_focal_loss", disable_torch_grad_focal_loss)
    check_bool("validate_targets", validate_targets)


def asymmetric_loss(
    logits: Tensor,
    targets: Tensor,
    gamma_neg: float = 4.0,
    gamma_pos: float = 0.0,
    clip: float = 0.05,
    eps: float = 1e-8,
    disable_torch_grad_focal_loss: bool = True,
    reduction: str = "mean",
    validate_targets: bool = False,
) -> Tensor:
    """Asymmetric loss (ASL, Ridnik et al. 2021) for multilabel classification::

        p = sigmoid(u),   p_m = max(p - clip, 0)           (probability shifting, negatives only)
        L+ = (1 - p)^gamma_pos * log(max(p, eps))
        L- = p_m^gamma_neg     * log(max(1 - p_m, eps))
        loss = -(y L+ + (1 - y) L-)

    Args:
        logits, targets: ``[batch, num_labels]``; targets in {0, 1}.
        gamma_neg, gamma_pos: focusing exponents (>= 0) of negatives and positives.
        clip: margin ``m`` in [0, 1) of the probability shifting (0 disables it).
        eps: lower clamp of the log arguments.
        disable_torch_grad_focal_loss: treat the focusing weights as constants (computed under a
            scoped ``torch.no_grad()``, as the reference does; global grad mode is never touched).
        reduction: ``"mean"`` over all elements (default: same learning-rate scale as ``bce``) or
            ``"sum"`` (the reference implementation's ``-loss.sum()``; = mean * batch * labels).
    """
    check_asl(
        gamma_neg,
        gamma_pos,
        clip,
        eps,
        disable_torch_grad_focal_loss,
        reduction,
        validate_targets,
    )
    check_inputs(logits, targets, validate_targets)
    u, y = _upcast(logits, targets)
    p = torch.sigmoid(u)
    p_m = (p - clip).clamp(min=0) if clip > 0 else p
    loss = y * torch.log(p.clamp(min=eps)) + (1 - y) * torch.log((1 - p_m).clamp(min=eps))
    if gamma_neg > 0 or gamma_pos > 0:
        with torch.no_grad() if disable_torch_grad_focal_loss else nullcontext():
            base = y * (1 - p) + (1 - y) * p_m  # 1 - p_t
            weight = torch.pow(base, gamma_pos * y + gamma_neg * (1 - y))
        loss = loss * weight
    return -(loss.sum() if reduction == "sum" else loss.mean())


@register_loss("asl")
class AsymmetricLoss(nn.Module):
    """Module form of ``asymmetric_loss`` (its options, checked once here)."""

    def __init__(
        self,
        gamma_neg: float = 4.0,
        gamma_pos: float = 0.0,
        clip: float = 0.05,
        eps: float = 1e-8,
        disable_torch_grad_focal_loss: bool = True,
        reduction: str = "mean",
        validate_targets: bool = False,
    ) -> None:
        super().__init__()
        self.options = {
            "gamma_neg": gamma_neg,
            "gamma_pos": gamma_pos,
            "clip": clip,
            "eps": eps,
            "disable_torch_grad_focal_loss": disable_torch_grad_focal_loss,
            "reduction": reduction,
            "validate_targets": validate_targets,
        }
        check_asl(**self.options)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return asymmetric_loss(logits, targets, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.options.items())


# --- ZLPR ----------------------------------------------------------------------------------------


def check_zlpr(validate_targets: bool) -> None:
    check_bool("validate_targets", validate_targets)


def zlpr_loss(logits: Tensor, targets: Tensor, validate_targets: bool = False) -> Tensor:
    """ZLPR / multilabel categorical cross-entropy (Su 2022; Su et al. 2022), mean over the batch::

        loss_b = log(1 + sum_{j: y_j = 0} exp(u_j)) + log(1 + sum_{j: y_j = 1} exp(-u_j))

    Pushes positives above 0 and negatives below 0 (threshold 0 on the logits), computed
    stably with ``logsumexp`` over ``[masked scores, 0]``.

    Args:
        logits, targets: ``[batch, num_labels]``; targets in {0, 1}.
    """
    check_zlpr(validate_targets)
    check_inputs(logits, targets, validate_targets)
    u, y = _upcast(logits, targets)
    positive = y.bool()
    zeros = u.new_zeros(u.shape[0], 1)
    neg_scores = torch.cat([u.masked_fill(positive, float("-inf")), zeros], dim=1)
    pos_scores = torch.cat([(-u).masked_fill(~positive, float("-inf")), zeros], dim=1)
    return (torch.logsumexp(neg_scores, dim=1) + torch.logsumexp(pos_scores, dim=1)).mean()


@register_loss("zlpr")
class ZLPRLoss(nn.Module):
    """Module form of ``zlpr_loss``."""

    def __init__(self, validate_targets: bool = False) -> None:
        super().__init__()
        check_zlpr(validate_targets)
        self.validate_targets = validate_targets

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return zlpr_loss(logits, targets, self.validate_targets)
