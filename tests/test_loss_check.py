"""A macro-averaged soft-count loss on a label space its batches miss is refused before training
(``sigmoidf1.loss_check``); ``data=wordnet`` picks the micro average by default."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from sigmoidf1.loss_check import (
    MIN_BATCH_COVERAGE,
    batch_label_coverage,
    check_loss_covers_labels,
)
from sigmoidf1.utils.errors import ConfigError
from tests.conftest import compose_train
from tests.data_fixtures import write_text_file

MACRO = {"name": "sigmoid_f1", "average": "macro"}


def test_coverage_is_the_expected_share_of_labels_in_a_random_batch():
    generator = torch.Generator().manual_seed(0)
    targets = (torch.rand(400, 30, generator=generator) < torch.linspace(0.005, 0.3, 30)).float()
    counts = targets.sum(0)
    # Monte Carlo: the share of labels with a positive in random batches of 16 rows
    batches = torch.stack([torch.randperm(400, generator=generator)[:16] for _ in range(2000)])
    present = (targets[batches].sum(1) > 0).float().mean()
    labelled = counts > 0
    share = (targets[batches][:, :, labelled].sum(1) > 0).float().mean()
    assert batch_label_coverage(counts, 400, 16) == pytest.approx(float(share), abs=0.02)
    assert float(present) <= float(share)  # labels without any example are not counted
    assert batch_label_coverage([400, 400], 400, 1) == 1.0
    assert batch_label_coverage([1] * 100, 100, 100) == 1.0  # a batch of the whole split


def test_macro_is_refused_where_batches_miss_most_labels():
    # 1,001 labels, all but one on a single example: (1000 * 64 / 1000 + 1) / 1001 = 6.5 %
    counts, size = [1] * 1000 + [500], 1000
    with pytest.raises(ConfigError) as refused:
        check_loss_covers_labels(MACRO, counts, size, batch_size=64)
    message = str(refused.value)
    assert "loss=sigmoid_f1 with loss.average=macro cannot learn these 1,001 labels" in message
    assert "batch of 64 examples holds a positive for 6.5% of them" in message
    for option in ("loss.average=micro", "loss=bce", "data.batch_size"):
        assert option in message
    # what works passes: micro, a per-element loss, or batches that cover the labels
    check_loss_covers_labels({**MACRO, "average": "micro"}, counts, size, 64)
    check_loss_covers_labels({"name": "bce"}, counts, size, 64)
    assert batch_label_coverage(counts, size, 200) >= MIN_BATCH_COVERAGE
    check_loss_covers_labels(MACRO, counts, size, batch_size=200)


def test_labels_without_a_training_example_are_reported(caplog):
    with caplog.at_level(logging.WARNING):
        check_loss_covers_labels(MACRO, [50, 0, 30, 0], 100, batch_size=32)
    assert "2 of the 4 labels have no training example" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_loss_covers_labels({**MACRO, "average": "micro"}, [50, 0, 30, 0], 100, 32)
    assert not caplog.text


def test_wordnet_picks_micro_for_sigmoid_f1_and_leaves_other_losses_alone(tmp_path):
    assert compose_train(["data=wordnet"], tmp_path).loss.average == "micro"
    assert compose_train(["experiment=wordnet"], tmp_path).loss.average == "micro"
    assert compose_train(["data=wordnet", "loss.average=macro"], tmp_path).loss.average == "macro"
    assert "average" not in compose_train(["data=wordnet", "loss=bce"], tmp_path).loss
    assert compose_train([], tmp_path).loss.average == "macro"  # Yeast keeps the paper's loss
    assert compose_train(["data=reuters"], tmp_path).loss.average == "macro"


def test_the_cli_refuses_before_training_and_leaves_no_run_directory(cli, workdir: Path):
    """A user's texts with a label of its own on every row: the default loss (macro sigmoidF1) is
    refused before training, with what to use instead."""
    rows = [{"text": f"text number {i}", "labels": ["common", f"own{i}"]} for i in range(100)]
    data = write_text_file(workdir / "texts.jsonl", rows)
    command = ("train", "data=csv_text", f"data.path={data}", "data.batch_size=4")
    result = cli(*command)
    assert result.returncode == 2, result.stderr
    # 71 labels with training examples (70 rows' own and the common one); 4 of 70 rows cover 7 %
    assert "with loss.average=macro cannot learn these 71 labels" in result.stderr
    assert "Use loss.average=micro" in result.stderr
    assert "Starting training" not in result.stdout + result.stderr
    assert not list((workdir / "logs").rglob("train.log"))  # the refused run left nothing
    result = cli(*command, "loss.average=micro", "trainer.max_epochs=1")
    assert result.returncode == 0, result.stderr
