"""Two-way multi-label loss (Kobayashi, CVPR 2023, "Two-way Multi-Label Loss").

A smooth "hardest negative above hardest positive" hinge, applied both per sample (over its labels)
and per label (over the samples of the batch). For a set ``A`` of logits ``x`` with positives
``P(A)`` and negatives ``N(A)``::

    l(A) = softplus(Tn * logsumexp_{n in N(A)} (x_n / Tn) + Tp * logsumexp_{p in P(A)} (-x_p / Tp))

i.e. the soft maximum of the negatives minus the soft minimum of the positives; the temperatures
``Tp``, ``Tn`` set how soft these are (-> 0: hardest only; large: all contribute). The loss is::

    loss = mean_{b: sample b has a positive} l(row b) + mean_{j: label j has a positive} l(column j)

Defaults ``Tp = 4``, ``Tn = 1`` are the paper's and its official code's (github.com/tk1980/
TwowayMultiLabelLoss); so are the means over samples / labels with at least one positive. A set
with no negatives has ``logsumexp = -inf``, so contributes ``softplus(-inf) = 0`` (the official
code adds a finite -100 there instead, which leaves a tiny non-zero term).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from sigmoidf1.distributed import all_reduce_sum, should_sync
from sigmoidf1.losses.confusion import compute_dtype
from sigmoidf1.losses.registry import register_loss
from sigmoidf1.losses.validation import check_bool, check_inputs, check_positive, check_sync_dist

# The logsumexp of an empty set, instead of -inf: finite, so that no gradient becomes NaN, and
# small enough that softplus(temperature * EMPTY + ...) is exactly 0, even after a sum over ranks.
EMPTY = -1e30


def two_way_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    temperature_pos: float = 4.0,
    temperature_neg: float = 1.0,
    sync_dist: bool | None = None,
    validate_targets: bool = False,
) -> Tensor:
    """Two-way multi-label loss: sample-wise plus label-wise softplus of log-sum-exps.

    Args:
        logits: ``[batch, num_labels]`` raw scores ``x`` (half precision is computed in float32).
        targets: ``[batch, num_labels]`` in {0, 1}.
        temperature_pos: ``Tp`` > 0 of the soft minimum over positives (paper: 4).
        temperature_neg: ``Tn`` > 0 of the soft maximum over negatives (paper: 1).
        sync_dist: the label-wise term runs over the batch, so under ``torch.distributed`` it
            can use the global batch: ``None`` (auto: when > 1 process runs), ``True``, ``False``.
            When on, the per-rank label-wise logsumexps are combined exactly (a logsumexp of
            logsumexps) and the sample-wise mean is taken over all ranks' samples, with gradients,
            so every rank returns the global loss and DDP-averaged gradients equal one process's
            on the global batch (as for sigmoidF1; see ``sigmoidf1.distributed``).
        validate_targets: check that targets are 0/1 (one device-host sync per call).

    Returns:
        0-d tensor >= 0.
    """
    check_two_way(temperature_pos, temperature_neg, sync_dist, validate_targets)
    check_inputs(logits, targets, validate_targets)
    dtype = compute_dtype(logits)
    x = logits.to(dtype)
    positive = targets > 0
    pos_scores = torch.where(positive, x / -temperature_pos, float("-inf"))
    neg_scores = torch.where(positive, float("-inf"), x / temperature_neg)
    has_pos_sample = positive.any(1).to(dtype)
    pos_per_label = positive.sum(0, dtype=dtype)

    def hinge(pos_lse: Tensor, neg_lse: Tensor) -> Tensor:
        return F.softplus(temperature_neg * neg_lse + temperature_pos * pos_lse)

    sample_terms = hinge(_logsumexp(pos_scores, 1), _logsumexp(neg_scores, 1)) * has_pos_sample
    sample_sums = torch.stack([sample_terms.sum(), has_pos_sample.sum()])
    label_pos_lse, label_neg_lse = _logsumexp(pos_scores, 0), _logsumexp(neg_scores, 0)
    if should_sync(sync_dist):
        sample_sums = all_reduce_sum(sample_sums)
        label_pos_lse, label_neg_lse, pos_per_label = _global_label_lse(
            label_pos_lse, label_neg_lse, pos_per_label
        )
    sample_mean = sample_sums[0] / sample_sums[1].clamp(min=1)
    has_pos_label = (pos_per_label > 0).to(dtype)
    label_terms = hinge(label_pos_lse, label_neg_lse) * has_pos_label
    return sample_mean + label_terms.sum() / has_pos_label.sum().clamp(min=1)


def _logsumexp(scores: Tensor, dim: int) -> Tensor:
    """``logsumexp`` over ``dim`` of a set whose non-members are ``-inf``; about ``EMPTY`` with a
    zero gradient for an empty set (``torch.logsumexp`` gives ``-inf`` and NaN gradients there,
    and masking with a finite value instead slows ``exp`` down several times on CPU)."""
    shift = scores.detach().amax(dim, keepdim=True).clamp(min=EMPTY)
    total = (scores - shift).exp().sum(dim)  # >= 1 unless the set is empty
    return shift.squeeze(dim) + total.clamp(min=torch.finfo(total.dtype).tiny).log()


def _global_label_lse(
    pos_lse: Tensor, neg_lse: Tensor, pos_count: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-label logsumexps over all ranks' samples from each rank's: ``m + log sum_r e^(lse_r-m)``
    with ``m`` the (constant, gradient-free) maximum over ranks; the sum is ``all_reduce_sum``."""
    num_labels = pos_lse.numel()
    local = torch.cat([pos_lse, neg_lse])
    shift = local.detach().clone()
    dist.all_reduce(shift, op=dist.ReduceOp.MAX)
    summed = all_reduce_sum(torch.cat([(local - shift).exp(), pos_count]))
    lse = shift + summed[: 2 * num_labels].log()
    return lse[:num_labels], lse[num_labels:], summed[2 * num_labels :]


def check_two_way(
    temperature_pos: float, temperature_neg: float, sync_dist: bool | None, validate_targets: bool
) -> None:
    check_positive("temperature_pos", temperature_pos, "it divides the positives' logits")
    check_positive("temperature_neg", temperature_neg, "it divides the negatives' logits")
    check_sync_dist(sync_dist)
    check_bool("validate_targets", validate_targets)


@register_loss("two_way")
class TwoWayLoss(nn.Module):
    """Module form of ``two_way_loss`` (its options, checked once here)."""

    def __init__(
        self,
        temperature_pos: float = 4.0,
        temperature_neg: float = 1.0,
        sync_dist: bool | None = None,
        validate_targets: bool = False,
    ) -> None:
        super().__init__()
        self.options = {
            "temperature_pos": temperature_pos,
            "temperature_neg": temperature_neg,
            "sync_dist": sync_dist,
            "validate_targets": validate_targets,
        }
        check_two_way(**self.options)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return two_way_loss(logits, targets, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.options.items())
