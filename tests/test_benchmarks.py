"""The benchmarks: chunked metric updates equal per-batch ones (the loss comparison has its own
test file, test_loss_comparison.py)."""

from __future__ import annotations

import pytest
import torch

from sigmoidf1.metrics import ChunkedUpdates, build_metrics


@pytest.mark.parametrize("max_elements", [1, 50, 10**9])
def test_chunked_updates_equal_per_batch_updates(max_elements):
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.rand(n, 6, generator=generator), (torch.rand(n, 6, generator=generator) < 0.3).int())
        for n in (7, 16, 3, 16, 1)
    ]
    reference, chunked = build_metrics(6, "val/"), build_metrics(6, "val/")
    updates = ChunkedUpdates(chunked, max_elements=max_elements)
    for preds, target in batches:
        reference.update(preds, target)
        updates.add(preds, target)
    updates.flush()
    expected, got = reference.compute(), chunked.compute()
    for name, value in expected.items():
        assert got[name].item() == pytest.approx(value.item(), abs=1e-6), name
