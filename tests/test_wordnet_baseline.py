"""benchmarks/wordnet_baseline.py: its sparse Adagrad step equals torch's dense Adagrad."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import wordnet_baseline  # noqa: E402


def test_sparse_adagrad_step_equals_dense_adagrad():
    torch.manual_seed(0)
    bag = torch.nn.EmbeddingBag(6, 4, mode="sum", sparse=True)
    dense = torch.nn.Parameter(bag.weight.detach().clone())
    reference = torch.optim.Adagrad([dense], lr=0.3)
    accumulator = torch.zeros_like(bag.weight)
    for _ in range(3):
        ids = torch.tensor([1, 3, 1, 5, 3])  # repeated rows within the batch
        offsets, weights = torch.tensor([0, 2]), torch.rand(5)
        target = torch.rand(2, 4)
        ((bag(ids, offsets, per_sample_weights=weights) - target) ** 2).sum().backward()
        wordnet_baseline.sparse_adagrad_step(bag.weight, accumulator, lr=0.3)
        reference.zero_grad()
        dense_out = torch.nn.functional.embedding_bag(
            ids, dense, offsets, mode="sum", per_sample_weights=weights
        )
        ((dense_out - target) ** 2).sum().backward()
        reference.step()
        torch.testing.assert_close(bag.weight.detach(), dense.detach())
    assert bag.weight.grad is None
