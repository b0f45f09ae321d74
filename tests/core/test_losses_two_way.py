"""Two-way multi-label loss against a direct reference, on empty rows/columns, and its gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sigmoidf1.losses import TwoWayLoss, get_loss, two_way_loss


def ref_two_way(logits, targets, tp=4.0, tn=1.0):
    """The paper's formula with plain loops; sets without positives are left out of the means,
    a set without negatives contributes softplus(-inf) = 0."""
    x = logits.detach().double().numpy()
    y = targets.double().numpy()

    def term(xs, ys):
        pos = [v for v, t in zip(xs, ys, strict=True) if t == 1]
        neg = [v for v, t in zip(xs, ys, strict=True) if t == 0]
        if not pos:
            return None
        if not neg:
            return 0.0
        hard_neg = tn * math.log(sum(math.exp(v / tn) for v in neg))
        hard_pos = tp * math.log(sum(math.exp(-v / tp) for v in pos))
        return math.log1p(math.exp(hard_neg + hard_pos))

    def mean(terms):
        terms = [t for t in terms if t is not None]
        return sum(terms) / len(terms) if terms else 0.0

    return mean(term(x[b], y[b]) for b in range(x.shape[0])) + mean(
        term(x[:, j], y[:, j]) for j in range(x.shape[1])
    )


def official_form(x, y, tp=4.0, tn=1.0):
    """The authors' published code, restated (a finite -100 mask, boolean-indexed means)."""
    class_mask, sample_mask = (y > 0).any(0), (y > 0).any(1)
    pmask = y.masked_fill(y <= 0, -100).masked_fill(y > 0, 0.0)
    nmask = y.masked_fill(y != 0, -100).masked_fill(y == 0, 0.0)
    plogit_class = torch.logsumexp(-x / tp + pmask, dim=0).mul(tp)[class_mask]
    plogit_sample = torch.logsumexp(-x / tp + pmask, dim=1).mul(tp)[sample_mask]
    nlogit_class = torch.logsumexp(x / tn + nmask, dim=0).mul(tn)[class_mask]
    nlogit_sample = torch.logsumexp(x / tn + nmask, dim=1).mul(tn)[sample_mask]
    softplus = torch.nn.functional.softplus
    return (
        softplus(nlogit_class + plogit_class).mean()
        + softplus(nlogit_sample + plogit_sample).mean()
    )


def make_inputs(batch=9, labels=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(batch, labels, generator=g, dtype=torch.float64)
    targets = (torch.rand(batch, labels, generator=g) < 0.4).double()
    return logits, targets


@pytest.mark.parametrize("tp,tn", [(4.0, 1.0), (1.0, 1.0), (0.5, 3.0)])
def test_matches_the_reference_formula(tp, tn):
    logits, targets = make_inputs(seed=1)
    targets[0] = 1  # a sample with no negatives
    targets[1] = 0  # a sample with no positives
    targets[:, 2] = 0  # a label with no positives
    targets[2:, 3] = 1  # a label with one negative only
    value = two_way_loss(logits, targets, temperature_pos=tp, temperature_neg=tn)
    assert value.shape == ()
    assert value.item() == pytest.approx(ref_two_way(logits, targets, tp, tn), rel=1e-12)
    module = TwoWayLoss(temperature_pos=tp, temperature_neg=tn)
    assert module(logits, targets).item() == value.item()


def test_matches_the_official_code_when_every_set_has_both_kinds():
    logits, targets = make_inputs(seed=2)
    targets[:, 0], targets[:, 1] = 1, 0  # every row has a positive and a negative ...
    targets[0, 1], targets[1, 0] = 1, 0  # ... and so has every column
    targets[0, 2:], targets[1, 2:] = 0, 1
    value = get_loss("two_way")(logits, targets)
    assert value.item() == pytest.approx(official_form(logits, targets).item(), rel=1e-12)


def test_empty_rows_and_columns_give_finite_values_and_gradients():
    logits, targets = make_inputs(seed=3)
    targets[:, 1] = 0  # a label without positives
    targets[:, 4] = 1  # a label without negatives
    targets[3] = 0  # a sample without positives
    targets[5] = 1  # a sample without negatives
    for scale in (1.0, 1e4):  # also confident, extreme logits
        x = (scale * logits).requires_grad_()
        loss = two_way_loss(x, targets)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    # the empty label and the empty sample get no gradient from the term they are alone in
    x = logits.clone().requires_grad_()
    two_way_loss(x, torch.zeros_like(targets)).backward()
    assert x.grad.abs().max().item() == 0.0
    assert two_way_loss(logits, torch.zeros_like(targets)).item() == 0.0
    assert two_way_loss(logits, torch.ones_like(targets)).item() == 0.0


def test_gradcheck():
    logits, targets = make_inputs(batch=5, labels=4, seed=4)
    targets[0] = 1
    x = logits.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda z: two_way_loss(z, targets), (x,), eps=1e-6)


def test_half_precision_is_computed_in_float32():
    logits, targets = make_inputs(seed=5)
    value = two_way_loss(logits.bfloat16(), targets)
    assert value.dtype == torch.float32
    expected = two_way_loss(logits.bfloat16().float(), targets)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_argument_errors():
    with pytest.raises(ValueError, match="temperature_pos must be > 0"):
        TwoWayLoss(temperature_pos=0.0)
    with pytest.raises(ValueError, match="temperature_neg must be > 0"):
        get_loss("two_way", temperature_neg=-1.0)
    with pytest.raises(ValueError, match="sync_dist"):
        TwoWayLoss(sync_dist="no")
    logits, targets = make_inputs()
    with pytest.raises(ValueError, match="temperature_pos must be finite"):
        two_way_loss(logits, targets, temperature_pos=float("inf"))
    assert np.isfinite(two_way_loss(logits, targets, temperature_pos=1e6).item())
