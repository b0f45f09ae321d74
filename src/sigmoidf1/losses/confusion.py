"""Soft confusion counts of a batch and the metrics built from them (Bénédict et al. 2022).

With ``S = sigmoid(beta * (u + eta))`` applied to the logits ``u`` and binary targets ``y``
(both ``[batch, num_labels]``), the per-label soft counts over the batch are::

    tp = sum_b S * y          fp = sum_b S * (1 - y)
    fn = sum_b (1 - S) * y    tn = sum_b (1 - S) * (1 - y)

Only three of them need a pass over the batch: ``tp``, ``pred = sum_b S = tp + fp`` and
``pos = sum_b y = tp + fn``; with ``n`` the number of samples, ``fp = pred - tp``,
``fn = pos - tp`` and ``tn = n - pred - pos + tp``. In particular ``2tp + fp + fn = pred + pos``.

Counts are always computed in float32 or wider (float16/bfloat16 logits, e.g. under autocast, are
cast up), so sums over large batches stay accurate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from sigmoidf1.distributed import all_reduce_sum, should_sync


class SoftCounts(NamedTuple):
    """Soft confusion counts; ``[num_labels]`` tensors per label, or 0-d after ``pooled()``.

    ``tp = sum S*y``, ``pred = sum S`` (= tp + fp), ``pos = sum y`` (= tp + fn),
    ``n`` = number of samples counted per label (a float, or a 0-d tensor after ``all_reduce``;
    ``n * num_labels`` once pooled).
    """

    tp: Tensor
    pred: Tensor
    pos: Tensor
    n: float | Tensor

    @property
    def fp(self) -> Tensor:
        return self.pred - self.tp

    @property
    def fn(self) -> Tensor:
        return self.pos - self.tp

    @property
    def tn(self) -> Tensor:
        return self.n - self.pred - self.pos + self.tp

    def pooled(self) -> SoftCounts:
        """Sum the counts over labels (micro averaging)."""
        return SoftCounts(self.tp.sum(), self.pred.sum(), self.pos.sum(), self.n * self.tp.numel())

    def all_reduce(self) -> SoftCounts:
        """Sum the counts over all ranks, with gradients (see ``sigmoidf1.distributed``)."""
        num_labels = self.tp.numel()
        n = torch.as_tensor(self.n, dtype=self.tp.dtype, device=self.tp.device).reshape(1)
        packed = torch.cat([self.tp, self.pred, self.pos, n])
        tp, pred, pos, n = all_reduce_sum(packed).split([num_labels, num_labels, num_labels, 1])
        return SoftCounts(tp, pred, pos, n.reshape(()))


def compute_dtype(logits: Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 logits, float64 for float64."""
    return torch.promote_types(logits.dtype, torch.float32)


class _SoftCountsFn(torch.autograd.Function):
    """``(tp, pred) = ((S * y).sum(0), S.sum(0))`` with a fused, allocation-saving backward.

    Autograd on the plain expressions would materialise ``grad_tp * y``, add ``grad_pred`` in a
    second pass and apply the sigmoid derivative in a third, allocating a new ``[batch, labels]``
    tensor each time. Here the backward is one ``addcmul`` and one in-place ``sigmoid_backward``::

        dL/du = beta * S * (1 - S) * (grad_tp * y + grad_pred)

    written into the forward's ``S * y`` scratch tensor (no longer needed once ``tp`` is summed).
    The result equals autograd's on the plain expressions (tested with ``gradcheck``); double
    backward is not supported.
    """

    @staticmethod
    def forward(
        ctx, logits: Tensor, targets: Tensor, beta: float, eta: float, official_compat: bool
    ) -> tuple[Tensor, Tensor]:
        probs = torch.sigmoid(logits) if official_compat else None
        z = probs if official_compat else logits
        if beta != 1.0 or eta != 0.0:
            z = (z + eta) * beta
        s = torch.sigmoid(z)
        scratch = s * targets
        tp = scratch.sum(0)
        pred = s.sum(0)
        ctx.save_for_backward(s, targets, probs)
        ctx.scratch = scratch
        ctx.beta = beta
        return tp, pred

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_tp: Tensor, grad_pred: Tensor):
        s, targets, probs = ctx.saved_tensors
        grad_logits = grad_targets = None
        if ctx.needs_input_grad[1]:
            grad_targets = s * grad_tp
        if ctx.needs_input_grad[0]:
            # take the scratch buffer at most once: a second backward (retain_graph=True) must
            # not overwrite the gradient handed out by the first
            grad_logits, ctx.scratch = ctx.scratch, None
            if grad_logits is None:
                grad_logits = torch.empty_like(s)
            # dL/dS = grad_tp * y + grad_pred, with beta (from dz/du) folded into the vectors
            torch.addcmul(grad_pred * ctx.beta, targets, grad_tp * ctx.beta, out=grad_logits)
            # times S * (1 - S), in place
            torch.ops.aten.sigmoid_backward.grad_input(grad_logits, s, grad_input=grad_logits)
            if probs is not None:  # official_compat: z = sigmoid(u), chain through it too
                torch.ops.aten.sigmoid_backward.grad_input(
                    grad_logits, probs, grad_input=grad_logits
                )
        return grad_logits, grad_targets, None, None, None


def soft_counts(
    logits: Tensor,
    targets: Tensor,
    beta: float = 1.0,
    eta: float = 0.0,
    official_compat: bool = False,
    sync_dist: bool | None = False,
) -> SoftCounts:
    """Soft per-label confusion counts of a batch.

    Args:
        logits: ``[batch, num_labels]`` raw scores ``u`` (any float dtype; counted in >= float32).
        targets: ``[batch, num_labels]`` with values in {0, 1} (not checked here).
        beta, eta: ``S(u) = sigmoid(beta * (u + eta))``.
        official_compat: apply ``S`` to ``sigmoid(u)`` instead of ``u`` (as the authors' code
            ``gabriben/metrics-as-losses`` does): ``S = sigmoid(beta * (sigmoid(u) + eta))``.
        sync_dist: sum the counts over ranks (``None`` = auto); see ``sigmoidf1.distributed``.

    Returns:
        ``SoftCounts(tp, pred, pos, n)`` with ``[num_labels]`` tensors and ``n`` the batch size
        (summed over ranks when syncing).
    """
    dtype = compute_dtype(logits)
    logits = logits.to(dtype)
    targets = targets.to(dtype)
    tp, pred = _SoftCountsFn.apply(logits, targets, float(beta), float(eta), bool(official_compat))
    pos = targets.sum(0)
    counts = SoftCounts(tp, pred, pos, float(logits.shape[0]))
    if should_sync(sync_dist):
        counts = counts.all_reduce()
    return counts


# --- soft metrics from counts ---------------------------------------------------------------------
# Each takes SoftCounts (per label, or pooled) and eps (added to denominators that can vanish);
# soft_fbeta also takes f_beta. Larger is better; each is in [0, 1].


def soft_f1(c: SoftCounts, eps: float) -> Tensor:
    """``2tp / (2tp + fp + fn) = 2tp / (pred + pos)``."""
    return 2 * c.tp / (c.pred + c.pos + eps)


def soft_fbeta(c: SoftCounts, eps: float, f_beta: float = 1.0) -> Tensor:
    """``(1+f^2) tp / ((1+f^2) tp + f^2 fn + fp) = (1+f^2) tp / (f^2 pos + pred)``."""
    f2 = f_beta * f_beta
    return (1 + f2) * c.tp / (f2 * c.pos + c.pred + eps)


def soft_precision(c: SoftCounts, eps: float) -> Tensor:
    """``tp / (tp + fp) = tp / pred``."""
    return c.tp / (c.pred + eps)


def soft_recall(c: SoftCounts, eps: float) -> Tensor:
    """``tp / (tp + fn) = tp / pos``."""
    return c.tp / (c.pos + eps)


def soft_jaccard(c: SoftCounts, eps: float) -> Tensor:
    """``tp / (tp + fp + fn) = tp / (pred + pos - tp)``."""
    return c.tp / (c.pred + c.pos - c.tp + eps)


def soft_accuracy(c: SoftCounts, eps: float) -> Tensor:
    """``(tp + tn) / n``."""
    return (c.tp + c.tn) / (c.n + eps)


def soft_specificity(c: SoftCounts, eps: float) -> Tensor:
    """``tn / (tn + fp) = tn / (n - pos)``."""
    return c.tn / (c.n - c.pos + eps)


def soft_balanced_accuracy(c: SoftCounts, eps: float) -> Tensor:
    """``(recall + specificity) / 2``."""
    return (soft_recall(c, eps) + soft_specificity(c, eps)) / 2


SOFT_METRICS: dict[str, Callable[..., Tensor]] = {
    "f1": soft_f1,
    "fbeta": soft_fbeta,
    "precision": soft_precision,
    "recall": soft_recall,
    "jaccard": soft_jaccard,
    "accuracy": soft_accuracy,
    "specificity": soft_specificity,
    "balanced_accuracy": soft_balanced_accuracy,
}
