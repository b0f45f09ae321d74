"""The real CLI end to end: fast_dev_run, a short training run, and eval from its checkpoint."""

from __future__ import annotations

import csv

import pytest

from tests.conftest import DESIGN_TEST_METRICS, QUIET, read_json, run_cli, run_dir_from_output


@pytest.mark.slow
def test_fast_dev_run(workdir):
    result = run_cli("train", "debug=fdr", *QUIET, cwd=workdir)
    run_dir = run_dir_from_output(result)
    assert run_dir.is_relative_to(workdir / "logs")
    assert set(read_json(run_dir / "test_metrics.json")) >= DESIGN_TEST_METRICS


@pytest.mark.slow
def test_train_then_eval_reproduces_test_metrics(workdir):
    # the config tree printed and saved, with stdout a pipe (as under SLURM or nohup)
    loud = [override for override in QUIET if not override.startswith("extras.print_config")]
    result = run_cli("train", "trainer.max_epochs=4", *loud, cwd=workdir)
    run_dir = run_dir_from_output(result)
    assert result.stdout.strip().splitlines()[-1].endswith(str(run_dir)), (
        "run dir is not logged last"
    )

    # what the run directory holds
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    config_tree = (run_dir / "config_tree.log").read_text().splitlines()
    wanted = f"dirpath: {run_dir}/checkpoints"  # never cut at 80 columns
    assert any(line.rstrip().endswith(wanted) for line in config_tree), wanted
    assert (run_dir / "train.log").is_file()
    with open(run_dir / "metrics.csv") as handle:
        header = next(csv.reader(handle))
    assert "val/f1_macro" in header and "train/loss_epoch" in header
    test_metrics = read_json(run_dir / "test_metrics.json")
    assert set(test_metrics) >= DESIGN_TEST_METRICS
    assert 0.3 < test_metrics["test/f1_micro"] <= 1.0

    best = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    assert len(best) == 1
    evaluation = run_cli(
        "eval",
        f"ckpt_path={best[0]}",
        "callbacks.progress_bar=null",
        "extras.print_config=false",
        cwd=workdir,
    )
    eval_metrics = read_json(run_dir_from_output(evaluation) / "test_metrics.json")
    for name in DESIGN_TEST_METRICS:
        assert eval_metrics[name] == pytest.approx(test_metrics[name], abs=1e-6), name


@pytest.mark.slow
def test_eval_names_a_missing_checkpoint(workdir):
    result = run_cli("eval", "ckpt_path=/no/such/model.ckpt", cwd=workdir, check=False)
    assert result.returncode != 0
    assert "/no/such/model.ckpt" in result.stderr
