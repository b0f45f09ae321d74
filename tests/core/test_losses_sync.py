"""No device-host synchronisation in any registered loss's default forward and backward.

On a GPU, ``.item()``, ``bool(tensor)``, ``float(tensor)`` and ``if tensor:`` wait for the device to
finish every queued kernel. Here they are made to raise while each loss runs with its defaults
(``validate_targets=False``), so any such call in the default path fails the test.
"""

from __future__ import annotations

import pytest
import torch

from sigmoidf1.losses import available_losses, get_loss


def refuse(*args, **kwargs):
    raise AssertionError("device-host synchronisation in the default loss path")


@pytest.fixture
def no_sync(monkeypatch):
    for name in ("item", "__bool__", "__float__", "__int__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, refuse)


@pytest.mark.parametrize("name", available_losses())
def test_default_forward_and_backward_never_synchronise(name, no_sync):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=generator).requires_grad_()
    targets = (torch.rand(8, 5, generator=generator) < 0.3).float()
    targets[:, 4] = 0  # a label without positives
    loss = get_loss(name)
    for _ in range(2):
        loss(logits, targets).backward()
    assert logits.grad is not None


def test_the_guard_catches_a_sync(no_sync):
    """The patched methods do fire: the target check (opt-in) synchronises and is caught."""
    logits, targets = torch.randn(4, 3), torch.ones(4, 3)
    with pytest.raises(AssertionError, match="synchronisation"):
        get_loss("sigmoid_f1", validate_targets=True)(logits, targets)
    with pytest.raises(AssertionError, match="synchronisation"):
        bool(logits.sum() > 0)
