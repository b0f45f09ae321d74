"""Argument and input checks shared by every loss: fail early, say what was wrong.

Constructor arguments are checked when a loss module is built (and again by the functional forms,
which are plain functions that can be called directly); tensor shapes and dtypes on every call,
target values only when asked (``validate_targets``, off by default: it synchronises).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

AVERAGES = ("macro", "micro")
REDUCTIONS = ("mean", "sum")


def check_choice(name: str, value: object, choices: Iterable[str]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_real(name: str, value: object) -> float:
    """Return ``value`` as a float; raise ``ValueError`` for non-numbers, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def check_positive(name: str, value: object, why: str = "") -> float:
    """Return ``value`` as a float; raise ``ValueError`` unless it is finite and > 0."""
    value = check_real(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}" + (f": {why}" if why else ""))
    return value


def check_non_negative(name: str, value: object, why: str = "") -> float:
    """Return ``value`` as a float; raise ``ValueError`` unless it is finite and >= 0."""
    value = check_real(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}" + (f": {why}" if why else ""))
    return value


def check_beta(beta: object) -> float:
    """The slope of ``S(u) = sigmoid(beta * (u + eta))`` must be positive."""
    return check_positive(
        "beta",
        beta,
        "a negative beta inverts the predictions (S decreases as the logit grows) and "
        "beta = 0 makes S constant (0.5 everywhere, no gradient)",
    )


def check_sync_dist(sync_dist: object) -> None:
    if sync_dist is not None and not isinstance(sync_dist, bool):
        raise ValueError(f"sync_dist must be True, False or None (auto), got {sync_dist!r}")


def check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_inputs(logits: Tensor, targets: Tensor, validate_targets: bool = False) -> None:
    """Check ``logits`` and ``targets``: same 2-D shape ``[batch, num_labels]``, float logits,
    and (if ``validate_targets``) targets with values in {0, 1} only.

    Without ``validate_targets`` only metadata is read: no pass over the data and no device-host
    synchronisation. The binary check costs three cheap passes and one sync (``.item()``); it uses
    ``t * (t - 1)``, which is exactly zero iff ``t`` is 0 or 1 (NaN and inf stay non-zero),
    reduced with ``aminmax`` (much faster on CPU than ``.any()`` on a boolean tensor).
    """
    if not isinstance(logits, Tensor) or not isinstance(targets, Tensor):
        raise TypeError(
            f"logits and targets must be tensors, got {type(logits).__name__} "
            f"and {type(targets).__name__}"
        )
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits and targets must have the same shape [batch, num_labels], got logits "
            f"{tuple(logits.shape)} and targets {tuple(targets.shape)}"
        )
    if logits.dim() != 2:
        raise ValueError(
            f"logits and targets must be 2-D [batch, num_labels], got {logits.dim()}-D "
            f"shape {tuple(logits.shape)}"
        )
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if validate_targets and targets.dtype != torch.bool and targets.numel() > 0:
        with torch.no_grad():
            lo, hi = torch.aminmax(targets.sub(1).mul_(targets))
        if lo.item() != 0 or hi.item() != 0:  # NaN != 0 too
            values = torch.unique(targets[(targets != 0) & (targets != 1)].detach())
            more = " ..." if values.numel() > 10 else ""
            raise ValueError(
                f"targets must be binary (0 or 1); found non-binary values "
                f"{values[:10].tolist()}{more} (pass validate_targets=False to skip this check)"
            )
