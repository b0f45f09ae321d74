"""Losses against plain reference formulas, gradients, identities, robustness and errors.

The references below are written independently of ``sigmoidf1.losses``: they compute all four
confusion counts directly (no ``2tp + fp + fn = sum S + sum y`` shortcut) in float64 numpy.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from torch import nn

from sigmoidf1.losses import (
    AsymmetricLoss,
    BCELoss,
    FocalLoss,
    SigmoidF1Loss,
    SigmoidFBetaLoss,
    SigmoidMetricLoss,
    SigmoidPrecisionLoss,
    SigmoidRecallLoss,
    UnboundedF1Loss,
    ZLPRLoss,
    asymmetric_loss,
    available_losses,
    bce_loss,
    focal_loss,
    get_loss,
    sigmoid_f1_loss,
    sigmoid_metric_loss,
    soft_counts,
    two_way_loss,
    zlpr_loss,
)
from sigmoidf1.losses.registry import _LOSSES

REGISTERED = available_losses()
FAMILY = [name for name in REGISTERED if isinstance(get_loss(name), SigmoidMetricLoss)]


def preset_function(metric: str, **fixed):
    """The general function with a preset's fixed arguments: what the preset's module must equal."""

    def loss(logits, targets, **options):
        return sigmoid_metric_loss(logits, targets, metric, **fixed, **options)

    return loss


sigmoid_fbeta_loss = preset_function("fbeta")
sigmoid_precision_loss = preset_function("precision")
sigmoid_recall_loss = preset_function("recall")
unbounded_f1_loss = preset_function("fbeta", f_beta=1.0, beta=1.0, eta=0.0)


def make_inputs(batch=16, labels=5, seed=0, dtype=torch.float64, p=0.3, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(batch, labels, generator=g)).to(dtype)
    targets = (torch.rand(batch, labels, generator=g) < p).to(dtype)
    targets[0] = 1  # every label has at least one positive
    return logits, targets


# --- independent references (numpy, float64) -------------------------------------------------


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def ref_counts(logits, targets, beta=1.0, eta=0.0, official=False):
    u = logits.detach().double().numpy()
    y = targets.double().numpy()
    # official (gabriben/metrics-as-losses): 1 / (1 + exp(S * (sigmoid(z) + E))), S = -beta
    s = 1.0 / (1.0 + np.exp(-beta * (sig(u) + eta))) if official else sig(beta * (u + eta))
    tp = (s * y).sum(0)
    fp = (s * (1 - y)).sum(0)
    fn = ((1 - s) * y).sum(0)
    tn = ((1 - s) * (1 - y)).sum(0)
    return tp, fp, fn, tn


REF_METRICS = {
    "f1": lambda tp, fp, fn, tn: 2 * tp / (2 * tp + fn + fp),
    "precision": lambda tp, fp, fn, tn: tp / (tp + fp),
    "recall": lambda tp, fp, fn, tn: tp / (tp + fn),
    "jaccard": lambda tp, fp, fn, tn: tp / (tp + fp + fn),
    "accuracy": lambda tp, fp, fn, tn: (tp + tn) / (tp + fp + fn + tn),
    "specificity": lambda tp, fp, fn, tn: tn / (tn + fp),
    "balanced_accuracy": lambda tp, fp, fn, tn: (tp / (tp + fn) + tn / (tn + fp)) / 2,
}


def ref_fbeta(f):
    return lambda tp, fp, fn, tn: (1 + f**2) * tp / ((1 + f**2) * tp + f**2 * fn + fp)


def ref_family(metric, logits, targets, average="macro", **kw):
    tp, fp, fn, tn = ref_counts(logits, targets, **kw)
    if average == "micro":
        tp, fp, fn, tn = tp.sum(), fp.sum(), fn.sum(), tn.sum()
    return 1.0 - np.mean(metric(tp, fp, fn, tn))


def ref_bce(logits, targets, pos_weight=None):
    u = logits.detach().double().numpy()
    y = targets.double().numpy()
    w = np.ones(u.shape[1]) if pos_weight is None else np.asarray(pos_weight, dtype=float)
    total = 0.0
    for b in range(u.shape[0]):
        for j in range(u.shape[1]):
            p = sig(u[b, j])
            total += -(w[j] * y[b, j] * math.log(p) + (1 - y[b, j]) * math.log(1 - p))
    return total / u.size


def ref_focal(logits, targets, alpha=0.25, gamma=2.0):
    u = logits.detach().double().numpy()
    y = targets.double().numpy()
    p = sig(u)
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    p_t = np.where(y == 1, p, 1 - p)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = np.where(y == 1, alpha, 1 - alpha) * loss
    return loss.mean()


def ref_zlpr(logits, targets):
    u = logits.detach().double().numpy()
    y = targets.double().numpy()
    total = 0.0
    for b in range(u.shape[0]):
        neg = sum(math.exp(u[b, j]) for j in range(u.shape[1]) if y[b, j] == 0)
        pos = sum(math.exp(-u[b, j]) for j in range(u.shape[1]) if y[b, j] == 1)
        total += math.log(1 + neg) + math.log(1 + pos)
    return total / u.shape[0]


class RefASL(nn.Module):
    """Ridnik et al.'s AsymmetricLoss, restated (with a scoped no_grad instead of toggling grad)."""

    def __init__(self, gamma_neg=4, gamma_pos=0, clip=0.05, eps=1e-8, detach=True):
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip, self.eps, self.detach = (
            gamma_neg,
            gamma_pos,
            clip,
            eps,
            detach,
        )

    def forward(self, x, y):
        x_sigmoid = torch.sigmoid(x)
        xs_pos = x_sigmoid
        xs_neg = 1 - x_sigmoid
        if self.clip is not None and self.clip > 0:
            xs_neg = (xs_neg + self.clip).clamp(max=1)
        los_pos = y * torch.log(xs_pos.clamp(min=self.eps))
        los_neg = (1 - y) * torch.log(xs_neg.clamp(min=self.eps))
        loss = los_pos + los_neg
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            with torch.set_grad_enabled(not self.detach and torch.is_grad_enabled()):
                pt = xs_pos * y + xs_neg * (1 - y)
                one_sided_gamma = self.gamma_pos * y + self.gamma_neg * (1 - y)
                one_sided_w = torch.pow(1 - pt, one_sided_gamma)
            loss = loss * one_sided_w
        return -loss.sum()


# --- values against the references -----------------------------------------------------------


@pytest.mark.parametrize("average", ["macro", "micro"])
@pytest.mark.parametrize("beta,eta", [(1.0, 0.0), (3.0, 0.5), (0.5, -1.0)])
def test_family_values_match_reference(average, beta, eta):
    logits, targets = make_inputs(seed=1)
    kw = dict(beta=beta, eta=eta, average=average)
    cases = [
        (sigmoid_f1_loss(logits, targets, **kw), REF_METRICS["f1"]),
        (sigmoid_precision_loss(logits, targets, **kw), REF_METRICS["precision"]),
        (sigmoid_recall_loss(logits, targets, **kw), REF_METRICS["recall"]),
        (sigmoid_fbeta_loss(logits, targets, f_beta=2.0, **kw), ref_fbeta(2.0)),
        (sigmoid_fbeta_loss(logits, targets, f_beta=0.5, **kw), ref_fbeta(0.5)),
    ]
    for name, metric in REF_METRICS.items():
        cases.append((sigmoid_metric_loss(logits, targets, metric=name, **kw), metric))
    for value, metric in cases:
        expected = ref_family(metric, logits, targets, average, beta=beta, eta=eta)
        assert value.shape == ()
        assert value.item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_family_micro_and_macro_differ_on_unbalanced_labels():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(64, 3, generator=g, dtype=torch.float64)
    targets = torch.zeros(64, 3, dtype=torch.float64)
    targets[:, 0] = 1  # a frequent label ...
    targets[:2, 1] = 1  # ... a rare one
    targets[::3, 2] = 1
    macro = sigmoid_f1_loss(logits, targets, average="macro")
    micro = sigmoid_f1_loss(logits, targets, average="micro")
    assert macro.item() == pytest.approx(ref_family(REF_METRICS["f1"], logits, targets, "macro"))
    assert micro.item() == pytest.approx(ref_family(REF_METRICS["f1"], logits, targets, "micro"))
    assert abs(macro.item() - micro.item()) > 0.05


def test_official_compat_matches_the_official_formula():
    logits, targets = make_inputs(seed=2)
    beta, eta = 2.0, 0.3
    # written out as in gabriben/metrics-as-losses VLAP/pytorchLosses.py (sigmoidF1, S=-beta, E=eta)
    y_hat = torch.sigmoid(logits)
    b, c = torch.tensor(-beta, dtype=torch.float64), torch.tensor(eta, dtype=torch.float64)
    s = 1 / (1 + torch.exp(b * (y_hat + c)))
    tp = torch.sum(s * targets, dim=0)
    fp = torch.sum(s * (1 - targets), dim=0)
    fn = torch.sum((1 - s) * targets, dim=0)
    expected = torch.mean(1 - 2 * tp / (2 * tp + fn + fp + 1e-16))
    value = sigmoid_f1_loss(logits, targets, beta=beta, eta=eta, official_compat=True)
    assert value.item() == pytest.approx(expected.item(), rel=1e-9)
    plain = sigmoid_f1_loss(logits, targets, beta=beta, eta=eta)
    assert abs(plain.item() - value.item()) > 1e-3  # the option does change the loss


def test_soft_counts_match_reference_and_identities():
    logits, targets = make_inputs(seed=4)
    counts = soft_counts(logits, targets, beta=2.0, eta=0.1)
    tp, fp, fn, tn = ref_counts(logits, targets, beta=2.0, eta=0.1)
    np.testing.assert_allclose(counts.tp.numpy(), tp, rtol=1e-12)
    np.testing.assert_allclose(counts.fp.numpy(), fp, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(counts.fn.numpy(), fn, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(counts.tn.numpy(), tn, rtol=1e-9, atol=1e-12)
    pooled = counts.pooled()
    assert pooled.tp.item() == pytest.approx(tp.sum())
    assert pooled.tn.item() == pytest.approx(tn.sum())


def test_bce_matches_reference_and_pos_weight():
    logits, targets = make_inputs(seed=5)
    assert bce_loss(logits, targets).item() == pytest.approx(ref_bce(logits, targets), rel=1e-10)
    weight = [1.0, 2.0, 0.5, 3.0, 1.5]
    expected = ref_bce(logits, targets, weight)
    assert bce_loss(logits, targets, weight).item() == pytest.approx(expected, rel=1e-10)
    module = get_loss("bce", pos_weight=weight)
    assert module(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    assert "pos_weight" in dict(module.named_buffers())
    assert "pos_weight" in module.state_dict()


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 2.0), (0.7, 0.0), (0.5, 1.5)])
def test_focal_matches_reference_and_torchvision(alpha, gamma):
    logits, targets = make_inputs(seed=6)
    value = focal_loss(logits, targets, alpha=alpha, gamma=gamma)
    assert value.item() == pytest.approx(ref_focal(logits, targets, alpha, gamma), rel=1e-10)
    ops = pytest.importorskip("torchvision.ops")
    expected = ops.sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="mean")
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    module_value = FocalLoss(alpha=alpha, gamma=gamma)(logits, targets)
    assert module_value.item() == pytest.approx(expected.item(), rel=1e-12)
    if alpha < 0:  # None also disables the weighting
        assert focal_loss(logits, targets, alpha=None, gamma=gamma).item() == value.item()


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize(
    "gamma_neg,gamma_pos,clip", [(4.0, 0.0, 0.05), (2.0, 1.0, 0.0), (3.0, 2.0, 0.2)]
)
def test_asl_matches_reference_values_and_gradients(detach, gamma_neg, gamma_pos, clip):
    logits, targets = make_inputs(seed=7)
    ref = RefASL(gamma_neg, gamma_pos, clip, detach=detach)
    x_ref = logits.clone().requires_grad_()
    expected = ref(x_ref, targets)
    expected.backward()
    x = logits.clone().requires_grad_()
    value = asymmetric_loss(
        x,
        targets,
        gamma_neg,
        gamma_pos,
        clip,
        disable_torch_grad_focal_loss=detach,
        reduction="sum",
    )
    value.backward()
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    mean = asymmetric_loss(
        logits, targets, gamma_neg, gamma_pos, clip, disable_torch_grad_focal_loss=detach
    )
    assert mean.item() == pytest.approx(expected.item() / logits.numel(), rel=1e-12)


def test_asl_never_changes_global_grad_mode():
    logits, targets = make_inputs(seed=8)
    x = logits.clone().requires_grad_()
    loss = AsymmetricLoss()(x, targets)
    assert torch.is_grad_enabled()
    loss.backward()
    assert x.grad is not None
    with torch.no_grad():
        AsymmetricLoss()(x, targets)
        assert not torch.is_grad_enabled()  # the reference would have switched grad back on
    with torch.inference_mode():
        AsymmetricLoss()(logits, targets)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()


def test_zlpr_matches_reference():
    logits, targets = make_inputs(seed=9)
    targets[1] = 0  # a sample without positives
    targets[2] = 1  # a sample without negatives
    assert zlpr_loss(logits, targets).item() == pytest.approx(ref_zlpr(logits, targets), rel=1e-12)
    assert ZLPRLoss()(logits, targets).item() == pytest.approx(ref_zlpr(logits, targets), rel=1e-12)


FUNCTIONAL_FORMS = {
    "asl": asymmetric_loss,
    "bce": bce_loss,
    "focal": focal_loss,
    "zlpr": zlpr_loss,
    "sigmoid_f1": sigmoid_f1_loss,
    "sigmoid_fbeta": sigmoid_fbeta_loss,
    "sigmoid_metric": sigmoid_metric_loss,
    "sigmoid_precision": sigmoid_precision_loss,
    "sigmoid_recall": sigmoid_recall_loss,
    "unbounded_f1": unbounded_f1_loss,
    "two_way": two_way_loss,
}
# The template's own losses take validate_targets; a user's registered loss need not.
OWN = [n for n in REGISTERED if "validate_targets" in inspect.signature(_LOSSES[n]).parameters]


@pytest.mark.parametrize("name", sorted(FUNCTIONAL_FORMS))
def test_each_loss_module_matches_its_function(name):
    logits, targets = make_inputs(seed=10)
    module = get_loss(name)
    assert isinstance(module, nn.Module)
    value = module(logits, targets)
    functional = FUNCTIONAL_FORMS[name]
    options = getattr(module, "options", {})  # sigmoid_metric's registered metric is jaccard
    assert value.item() == functional(logits, targets, **options).item()


# --- gradients -------------------------------------------------------------------------------


def gradcheck(fn, logits, targets):
    x = logits.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda z: fn(z, targets), (x,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("average", ["macro", "micro"])
@pytest.mark.parametrize(
    "loss",
    [
        SigmoidF1Loss(),
        SigmoidF1Loss(beta=2.5, eta=-0.3),
        SigmoidF1Loss(official_compat=True),
        SigmoidF1Loss(beta=3.0, eta=0.2, official_compat=True),
        UnboundedF1Loss(),
        SigmoidPrecisionLoss(beta=1.5),
        SigmoidRecallLoss(eta=0.5),
        SigmoidFBetaLoss(f_beta=2.0),
        SigmoidMetricLoss("jaccard"),
        SigmoidMetricLoss("accuracy"),
        SigmoidMetricLoss("specificity"),
        SigmoidMetricLoss("balanced_accuracy"),
    ],
    ids=repr,
)
def test_family_gradcheck(loss, average):
    logits, targets = make_inputs(batch=6, labels=4, seed=11, scale=1.0)
    gradcheck(type(loss)(**{**loss.options, "average": average}), logits, targets)


@pytest.mark.parametrize(
    "loss",
    [
        BCELoss(),
        BCELoss(pos_weight=[1.0, 2.0, 0.5, 3.0]),
        FocalLoss(),
        FocalLoss(alpha=-1, gamma=0.0),
        AsymmetricLoss(disable_torch_grad_focal_loss=False),
        AsymmetricLoss(gamma_pos=1.0, clip=0.0, disable_torch_grad_focal_loss=False),
        ZLPRLoss(),
    ],
    ids=repr,
)
def test_baseline_gradcheck(loss):
    logits, targets = make_inputs(batch=6, labels=4, seed=12, scale=1.0)
    loss = loss.double()
    gradcheck(loss, logits, targets)


def test_soft_counts_gradcheck_including_targets_and_autograd_equivalence():
    logits, targets = make_inputs(batch=5, labels=3, seed=13, scale=1.0)
    x = logits.clone().requires_grad_()
    t = targets.clone().requires_grad_()
    for official in (False, True):
        assert torch.autograd.gradcheck(
            lambda a, b, official=official: soft_counts(a, b, 2.0, 0.1, official)[:2], (x, t)
        )
    # the fused backward equals autograd on the plain formula
    s = torch.sigmoid(2.0 * (x + 0.1))
    plain = 1 - (2 * (s * targets).sum(0) / (s.sum(0) + targets.sum(0) + 1e-8)).mean()
    (expected,) = torch.autograd.grad(plain, x)
    (got,) = torch.autograd.grad(sigmoid_f1_loss(x, targets, beta=2.0, eta=0.1), x)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)


def test_backward_twice_with_retain_graph_gives_independent_gradients():
    logits, targets = make_inputs(seed=14)
    x = logits.clone().requires_grad_()
    loss = sigmoid_f1_loss(x, targets)
    (first,) = torch.autograd.grad(loss, x, retain_graph=True)
    first_copy = first.clone()
    (second,) = torch.autograd.grad(loss, x, grad_outputs=torch.tensor(2.0, dtype=loss.dtype))
    assert torch.equal(first, first_copy)  # not overwritten by the second backward
    torch.testing.assert_close(second, 2 * first, rtol=1e-14, atol=0)


# --- identities ------------------------------------------------------------------------------


def test_unbounded_f1_is_sigmoid_f1_with_beta_1_eta_0():
    logits, targets = make_inputs(seed=15)
    for average in ("macro", "micro"):
        a = unbounded_f1_loss(logits, targets, average=average)
        b = sigmoid_f1_loss(logits, targets, beta=1.0, eta=0.0, average=average)
        assert a.item() == b.item()
    assert (
        get_loss("unbounded_f1")(logits, targets).item() == sigmoid_f1_loss(logits, targets).item()
    )
    # and it differs from another slope
    assert sigmoid_f1_loss(logits, targets, beta=4.0).item() != pytest.approx(
        unbounded_f1_loss(logits, targets).item()
    )


def test_fbeta_1_and_metric_names_reduce_to_the_specialised_losses():
    logits, targets = make_inputs(seed=16)
    kw = dict(beta=2.0, eta=0.1)
    f1 = sigmoid_f1_loss(logits, targets, **kw).item()
    assert sigmoid_fbeta_loss(logits, targets, f_beta=1.0, **kw).item() == pytest.approx(
        f1, rel=1e-14
    )
    assert sigmoid_metric_loss(logits, targets, "f1", **kw).item() == pytest.approx(f1, rel=1e-14)
    assert sigmoid_metric_loss(logits, targets, "precision", **kw).item() == pytest.approx(
        sigmoid_precision_loss(logits, targets, **kw).item(), rel=1e-14
    )
    assert sigmoid_metric_loss(logits, targets, "recall", **kw).item() == pytest.approx(
        sigmoid_recall_loss(logits, targets, **kw).item(), rel=1e-14
    )


@pytest.mark.parametrize("average", ["macro", "micro"])
def test_callable_metric_gets_tp_fp_fn_tn(average):
    logits, targets = make_inputs(seed=17)
    seen = {}

    def f1(tp, fp, fn, tn):
        seen["shape"] = tuple(tp.shape)
        return 2 * tp / (2 * tp + fp + fn)

    value = sigmoid_metric_loss(logits, targets, metric=f1, average=average)
    assert value.item() == pytest.approx(sigmoid_f1_loss(logits, targets, average=average).item())
    assert seen["shape"] == ((5,) if average == "macro" else ())
    specificity = get_loss("sigmoid_metric", metric=lambda tp, fp, fn, tn: tn / (tn + fp))
    assert specificity(logits, targets).item() == pytest.approx(
        ref_family(REF_METRICS["specificity"], logits, targets)
    )


@pytest.mark.parametrize("name", OWN)
def test_perfect_confident_predictions_give_about_zero_loss(name):
    targets = make_inputs(batch=32, labels=6, seed=18)[1]
    logits = (2 * targets - 1) * 30.0
    kwargs = {"sigmoid_metric": dict(metric="accuracy")}.get(name, {})
    value = get_loss(name, **kwargs)(logits, targets)
    assert 0 <= value.item() < 1e-6
    wrong = get_loss(name, **kwargs)(-logits, targets)
    assert wrong.item() > 0.5


# --- robustness ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["sigmoid_f1", "sigmoid_precision", "sigmoid_recall", "sigmoid_fbeta", "unbounded_f1"]
)
def test_label_without_positives_contributes_one_and_no_gradient(name):
    logits, targets = make_inputs(batch=10, labels=4, seed=20)
    targets[:, 2] = 0
    x = logits.clone().requires_grad_()
    loss = get_loss(name)(x, targets)
    loss.backward()
    assert x.grad[:, 2].abs().max().item() == 0.0
    others = get_loss(name)(logits[:, [0, 1, 3]], targets[:, [0, 1, 3]])
    assert loss.item() == pytest.approx((3 * others.item() + 1.0) / 4, rel=1e-12)
    # also when no mass is predicted for it (the 0/0 case eps guards)
    x = logits.clone()
    x[:, 2] = -1e4
    x.requires_grad_()
    loss = get_loss(name)(x, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert sigmoid_f1_loss(-1e4 * torch.ones(4, 3), torch.zeros(4, 3)).item() == 1.0


def test_soft_counts_are_float32_for_half_logits():
    logits, targets = make_inputs(seed=22, dtype=torch.bfloat16)
    counts = soft_counts(logits, targets)
    assert counts.tp.dtype == counts.pred.dtype == counts.pos.dtype == torch.float32
    assert soft_counts(*make_inputs(seed=22)).tp.dtype == torch.float64


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OWN)
def test_input_errors(name):
    loss = get_loss(name, validate_targets=True)
    logits, targets = make_inputs(batch=4, labels=3)
    with pytest.raises(ValueError, match=r"same shape.*\(4, 3\).*\(4, 2\)"):
        loss(logits, targets[:, :2])
    with pytest.raises(ValueError, match=r"2-D.*3-D"):
        loss(logits[None], targets[None])
    with pytest.raises(ValueError, match=r"binary.*0\.5.*2\.0"):
        bad = targets.clone()
        bad[0, 0], bad[1, 1] = 0.5, 2.0
        loss(logits, bad)
    for value in (2.0, -1.0, 0.999, 1e-30):  # above, below and inside [0, 1]
        with pytest.raises(ValueError, match=r"binary.*" + repr(value)[:4]):
            bad = targets.clone()
            bad[1, 2] = value
            loss(logits, bad)
    with pytest.raises(ValueError, match=r"binary.*nan"):
        bad = targets.clone()
        bad[0, 0] = float("nan")
        loss(logits, bad)
    with pytest.raises(ValueError, match="floating-point"):
        loss(logits.long(), targets)
    with pytest.raises(TypeError, match="tensors"):
        loss(logits.numpy(), targets)
    # by default (validate_targets=False) the value check is skipped; bool and integer targets
    # are accepted
    get_loss(name)(logits, targets * 0.5)
    assert loss(logits, targets.bool()).item() == pytest.approx(loss(logits, targets).item())
    assert loss(logits, targets.long()).item() == pytest.approx(loss(logits, targets).item())


@pytest.mark.parametrize("name", FAMILY)
def test_family_argument_errors_at_construction(name):
    with pytest.raises(
        ValueError, match=r"average must be one of 'macro', 'micro'; got 'weighted'"
    ):
        get_loss(name, average="weighted")
    with pytest.raises(ValueError, match="sync_dist"):
        get_loss(name, sync_dist="yes")
    with pytest.raises(ValueError, match="eps must be > 0"):
        get_loss(name, eps=0.0)
    if name == "unbounded_f1":
        with pytest.raises(ValueError, match=r"unexpected keyword argument\(s\) 'beta'"):
            get_loss(name, beta=2.0)
        return
    with pytest.raises(ValueError, match=r"beta must be > 0, got -1.0: a negative beta inverts"):
        get_loss(name, beta=-1.0)
    with pytest.raises(ValueError, match=r"beta must be > 0, got 0.0.*beta = 0 makes S constant"):
        get_loss(name, beta=0)
    with pytest.raises(ValueError, match="eta must be finite"):
        get_loss(name, eta=float("inf"))
    with pytest.raises(ValueError, match="official_compat must be True or False"):
        get_loss(name, official_compat="no")
    if name in ("sigmoid_fbeta", "sigmoid_metric"):
        with pytest.raises(ValueError, match="f_beta must be > 0"):
            get_loss(name, f_beta=0.0)
    else:
        with pytest.raises(ValueError, match=r"unexpected keyword argument\(s\) 'f_beta'"):
            get_loss(name, f_beta=2.0)


def test_other_argument_errors():
    logits, targets = make_inputs(batch=4, labels=3)
    for bad in (0.0, -2.0):
        with pytest.raises(ValueError, match="f_beta must be > 0"):
            SigmoidFBetaLoss(f_beta=bad)
        with pytest.raises(ValueError, match="f_beta must be > 0"):
            sigmoid_fbeta_loss(logits, targets, f_beta=bad)
    with pytest.raises(ValueError, match="beta must be > 0"):
        sigmoid_f1_loss(logits, targets, beta=-1.0)
    with pytest.raises(ValueError, match="average must be one of"):
        sigmoid_f1_loss(logits, targets, average="samples")
    with pytest.raises(ValueError, match=r"metric must be .* 'accuracy'.*'jaccard'.*got 'dice'"):
        SigmoidMetricLoss(metric="dice")
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        FocalLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        focal_loss(logits, targets, gamma=-0.5)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        FocalLoss(alpha=1.5)
    with pytest.raises(ValueError, match="gamma_neg must be >= 0"):
        AsymmetricLoss(gamma_neg=-1)
    with pytest.raises(ValueError, match="gamma_pos must be >= 0"):
        AsymmetricLoss(gamma_pos=-1)
    for clip in (-0.1, 1.0, 2.0):
        with pytest.raises(ValueError, match=r"clip must be in \[0, 1\)"):
            AsymmetricLoss(clip=clip)
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum'; got 'none'"):
        AsymmetricLoss(reduction="none")
    with pytest.raises(ValueError, match="pos_weight has 2 entries but the logits have 3 labels"):
        BCELoss(pos_weight=[1.0, 2.0])(logits, targets)
    with pytest.raises(ValueError, match="pos_weight must be finite and >= 0"):
        BCELoss(pos_weight=[1.0, -2.0, 1.0])
    with pytest.raises(ValueError, match="pos_weight must be None or a list"):
        BCELoss(pos_weight=["a", 1.0])
    with pytest.raises(ValueError, match="validate_targets must be True or False"):
        ZLPRLoss(validate_targets=None)


def test_sync_dist_true_without_process_group_is_an_error_and_none_is_local():
    logits, targets = make_inputs()
    with pytest.raises(RuntimeError, match="sync_dist=True needs an initialised"):
        sigmoid_f1_loss(logits, targets, sync_dist=True)
    assert (
        sigmoid_f1_loss(logits, targets, sync_dist=None).item()
        == sigmoid_f1_loss(logits, targets, sync_dist=False).item()
    )
