"""The per-label test report: its statistics, the DDP gathering, the files, and a real run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sigmoidf1.callbacks.report import (
    FIGURE_FILES,
    PER_LABEL_COLUMNS,
    PerLabelReport,
    label_count_table,
    per_label_stats,
)
from sigmoidf1.distributed import join_ranks
from tests.conftest import QUIET, run_cli, run_dir_from_output
from tests.helpers import assert_rows_match, read_csv, reference_rows


def synthetic(n: int = 300, num_labels: int = 5, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, num_labels, generator=generator) < 0.3).float()
    targets[:, 4] = 0  # a label without positives: precision/recall/F1/AP must all be 0
    logits = 2.0 * targets - 1.0 + torch.randn(n, num_labels, generator=generator)
    thresholds = torch.tensor([0.5, 0.3, 0.7, 0.5, 0.5])
    return torch.sigmoid(logits), targets, thresholds


# --- statistics ---------------------------------------------------------------------------------
def test_per_label_stats_match_an_independent_computation():
    probabilities, targets, thresholds = synthetic()
    decisions = probabilities >= thresholds
    names = [f"l{i}" for i in range(5)]
    stats = per_label_stats(probabilities, decisions, targets, thresholds, names)
    rows = [dict(zip(PER_LABEL_COLUMNS, row, strict=True)) for row in stats.rows()]
    expected = reference_rows(probabilities.numpy(), targets.numpy(), thresholds.numpy())
    assert_rows_match([{k: str(v) for k, v in r.items()} for r in rows], expected)
    assert rows[4]["support"] == 0 and rows[4]["f1"] == 0.0 and rows[4]["average_precision"] == 0.0


def test_label_count_table_counts_examples_per_number_of_labels():
    targets = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 1, 1], [1, 0, 0]])
    decisions = torch.tensor([[1, 0, 0], [0, 0, 0], [1, 1, 0], [1, 1, 0]]).bool()
    k, true_examples, predicted_examples = label_count_table(decisions, targets)
    assert k.tolist() == [0, 1, 2, 3]
    assert true_examples.tolist() == [1, 1, 1, 1]
    assert predicted_examples.tolist() == [1, 1, 2, 0]


# --- DDP gathering, with a stand-in for LightningModule.all_gather -------------------------------
def test_gather_restores_dataset_order_and_drops_distributed_sampler_padding():
    # 5 examples over 2 ranks: DistributedSampler pads to 6 positions by repeating example 0, and
    # rank r holds positions r, r + 2, r + 4
    dataset = torch.arange(10.0).reshape(5, 2)
    sampler_order = [0, 1, 2, 3, 4, 0]
    per_rank = [dataset[sampler_order[r::2]] for r in range(2)]
    gathered = join_ranks(per_rank, dataset_size=5)
    assert torch.equal(gathered, dataset)


def test_gather_concatenates_uneven_ranks_without_a_known_order():
    per_rank = [torch.ones(3, 2), 2 * torch.ones(1, 2)]
    gathered = join_ranks(per_rank, dataset_size=None)
    assert gathered.shape == (4, 2) and gathered[:3].eq(1).all() and gathered[3].eq(2).all()


# --- the files ----------------------------------------------------------------------------------
def test_report_writes_non_empty_files_that_agree(tmp_path: Path):
    probabilities, targets, thresholds = synthetic()
    decisions = probabilities >= thresholds
    report = PerLabelReport(tmp_path / "report", max_pr_curves=3)
    paths = report.write_and_log(
        None, probabilities, decisions, targets, thresholds, [f"l{i}" for i in range(5)]
    )
    for name in ("per_label", "label_counts_csv", "predictions", *FIGURE_FILES):
        assert paths[name].is_file() and paths[name].stat().st_size > 0, name
    for name, filename in FIGURE_FILES.items():
        assert paths[name].name == filename
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_rows_match(
        read_csv(paths["per_label"]),
        reference_rows(probabilities.numpy(), targets.numpy(), thresholds.numpy()),
    )
    saved = np.load(paths["predictions"])
    np.testing.assert_allclose(saved["probabilities"], probabilities.numpy(), rtol=1e-6)
    assert saved["label_names"].tolist() == [f"l{i}" for i in range(5)]


def test_report_rejects_a_test_step_without_logits():
    report = PerLabelReport("unused")
    with pytest.raises(TypeError, match="test_step to return"):
        report.on_test_batch_end(
            None, torch.nn.Linear(1, 1), None, (torch.zeros(1), torch.zeros(1)), 0
        )


@pytest.mark.slow
def test_ddp_report_holds_each_test_example_once_in_dataset_order(workdir):
    """2 processes: 483 test examples are padded to 484 by the sampler; the report has 483."""
    result = run_cli("train", "trainer=ddp_cpu", "trainer.max_epochs=1", *QUIET, cwd=workdir)
    run_dir = run_dir_from_output(result)
    output = result.stdout + result.stderr
    assert output.count("Per-label report:") == 1  # written on rank zero only
    from sigmoidf1.data import YeastDataModule

    datamodule = YeastDataModule(seed=42)
    datamodule.setup()
    saved = np.load(run_dir / "report" / "predictions.npz")
    np.testing.assert_array_equal(saved["targets"], datamodule.test_set.tensors[1].numpy())
