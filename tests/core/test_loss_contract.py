"""What every registered loss must do, the template's and yours alike (``register_loss``'s
docstring lists the contracts). Run it after adding a loss::

    pytest tests/core/test_loss_contract.py

Each failure names the contract that was broken and how to meet it. The losses come from
``available_losses()``: nothing here lists them by hand.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sigmoidf1.losses import available_losses, get_loss

REGISTERED = available_losses()


def broken(name: str, contract: str, how: str) -> str:
    """The message of a failed contract: which loss, which contract, how to meet it."""
    return f"loss {name!r} breaks the contract '{contract}': {how}"


def inputs(batch: int = 16, labels: int = 5, seed: int = 0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    logits = (2 * torch.randn(batch, labels, generator=generator)).to(dtype)
    targets = (torch.rand(batch, labels, generator=generator) < 0.3).to(dtype)
    targets[0] = 1  # every label has a positive
    return logits, targets


def build(name: str) -> nn.Module:
    try:
        loss = get_loss(name)
    except (TypeError, ValueError) as error:
        pytest.fail(
            broken(
                name,
                "builds with no arguments",
                f"get_loss({name!r}) raised {error!r}; give every constructor argument a default "
                "(configs/loss/<name>.yaml may set other values)",
            )
        )
    return loss


def loss_and_gradient(loss: nn.Module, logits: torch.Tensor, targets: torch.Tensor):
    x = logits.clone().requires_grad_()
    value = loss(x, targets)
    value.backward()
    return value, x.grad


@pytest.mark.parametrize("name", REGISTERED)
def test_a_finite_scalar_with_finite_gradients(name):
    logits, targets = inputs()
    value, gradient = loss_and_gradient(build(name), logits, targets)
    assert isinstance(value, torch.Tensor) and value.shape == (), broken(
        name,
        "returns a 0-d tensor",
        f"it returned {type(value).__name__} of shape {getattr(value, 'shape', None)}; reduce "
        "over the batch and the labels (a mean or a sum)",
    )
    assert torch.isfinite(value), broken(name, "is finite", f"it returned {value.item()}")
    assert gradient is not None and torch.isfinite(gradient).all(), broken(
        name,
        "has a finite gradient with respect to the logits",
        "compute from the logits with differentiable operations (no .item(), no detach)",
    )


@pytest.mark.parametrize("name", REGISTERED)
def test_finite_at_extreme_logits_and_without_positives(name):
    logits, targets = inputs(seed=1)
    extreme = torch.where(logits > 0, 1e4, -1e4)
    extreme[::2] *= -1  # confident right and confident wrong predictions
    cases = {
        "logits of +-1e4": (extreme, targets),
        "a batch without positives": (logits, 0 * targets),
    }
    for case, (x, y) in cases.items():
        value, gradient = loss_and_gradient(build(name), x, y)
        assert torch.isfinite(value) and torch.isfinite(gradient).all(), broken(
            name,
            f"is finite for {case}",
            f"got {value.item()}; use log-sigmoid / logsumexp forms and guard 0/0 with an eps",
        )


@pytest.mark.parametrize("name", REGISTERED)
def test_right_predictions_score_lower_than_wrong_ones(name):
    _, targets = inputs(batch=32, labels=6, seed=2)
    right = (2 * targets - 1) * 30.0
    loss = build(name)
    lower, higher = loss(right, targets).item(), loss(-right, targets).item()
    assert lower < higher, broken(
        name,
        "scores confident right predictions lower than confident wrong ones",
        f"{lower} for right vs {higher} for wrong: is the sign, or the target convention "
        "(1 = label present), reversed?",
    )


@pytest.mark.parametrize("name", REGISTERED)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_float32_under_autocast(name, dtype):
    torch.manual_seed(3)
    model = nn.Linear(8, 5)
    features = torch.randn(16, 8)
    _, targets = inputs(seed=3)
    loss = build(name)
    with torch.autocast("cpu", dtype=dtype):
        logits = model(features)
        value = loss(logits, targets)
    assert logits.dtype == dtype  # what the model gives the loss under trainer.precision=*-mixed
    how = (
        "cast the logits (and targets) to float32 first, `logits = logits.float()`, and compute "
        "the loss from them: sums over a batch in half precision lose digits"
    )
    assert value.dtype == torch.float32, broken(
        name, "computes in float32 under autocast", f"it returned {value.dtype}; {how}"
    )
    expected = loss(logits.detach().float(), targets).item()
    assert value.item() == pytest.approx(expected, rel=1e-5), broken(
        name,
        "computes in float32 under autocast",
        f"{value.item()} from {dtype} logits vs {expected} from the same logits in float32; {how}",
    )
