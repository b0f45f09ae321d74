"""The default tuning strategy is safe for rare labels: it never chases one or two positives.

Each test also runs the exact per-label search on the same data and checks that it does fail, so
that the test can tell a safe strategy from an unsafe one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from sigmoidf1.callbacks.thresholds import ThresholdTuning, f1_scores
from tests.conftest import compose_train

EXACT = {"mode": "per_label", "min_positives": 0, "shrinkage": 0.0, "guard": False}


def rare_label_validation_set() -> tuple[torch.Tensor, torch.Tensor]:
    """500 examples, 3 labels: two frequent, well-separated labels (about 30% positives) and a
    rare label whose only positive scores below ~70% of its negatives (logit -3.5; negatives
    N(-3, 1))."""
    generator = torch.Generator().manual_seed(0)
    n = 500
    targets = torch.zeros(n, 3)
    targets[:, :2] = (torch.rand(n, 2, generator=generator) < 0.3).float()
    logits = torch.randn(n, 3, generator=generator)
    logits[:, :2] += 4 * targets[:, :2] - 2
    logits[:, 2] -= 3
    targets[0, 2], logits[0, 2] = 1.0, -3.5
    return logits, targets


def test_one_positive_label_keeps_the_global_threshold():
    logits, targets = rare_label_validation_set()
    default = torch.logit(ThresholdTuning().tune(logits, targets, fixed=0.5).double())
    pooled = torch.logit(ThresholdTuning(mode="global").tune(logits, targets, fixed=0.5).double())
    exact = torch.logit(ThresholdTuning(**EXACT).tune(logits, targets, fixed=0.5).double())
    rare_scores = logits[:, 2]

    # the exact search catches the one positive by flagging most negatives of the rare label
    assert exact[2] < pooled[2] - 2
    assert (rare_scores >= exact[2]).sum() > 250
    # the default strategy keeps the global threshold there, and predicts (almost) nothing
    assert default[2] == pooled[2]
    assert (rare_scores >= default[2]).sum() <= 5


def test_labels_with_enough_positives_are_shrunk_toward_the_global_threshold():
    generator = torch.Generator().manual_seed(1)
    n = 400
    targets = torch.zeros(n, 3)
    targets[:9, 0] = 1  # one positive short of min_positives=10
    targets[:10, 1] = 1  # exactly min_positives: weight 10 / (10 + 10) = 1/2
    targets[:100, 2] = 1  # weight 100 / (100 + 10)
    logits = torch.randn(n, 3, generator=generator) + 1.5 * targets - 1.5
    callback = ThresholdTuning(
        min_positives=10, shrinkage=10, max_abs_logit=100, anchor="global", guard=False
    )
    default = torch.logit(callback.tune(logits, targets, fixed=0.5).double())
    pooled = torch.logit(
        ThresholdTuning(mode="global", max_abs_logit=100).tune(logits, targets, 0.5)
    )
    own = torch.logit(ThresholdTuning(**EXACT, max_abs_logit=100).tune(logits, targets, 0.5))
    pooled, own = pooled.double(), own.double()
    assert (own - pooled).abs().min() > 0.05  # every label's own optimum differs from the pool's

    expected = torch.stack(
        [pooled[0], (pooled[1] + own[1]) / 2, pooled[2] + 100 / 110 * (own[2] - pooled[2])]
    )
    torch.testing.assert_close(default, expected, rtol=0, atol=1e-5)  # float32 buffer precision


def test_rare_labels_take_the_fixed_threshold_when_it_scores_them_better():
    # 2 frequent labels scored high (negatives near logit 1, positives near 4: the pooled,
    # micro-optimal cut lies between) and 6 rare labels (4 positives each) with positives near
    # logit 0.5 and negatives near -1: at the pooled cut they lose their positives, at the fixed
    # one (0.5, logit 0) they keep them
    generator = torch.Generator().manual_seed(2)
    n = 400
    targets = torch.zeros(n, 8)
    targets[:, :2] = (torch.rand(n, 2, generator=generator) < 0.4).float()
    for label in range(2, 8):
        targets[torch.randperm(n, generator=generator)[:4], label] = 1
    logits = torch.randn(n, 8, generator=generator) * 0.3
    logits[:, :2] += 1 + 3 * targets[:, :2]
    logits[:, 2:] += 1.5 * targets[:, 2:] - 1
    rare = torch.arange(2, 8)

    pooled = ThresholdTuning(mode="global", guard=False).tune(logits, targets, fixed=0.5)
    assert pooled[0] > 0.8  # the pooled cut is far above the rare labels' positives
    for anchor, expected in (("auto", 0.5), ("fixed", 0.5), ("global", pooled[0].item())):
        tuned = ThresholdTuning(anchor=anchor, guard=False).tune(logits, targets, fixed=0.5)
        torch.testing.assert_close(tuned[rare], torch.full((6,), expected), rtol=0, atol=1e-6)
    auto = ThresholdTuning().tune(logits, targets, fixed=0.5)
    with_global = ThresholdTuning(anchor="global", guard=False).tune(logits, targets, fixed=0.5)
    assert f1_scores(logits >= torch.logit(auto), targets)[1] > (
        f1_scores(logits >= torch.logit(with_global), targets)[1] + 0.2
    )


def test_the_guard_keeps_the_fixed_threshold_when_tuning_scores_lower_on_validation():
    logits, targets = rare_label_validation_set()
    unsafe = ThresholdTuning(**EXACT)
    unguarded = unsafe.tune(logits, targets, fixed=0.5)
    fixed = torch.full((3,), 0.5)
    # the exact search's one-positive label costs validation micro-F1 against the fixed threshold
    assert (
        f1_scores(logits >= torch.logit(unguarded), targets)[0] < f1_scores(logits >= 0, targets)[0]
    )
    assert not unsafe.fell_back
    guarded = ThresholdTuning(**{**EXACT, "guard": True})
    assert torch.equal(guarded.tune(logits, targets, fixed=0.5), fixed) and guarded.fell_back
    # where tuning wins on both (the default strategy on the same data), it is kept
    default = ThresholdTuning()
    assert not torch.equal(default.tune(logits, targets, fixed=0.5), fixed)
    assert not default.fell_back


def test_too_few_positives_overall_keep_the_fixed_threshold():
    logits, targets = torch.randn(50, 4), torch.zeros(50, 4)
    targets[:3, 1] = 1
    for mode in ("per_label", "global"):
        tuned = ThresholdTuning(mode=mode).tune(logits, targets, fixed=0.4)
        assert torch.equal(tuned, torch.full((4,), 0.4))


# --- simulation: validation and test drawn from one distribution, most labels rare ----------------
def simulated_split(
    generator: torch.Generator, n: int, prevalence: torch.Tensor, separation: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[n, L]`` of an under-confident model (BCE-like: rare labels scored low)."""
    targets = torch.rand(n, len(prevalence), generator=generator, dtype=torch.float64) < prevalence
    targets = targets.double()
    bias = torch.log(prevalence / (1 - prevalence)) / 2
    noise = torch.randn(n, len(prevalence), generator=generator, dtype=torch.float64)
    return (bias + separation * (targets - 0.5) + noise).float(), targets.float()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tuned_thresholds_never_lose_to_the_fixed_one_on_test_data(seed):
    # 100 labels with Zipf-like rates from 35% down to 0.2%: a handful frequent, most with fewer
    # than 10 positives among 800 validation examples (as Reuters' rare categories)
    generator = torch.Generator().manual_seed(seed)
    labels = 100
    prevalence = (0.35 * torch.arange(1, labels + 1, dtype=torch.float64) ** -1.3).clamp(min=0.002)
    separation = 1.5 + 3 * torch.rand(labels, generator=generator, dtype=torch.float64)
    val_logits, val_targets = simulated_split(generator, 800, prevalence, separation)
    test_logits, test_targets = simulated_split(generator, 4000, prevalence, separation)
    assert (val_targets.sum(0) < 10).sum() > 50

    def test_f1(**strategy) -> tuple[float, float]:
        tuned = ThresholdTuning(**strategy).tune(val_logits, val_targets, fixed=0.5)
        micro, macro = f1_scores(test_logits >= torch.logit(tuned), test_targets)
        return micro.item(), macro.item()

    fixed = test_f1(mode="fixed")
    default = test_f1()
    exact = test_f1(**EXACT)
    assert default[0] >= fixed[0] - 0.01 and default[1] >= fixed[1] - 0.01, (default, fixed)
    # the same data makes the exact per-label search lose micro-F1 (the reported collapse)
    assert exact[0] < fixed[0] - 0.05, (exact, fixed)


# --- config --------------------------------------------------------------------------------------
def test_tuned_config_instantiates_and_its_strategy_keys_reach_the_callback(tmp_path: Path):
    cfg = compose_train(["callbacks=tuned"], tmp_path)
    assert isinstance(instantiate(cfg.callbacks.threshold_tuning), ThresholdTuning)

    cfg = compose_train(
        [
            "callbacks=tuned",
            "callbacks.threshold_tuning.mode=global",
            "callbacks.threshold_tuning.min_positives=3",
            "callbacks.threshold_tuning.shrinkage=0",
        ],
        tmp_path,
    )
    callback = instantiate(cfg.callbacks.threshold_tuning)
    assert (callback.mode, callback.min_positives, callback.shrinkage) == ("global", 3, 0.0)
