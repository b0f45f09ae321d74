"""The large-label metric collection against exact references (numpy, scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score

from sigmoidf1.metrics import (
    COUNT_OUTPUTS,
    ChunkedUpdates,
    MultilabelCounts,
    TopKRanking,
    build_metrics,
    label_counts,
    label_propensities,
)
from tests.core.test_metrics import reference


def sparse_problem(n: int = 400, num_labels: int = 60, seed: int = 0):
    """Scores that rank positives higher, few positives per example, some examples without."""
    rng = np.random.default_rng(seed)
    target = rng.random((n, num_labels)) < rng.uniform(0.005, 0.15, num_labels)
    target[:7] = False  # examples without any positive
    target[:, -1] = False  # a label without support
    scores = rng.random((n, num_labels)) * 0.6 + 0.5 * target * rng.random((n, num_labels))
    return scores.astype(np.float32), target


def update_in_chunks(collection, scores: np.ndarray, target: np.ndarray, chunks: int = 5):
    for rows in np.array_split(np.arange(len(scores)), chunks):
        collection.update(torch.from_numpy(scores[rows]), torch.from_numpy(target[rows]).int())
    return {k.split("/")[-1]: float(v) for k, v in collection.compute().items()}


def top_k_reference(scores: np.ndarray, target: np.ndarray, k: int, weights: np.ndarray):
    """precision@k, psp@k (normalised by the best ranking) by plain per-example loops."""
    precision, gain, best = 0.0, 0.0, 0.0
    for row_scores, row_target in zip(scores, target, strict=True):
        top = np.argsort(-row_scores, kind="stable")[:k]
        precision += row_target[top].sum() / k
        gain += (row_target[top] * weights[top]).sum() / k
        best += np.sort(row_target * weights)[::-1][:k].sum() / k
    return precision / len(scores), gain / best


@pytest.mark.parametrize("seed", [0, 1])
def test_large_collection_matches_exact_references(seed):
    scores, target = sparse_problem(seed=seed)
    counts = target.sum(0)
    counts[3] = 0  # a label never seen in training: the largest weight
    propensities = label_propensities(torch.from_numpy(counts), 1000)
    collection = build_metrics(
        60, "val/", large_labels=50, train_label_counts=counts.tolist(), train_size=1000
    )
    values = update_in_chunks(collection, scores, target)

    assert "map_macro" not in values
    for name, expected in reference(scores, target).items():
        assert values[name] == pytest.approx(expected, abs=1e-6), name
    weights = 1 / propensities.numpy()
    for k in (1, 3, 5):
        precision, psp = top_k_reference(scores, target, k, weights)
        assert values[f"precision_at_{k}"] == pytest.approx(precision, abs=1e-6)
        assert values[f"psp_at_{k}"] == pytest.approx(psp, abs=1e-6)
        assert values[f"ndcg_at_{k}"] == pytest.approx(
            ndcg_score(target.astype(float), scores, k=k), abs=1e-6
        )


def test_the_size_decides_the_collection_and_psp_needs_propensities():
    small = set(build_metrics(50, "test/", large_labels=50).keys())
    assert "test/map_macro" in small and "test/precision_at_1" not in small
    large = build_metrics(51, "test/", large_labels=50, top_k=(2, 1))
    assert set(large.keys()) == {
        *(f"test/{name}" for name in COUNT_OUTPUTS),
        *(f"test/{kind}_at_{k}" for kind in ("precision", "ndcg") for k in (1, 2)),
    }
    assert "map_macro" in build_metrics(5000, "test/", large_labels=None)
    with pytest.raises(ValueError, match="propensities"):
        TopKRanking("psp", 1)
    with pytest.raises(ValueError, match="top_k"):
        TopKRanking("ndcg", 4, top_k=(1, 3))
    with pytest.raises(ValueError, match="output"):
        MultilabelCounts(3, "map_macro")


def test_states_do_not_grow_with_the_number_of_examples():
    def state_numbers(rows: int) -> int:
        collection = build_metrics(
            2000, "val/", large_labels=1000, train_label_counts=[5] * 2000, train_size=100
        )
        generator = torch.Generator().manual_seed(rows)
        collection.update(
            torch.rand(rows, 2000, generator=generator),
            (torch.rand(rows, 2000, generator=generator) < 0.01).int(),
        )
        return sum(
            state.numel()
            for metric in collection.values()
            for state in metric.metric_state.values()
        )

    assert state_numbers(10) == state_numbers(500)


def test_chunked_updates_equal_one_update_in_the_large_collection():
    scores, target = sparse_problem(n=150, seed=3)
    counts = {"train_label_counts": torch.from_numpy(target.sum(0)), "train_size": 150}
    whole = build_metrics(60, "v/", large_labels=10, **counts)
    chunked = build_metrics(60, "v/", large_labels=10, **counts)
    whole.update(torch.from_numpy(scores), torch.from_numpy(target).int())
    updates = ChunkedUpdates(chunked, max_elements=700)
    for rows in np.array_split(np.arange(150), 9):
        updates.add(torch.from_numpy(scores[rows]), torch.from_numpy(target[rows]).int())
    updates.flush()
    expected, got = whole.compute(), chunked.compute()
    for name, value in expected.items():
        assert got[name].item() == pytest.approx(value.item(), abs=1e-6), name


def test_propensities_follow_jain_et_al():
    counts = torch.tensor([0, 1, 10, 1000])
    p = label_propensities(counts, 10_000, a=0.55, b=1.5)
    c = (np.log(10_000) - 1) * 2.5**0.55
    np.testing.assert_allclose(p.numpy(), 1 / (1 + c * (counts.numpy() + 1.5) ** -0.55))
    assert bool((p.diff() > 0).all())  # rarer labels: smaller propensity, larger weight
    with pytest.raises(ValueError):
        label_propensities(torch.tensor([-1]), 10)


def test_label_counts_reads_tensor_and_item_datasets():
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    tensors = torch.utils.data.TensorDataset(torch.zeros(2, 4), targets)
    counts, n = label_counts(tensors)
    assert counts.tolist() == [1, 0, 2] and n == 2
    items = [(None, row) for row in targets]
    counts, n = label_counts(items)
    assert counts.tolist() == [1, 0, 2] and n == 2
