"""The per-label test report: its statistics, the DDP gathering, the files, and a real run."""

from __future__ import annotations

import csv
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
from sigmoidf1.utils.distributed import join_ranks
from tests.conftest import QUIET, read_json, run_cli, run_dir_from_output


# --- an independent reference: plain numpy, no torchmetrics -------------------------------------
def reference_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Step-wise AP = sum_n (R_n - R_{n-1}) P_n over distinct score thresholds; 0 if no positive."""
    positives = labels.sum()
    if positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    tp = np.cumsum(labels)[last_of_tie]
    fp = np.cumsum(1 - labels)[last_of_tie]
    precision, recall = tp / (tp + fp), tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def reference_rows(
    probabilities: np.ndarray, targets: np.ndarray, thresholds: np.ndarray
) -> list[dict]:
    decisions = probabilities >= thresholds
    rows = []
    for label in range(targets.shape[1]):
        d, y = decisions[:, label], targets[:, label].astype(bool)
        tp, fp, fn = int((d & y).sum()), int((d & ~y).sum()), int((~d & y).sum())
        rows.append(
            {
                "support": int(y.sum()),
                "predicted": int(d.sum()),
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "precision": tp / (tp + fp) if tp + fp else 0.0,
                "recall": tp / (tp + fn) if tp + fn else 0.0,
                "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0,
                "average_precision": reference_average_precision(
                    probabilities[:, label], targets[:, label]
                ),
                "threshold": float(thresholds[label]),
            }
        )
    return rows


def read_csv(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def assert_rows_match(csv_rows: list[dict], expected: list[dict]) -> None:
    assert len(csv_rows) == len(expected)
    for got, want in zip(csv_rows, expected, strict=True):
        for key, value in want.items():
            if isinstance(value, int):
                assert int(got[key]) == value, (got["label"], key)
            else:
                assert float(got[key]) == pytest.approx(value, abs=2e-5), (got["label"], key)


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


# --- real runs (see also test_tracking.py) --------------------------------------------------------
def check_report_of_a_yeast_run(run_dir: Path) -> None:
    """The report files of a real Yeast run (seed 42) exist and agree with an independent
    recomputation from ``predictions.npz`` and with ``test_metrics.json`` (torchmetrics).

    Called by the CLI tests in test_tracking.py, which share one run between several checks."""
    report_dir = run_dir / "report"
    for name in ("per_label.csv", "label_counts.csv", "predictions.npz", *FIGURE_FILES.values()):
        assert (report_dir / name).stat().st_size > 0, name

    saved = np.load(report_dir / "predictions.npz")
    probabilities, targets = saved["probabilities"], saved["targets"]
    thresholds = saved["thresholds"]
    from sigmoidf1.data import YeastDataModule

    datamodule = YeastDataModule(seed=42)
    datamodule.setup()
    assert targets.shape == (len(datamodule.test_set), len(datamodule.label_names))
    rows = read_csv(report_dir / "per_label.csv")
    assert [r["label"] for r in rows] == list(datamodule.label_names)
    assert_rows_match(rows, reference_rows(probabilities, targets, thresholds))

    # computed by torchmetrics inside the module, independently of the report
    test_metrics = read_json(run_dir / "test_metrics.json")
    f1 = np.array([float(r["f1"]) for r in rows])
    ap = np.array([float(r["average_precision"]) for r in rows])
    assert f1.mean() == pytest.approx(test_metrics["test/f1_macro"], abs=1e-5)
    assert ap.mean() == pytest.approx(test_metrics["test/map_macro"], abs=1e-4)
    decisions = probabilities >= thresholds
    card_mae = np.abs(decisions.sum(1) - targets.sum(1)).mean()
    assert card_mae == pytest.approx(test_metrics["test/card_mae"], abs=1e-5)
    counts = read_csv(report_dir / "label_counts.csv")
    assert sum(int(c["examples_true"]) for c in counts) == targets.shape[0]
    for c in counts:
        k = int(c["labels_per_example"])
        assert int(c["examples_true"]) == int((targets.sum(1) == k).sum())
        assert int(c["examples_predicted"]) == int((decisions.sum(1) == k).sum())


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
