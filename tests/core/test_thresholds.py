"""The threshold search of the core (``sigmoidf1.thresholds``): the exact F1 searches against brute
force, and the safe default strategy, which never chases one or two positives.

Each safety test also runs the exact per-label search on the same data and checks that it does
fail, so that the test can tell a safe strategy from an unsafe one. Torch only.
"""

from __future__ import annotations

import pytest
import torch

from sigmoidf1.metrics import f1_scores
from sigmoidf1.thresholds import best_f1_thresholds, best_micro_f1_threshold, tune_thresholds

# the exact per-label search, without the safeguards of the default strategy
EXACT = {"mode": "per_label", "min_positives": 0, "shrinkage": 0.0, "guard": False}


def tune(logits: torch.Tensor, targets: torch.Tensor, fixed: float = 0.5, **strategy):
    """The probability thresholds ``tune_thresholds`` chooses."""
    return tune_thresholds(logits, targets, fixed, **strategy).thresholds


def brute_force_f1(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Best F1 of ``scores >= c`` over every candidate c (each distinct score, and above all)."""
    best = 0.0
    for c in [*torch.unique(scores).tolist(), float("inf")]:
        predicted = scores >= c
        tp = (predicted & (targets == 1)).sum().item()
        denominator = predicted.sum().item() + targets.sum().item()
        best = max(best, 2 * tp / denominator if denominator else 0.0)
    return best


def tied_scores(seed: int, n: int = 60, labels: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Rounded scores (many ties), label rates from 2% to 60%, label 3 without positives."""
    generator = torch.Generator().manual_seed(seed)
    scores = (torch.randn(n, labels, generator=generator) * 2).round(decimals=1)
    rates = torch.linspace(0.02, 0.6, labels)
    targets = (torch.rand(n, labels, generator=generator) < rates).float()
    targets[:, 3] = 0
    return scores, targets


def f1_at(scores: torch.Tensor, targets: torch.Tensor, threshold: float) -> float:
    predicted = scores >= threshold
    tp = (predicted & (targets == 1)).sum().item()
    denominator = predicted.sum().item() + targets.sum().item()
    return 2 * tp / denominator if denominator else 0.0


# --- the search ---------------------------------------------------------------------------------
def test_hand_built_cases():
    # top 3 predicted: F1 = 2*2 / (3 + 2) = 0.8 beats top 1 (0.667); cut between 0.7 and 0.1
    scores = torch.tensor([[0.9], [0.8], [0.7], [0.1]])
    targets = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    thresholds, f1, has_positive = best_f1_thresholds(scores, targets)
    assert thresholds.item() == pytest.approx(0.4) and f1.item() == pytest.approx(0.8)
    assert has_positive.item()

    # tied scores go together: the positive cannot be split from the tied negative
    scores = torch.tensor([[1.0], [1.0], [0.0]])
    targets = torch.tensor([[1.0], [0.0], [0.0]])
    thresholds, f1, _ = best_f1_thresholds(scores, targets)
    assert f1.item() == pytest.approx(2 / 3) and thresholds.item() == pytest.approx(0.5)

    # everything positive: the threshold falls below the lowest score
    scores = torch.tensor([[2.0], [-3.0]])
    thresholds, f1, _ = best_f1_thresholds(scores, torch.ones(2, 1))
    assert f1.item() == 1.0 and thresholds.item() < -3.0


def test_label_without_positives_keeps_the_fallback():
    scores = torch.randn(20, 3)
    targets = torch.zeros(20, 3)
    targets[:5, 0] = 1
    thresholds, f1, has_positive = best_f1_thresholds(scores, targets, fallback=0.25)
    assert has_positive.tolist() == [True, False, False]
    assert thresholds[1:].tolist() == [0.25, 0.25] and f1[1:].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("seed", range(8))
def test_search_matches_brute_force(seed):
    scores, targets = tied_scores(seed)
    thresholds, f1, has_positive = best_f1_thresholds(scores, targets)
    for label in range(scores.shape[1]):
        expected = brute_force_f1(scores[:, label], targets[:, label])
        assert f1[label].item() == pytest.approx(expected, abs=1e-12)
        # the returned threshold achieves it
        achieved = f1_at(scores[:, label], targets[:, label], thresholds[label].item())
        assert achieved == pytest.approx(expected, abs=1e-12)
    assert has_positive[3].item() is False


@pytest.mark.parametrize("chunk_labels", [1, 3, 7, 100])
def test_chunked_search_equals_unchunked_exactly(chunk_labels):
    scores, targets = tied_scores(0, n=80, labels=23)
    whole = best_f1_thresholds(scores, targets, fallback=0.3, chunk_labels=None)
    chunked = best_f1_thresholds(scores, targets, fallback=0.3, chunk_labels=chunk_labels)
    for expected, got in zip(whole, chunked, strict=True):
        assert torch.equal(expected, got)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("chunk_labels", [1, 2, None])
def test_micro_search_equals_the_search_on_pooled_scores(seed, chunk_labels):
    scores, targets = tied_scores(seed, n=40, labels=5)
    if seed == 5:  # every score positive-worthy: the threshold falls below the lowest score
        targets = torch.ones_like(targets)
    expected, expected_f1, _ = best_f1_thresholds(
        scores.reshape(-1, 1), targets.reshape(-1, 1), chunk_labels=None
    )
    threshold, f1, positives = best_micro_f1_threshold(scores, targets, chunk_labels=chunk_labels)
    assert torch.equal(threshold, expected[0]) and torch.equal(f1, expected_f1[0])
    assert positives.item() == targets.sum().item()
    assert f1.item() == pytest.approx(
        brute_force_f1(scores.flatten(), targets.flatten()), abs=1e-12
    )


def test_micro_search_without_positives_keeps_the_fallback():
    threshold, f1, positives = best_micro_f1_threshold(
        torch.randn(6, 3), torch.zeros(6, 3), fallback=0.25
    )
    assert (threshold.item(), f1.item(), positives.item()) == (0.25, 0.0, 0)


def test_fixed_mode_keeps_the_model_threshold():
    scores, targets = tied_scores(0)
    tuned = tune(scores, targets, 0.3, mode="fixed")
    assert torch.equal(tuned, torch.full((scores.shape[1],), 0.3))


def test_global_mode_maximises_pooled_micro_f1():
    generator = torch.Generator().manual_seed(3)
    logits = (torch.randn(50, 5, generator=generator) * 3).round(decimals=1) - 1
    targets = (torch.rand(50, 5, generator=generator) < 0.3).float()
    tuned = tune(logits, targets, 0.5, mode="global", max_abs_logit=100)
    assert torch.all(tuned == tuned[0])
    micro, _ = f1_scores(logits >= torch.logit(tuned), targets)
    assert micro.item() == pytest.approx(
        brute_force_f1(logits.flatten(), targets.flatten()), abs=1e-6
    )


def test_per_label_tuning_beats_or_equals_the_fixed_threshold_on_its_data():
    generator = torch.Generator().manual_seed(1)
    targets = (torch.rand(200, 6, generator=generator) < 0.2).float()
    logits = 2 * targets + torch.randn(200, 6, generator=generator) - 2.5  # biased low
    tuned = tune(logits, targets, 0.5, **EXACT)
    _, macro_fixed = f1_scores(logits >= 0, targets)
    _, macro_tuned = f1_scores(logits >= torch.logit(tuned), targets)
    assert macro_tuned > macro_fixed + 0.1


def test_bad_inputs_fail_with_a_message():
    with pytest.raises(ValueError, match="mode must be one of"):
        tune(*tied_scores(0), mode="per_class")
    with pytest.raises(ValueError, match="min_positives"):
        tune(*tied_scores(0), min_positives=-1)
    with pytest.raises(ValueError, match="shrinkage"):
        tune(*tied_scores(0), shrinkage=-0.5)
    with pytest.raises(ValueError, match="chunk_labels"):
        tune(*tied_scores(0), chunk_labels=0)
    with pytest.raises(ValueError, match="chunk_labels"):
        best_f1_thresholds(torch.zeros(4, 2), torch.zeros(4, 2), chunk_labels=0)
    with pytest.raises(ValueError, match=r"\[N, L\]"):
        best_f1_thresholds(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="NaN"):
        best_f1_thresholds(torch.tensor([[float("nan")]]), torch.ones(1, 1))
    with pytest.raises(ValueError, match="no examples"):
        best_f1_thresholds(torch.zeros(0, 2), torch.zeros(0, 2))


# --- the safe strategy: it never chases one or two positives ------------------------------------


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
    default = torch.logit(tune(logits, targets, 0.5).double())
    pooled = torch.logit(tune(logits, targets, 0.5, mode="global").double())
    exact = torch.logit(tune(logits, targets, 0.5, **EXACT).double())
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
    shrunk = tune(
        logits,
        targets,
        0.5,
        min_positives=10,
        shrinkage=10,
        max_abs_logit=100,
        anchor="global",
        guard=False,
    )
    default = torch.logit(shrunk.double())
    pooled = torch.logit(tune(logits, targets, 0.5, mode="global", max_abs_logit=100))
    own = torch.logit(tune(logits, targets, 0.5, **EXACT, max_abs_logit=100))
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

    pooled = tune(logits, targets, 0.5, mode="global", guard=False)
    assert pooled[0] > 0.8  # the pooled cut is far above the rare labels' positives
    for anchor, expected in (("auto", 0.5), ("fixed", 0.5), ("global", pooled[0].item())):
        tuned = tune(logits, targets, 0.5, anchor=anchor, guard=False)
        torch.testing.assert_close(tuned[rare], torch.full((6,), expected), rtol=0, atol=1e-6)
    auto = tune(logits, targets, 0.5)
    with_global = tune(logits, targets, 0.5, anchor="global", guard=False)
    assert f1_scores(logits >= torch.logit(auto), targets)[1] > (
        f1_scores(logits >= torch.logit(with_global), targets)[1] + 0.2
    )


def test_the_guard_keeps_the_fixed_threshold_when_tuning_scores_lower_on_validation():
    logits, targets = rare_label_validation_set()
    unsafe = tune_thresholds(logits, targets, 0.5, **EXACT)
    unguarded = unsafe.thresholds
    fixed = torch.full((3,), 0.5)
    # the exact search's one-positive label costs validation micro-F1 against the fixed threshold
    assert (
        f1_scores(logits >= torch.logit(unguarded), targets)[0] < f1_scores(logits >= 0, targets)[0]
    )
    assert not unsafe.fell_back
    guarded = tune_thresholds(logits, targets, 0.5, **{**EXACT, "guard": True})
    assert torch.equal(guarded.thresholds, fixed) and guarded.fell_back
    # where tuning wins on both (the default strategy on the same data), it is kept
    default = tune_thresholds(logits, targets, 0.5)
    assert not torch.equal(default.thresholds, fixed)
    assert not default.fell_back


def test_too_few_positives_overall_keep_the_fixed_threshold():
    logits, targets = torch.randn(50, 4), torch.zeros(50, 4)
    targets[:3, 1] = 1
    for mode in ("per_label", "global"):
        tuned = tune(logits, targets, 0.4, mode=mode)
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
        tuned = tune(val_logits, val_targets, 0.5, **strategy)
        micro, macro = f1_scores(test_logits >= torch.logit(tuned), test_targets)
        return micro.item(), macro.item()

    fixed = test_f1(mode="fixed")
    default = test_f1()
    exact = test_f1(**EXACT)
    assert default[0] >= fixed[0] - 0.01 and default[1] >= fixed[1] - 0.01, (default, fixed)
    # the same data makes the exact per-label search lose micro-F1 (the reported collapse)
    assert exact[0] < fixed[0] - 0.05, (exact, fixed)
