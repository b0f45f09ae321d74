"""The benchmarks: chunked metric updates equal per-batch ones; the loss comparison runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from sigmoidf1.metrics import ChunkedUpdates, build_metrics

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import loss_comparison  # noqa: E402


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


def test_report_from_records(tmp_path):
    records = []
    for loss, base in (("sigmoid_f1", 0.5), ("bce", 0.4)):
        for seed in (0, 1):
            metrics = {}
            for prefix in ("test/", "test_untuned/"):
                for name in loss_comparison.REPORTED:
                    metrics[prefix + name] = base + 0.01 * seed
            records.append(
                {
                    "dataset": "yeast",
                    "loss": loss,
                    "seed": seed,
                    "metrics": metrics,
                    "command": "x",
                    "epochs": 3,
                    "wall_time_s": 1.0,
                }
            )
    text = loss_comparison.markdown_report(records, [], "note")
    assert "| sigmoid_f1 | **0.505 ± 0.007**" in text  # best mean in bold, std over 2 seeds
    assert "| bce | 0.405 ± 0.007 |" in text
    loss_comparison.plot(records, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 10_000


@pytest.mark.slow
def test_quick_mode_end_to_end_on_yeast(tmp_path, capsys):
    out = tmp_path / "results"
    args = [
        "--quick",
        "--datasets",
        "yeast",
        "--out",
        str(out),
        "--log-dir",
        str(tmp_path / "logs"),
    ]
    assert loss_comparison.main(args) == 0
    records = json.loads((out / "loss_comparison.json").read_text())
    assert sorted(r["loss"] for r in records) == sorted(loss_comparison.LOSSES)
    for record in records:
        assert record["dataset"] == "yeast" and record["seed"] == 0
        assert record["command"].startswith("OMP_NUM_THREADS=1 sigmoidf1-train data=yeast")
        assert f"loss={record['loss']}" in record["command"]
        for prefix in ("test/", "test_untuned/"):
            for name in loss_comparison.REPORTED:
                assert 0.0 <= record["metrics"][prefix + name] < 15, prefix + name
    assert "| sigmoid_f1 |" in (out / "loss_comparison.md").read_text()
    assert (out / "loss_comparison.png").stat().st_size > 10_000

    # resumable: a second invocation finds every run recorded and runs nothing
    capsys.readouterr()
    assert loss_comparison.main(args) == 0
    assert "5 of 5 runs already recorded" in capsys.readouterr().out
