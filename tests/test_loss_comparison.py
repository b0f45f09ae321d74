"""The loss comparison benchmark: its statistics against hand computations, its resumability with
a fake runner, and (slow) a CI-sized end-to-end run of the real command."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import loss_comparison  # noqa: E402
import loss_comparison_report as report  # noqa: E402
from tests.conftest import compose_train  # noqa: E402

T_975_DF2 = 4.302652729911275  # Student t 97.5 % quantile, 2 degrees of freedom (from a table)


def test_mean_ci_matches_a_hand_computation():
    interval = report.mean_ci([0.5, 0.6, 0.7])
    half = T_975_DF2 * 0.1 / math.sqrt(3)  # sample std of (0.5, 0.6, 0.7) is 0.1
    assert interval.mean == pytest.approx(0.6)
    assert (interval.low, interval.high) == pytest.approx((0.6 - half, 0.6 + half))
    assert interval.n == 3
    assert report.mean_ci([0.1, 0.1001, 0.1]).excludes_zero()
    assert not report.mean_ci([-0.1, 0.1, 0.0]).excludes_zero()


def test_mean_ci_of_one_value_has_zero_width_and_no_values_is_an_error():
    assert report.mean_ci([0.3]) == report.Interval(0.3, 0.3, 0.3, 1)
    with pytest.raises(ValueError, match="at least one"):
        report.mean_ci([])


def test_paired_difference_pairs_by_seed_and_matches_a_hand_computation():
    loss = {0: 0.5, 1: 0.6, 2: 0.7, 7: 0.9}  # seed 7 has no BCE run: left out
    bce = {2: 0.6, 0: 0.4, 1: 0.55, 9: 0.1}  # seed 9 has no run of the loss: left out
    difference = report.paired_difference(loss, bce)
    d = [0.1, 0.05, 0.1]
    mean = sum(d) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = T_975_DF2 * std / math.sqrt(3)
    assert difference.n == 3
    assert difference.mean == pytest.approx(mean)
    assert (difference.low, difference.high) == pytest.approx((mean - half, mean + half))
    assert difference.excludes_zero()
    # pairing is narrower than the unpaired intervals whenever seeds move both losses together
    unpaired = report.mean_ci([0.5, 0.6, 0.7]).high - report.mean_ci([0.4, 0.55, 0.6]).low
    assert difference.high < unpaired
    with pytest.raises(ValueError, match="no seed in common"):
        report.paired_difference({0: 1.0}, {1: 1.0})


def fake_metrics(loss: str, seed: int, beta: float) -> dict[str, float]:
    """Deterministic stand-in metrics: BCE loses 0.02 on tuning, the others gain."""
    base = {"bce": 0.40, "sigmoid_f1": 0.45 + 0.01 * beta}.get(loss, 0.42) + 0.01 * (seed % 5)
    metrics = {}
    for prefix, shift in (("test_untuned/", 0.0), ("test/", -0.02 if loss == "bce" else 0.01)):
        for name in report.LABELS:
            metrics[prefix + name] = base + shift + (1.0 if name == "card_mae" else 0.0)
    return metrics


class FakeRunner:
    """Records the runs asked for; raises KeyboardInterrupt on call number ``interrupt_at``."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.interrupt_at = interrupt_at

    def __call__(self, overrides, log_dir):
        self.calls.append(list(overrides))
        if len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        values = dict(o.split("=", 1) for o in overrides if "=" in o)
        loss, seed = values["loss"], int(values["seed"])
        beta = float(values.get("loss.beta", 1.0))
        return {
            "metrics": fake_metrics(loss, seed, beta),
            "best_val_f1_macro": 0.4 + 0.01 * beta,
            "epochs": 3,
            "wall_time_s": 1.0,
            "run_dir": str(log_dir / f"{loss}-{seed}"),
        }


def test_every_run_is_recorded_once_and_a_second_invocation_runs_nothing(tmp_path, capsys):
    args = ["--datasets", "yeast", "--out", str(tmp_path), "--log-dir", str(tmp_path / "logs")]
    runner = FakeRunner()
    assert loss_comparison.main(args, runner=runner) == 0
    grid, losses = len(loss_comparison.SIGMOID_F1_GRID), len(loss_comparison.LOSSES)
    expected = (
        grid * len(loss_comparison.SWEEP_SEEDS)
        + losses * len(loss_comparison.SEEDS)
        + 2 * len(loss_comparison.BATCH_SIZES) * len(loss_comparison.BATCH_SEEDS)
    )
    assert len(runner.calls) == expected
    saved = json.loads((tmp_path / "loss_comparison.json").read_text())
    runs = saved["runs"]
    assert len(runs) == expected == len({r["command"] for r in runs})
    for record in runs:
        assert record["command"].startswith("OMP_NUM_THREADS=1 sigmoidf1-train data=yeast ")
        assert f"loss={record['loss']} " in record["command"]
        assert f"seed={record['seed']} " in record["command"]
    # the sweep picks beta=2 (highest fake validation score); the comparison uses it
    chosen = {"loss.beta": 2.0, "loss.eta": 0.0}
    compare = [r for r in runs if r["study"] == "compare" and r["loss"] == "sigmoid_f1"]
    assert compare and all(r["loss_params"] == chosen for r in compare)
    assert all("loss.beta=2.0 loss.eta=0.0" in r["command"] for r in compare)

    summary = saved["summary"]["yeast"]
    difference = summary["sigmoid_f1"]["test_untuned/f1_macro"]["diff_to_bce"]
    assert difference["mean"] == pytest.approx(0.07) and difference["n_pairs"] == 5
    assert difference["ci95"] == pytest.approx([0.07, 0.07])  # identical differences: no spread
    assert summary["bce"]["tuning_check"]["ok"] is False  # the fake BCE loses 0.02 when tuned
    assert summary["focal"]["tuning_check"]["ok"] is True
    text = (tmp_path / "loss_comparison.md").read_text()
    assert "| yeast | bce | -0.020 | -0.020 | FAIL |" in text
    assert "yeast: 6 of 7 losses pass." in text
    assert "| `loss.beta=2.0 loss.eta=0.0` |" in text
    for figure in ("loss_comparison.png", "loss_comparison_batch_size.png"):
        assert (tmp_path / figure).stat().st_size > 10_000

    capsys.readouterr()
    again = FakeRunner()
    assert loss_comparison.main(args, runner=again) == 0
    assert again.calls == []
    compare_runs = len(loss_comparison.LOSSES) * len(loss_comparison.SEEDS)
    assert f"{compare_runs} of {compare_runs} runs already recorded" in capsys.readouterr().out


def test_ctrl_c_keeps_the_recorded_runs_and_the_rerun_finishes_the_rest(tmp_path):
    args = ["--datasets", "yeast", "--studies", "sweep", "--out", str(tmp_path)]
    interrupted = FakeRunner(interrupt_at=3)
    assert loss_comparison.main(args, runner=interrupted) == 130
    runs = json.loads((tmp_path / "loss_comparison.json").read_text())["runs"]
    assert len(runs) == 2
    rest = FakeRunner()
    assert loss_comparison.main(args, runner=rest) == 0
    total = len(loss_comparison.SIGMOID_F1_GRID) * len(loss_comparison.SWEEP_SEEDS)
    assert len(rest.calls) == total - 2
    assert rest.calls[0] == interrupted.calls[2]  # the interrupted run is the first one redone
    runs = json.loads((tmp_path / "loss_comparison.json").read_text())["runs"]
    assert len({r["command"] for r in runs}) == total


def test_a_failed_run_is_reported_and_not_recorded(tmp_path, capsys):
    def failing(overrides, log_dir):
        raise RuntimeError("exit code 1")

    args = ["--datasets", "yeast", "--studies", "sweep", "--out", str(tmp_path)]
    assert loss_comparison.main(args, runner=failing) == 1
    assert "FAILED sweep yeast/sigmoid_f1" in capsys.readouterr().out
    assert not (tmp_path / "loss_comparison.json").exists()


def test_reproduce_reruns_a_recorded_command_and_records_the_check(tmp_path):
    args = ["--datasets", "yeast", "--studies", "sweep", "compare", "--out", str(tmp_path)]
    assert loss_comparison.main(args, runner=FakeRunner()) == 0
    rerun = FakeRunner()
    assert loss_comparison.main([*args, "--reproduce"], runner=rerun) == 0
    saved = json.loads((tmp_path / "loss_comparison.json").read_text())
    (check,) = saved["reproductions"]
    assert check["command"] == saved["runs"][8]["command"]  # the first compare run
    assert check["recorded"] == check["reproduced"] and check["within_0.01"] is True
    assert len(rerun.calls) == 1
    assert "## Reproduction" in (tmp_path / "loss_comparison.md").read_text()


def test_reproduce_with_datasets_reruns_a_run_of_that_variant(tmp_path):
    args = ["--studies", "sweep", "compare", "--out", str(tmp_path)]
    assert loss_comparison.main([*args, "--datasets", "yeast", "reuters"], FakeRunner()) == 0
    rerun = FakeRunner()
    assert loss_comparison.main([*args, "--datasets", "reuters", "--reproduce"], rerun) == 0
    (check,) = json.loads((tmp_path / "loss_comparison.json").read_text())["reproductions"]
    assert check["command"].startswith("OMP_NUM_THREADS=1 sigmoidf1-train data=reuters ")
    assert len(rerun.calls) == 1


def test_a_variant_is_one_entry_of_overrides():
    job = loss_comparison.make_job("compare", "reuters", "bce", 3)
    assert job["overrides"][: len(loss_comparison.VARIANTS["reuters"].overrides)] == list(
        loss_comparison.VARIANTS["reuters"].overrides
    )
    assert job["command"].endswith(" ".join(loss_comparison.COMMON))
    batch = loss_comparison.make_job("batch_size", "yeast", "bce", 0, batch_size=64)
    assert "data.batch_size=64" in batch["overrides"]
    assert set(loss_comparison.BATCH_STUDY) <= set(batch["overrides"])


def test_every_variant_composes_and_frozen_encoders_keep_one_split(tmp_path):
    for name in loss_comparison.VARIANTS:
        job = loss_comparison.make_job("compare", name, "sigmoid_f1", 3)
        overrides = [o for o in job["overrides"] if not o.startswith("++trainer.")]
        cfg = compose_train(overrides, tmp_path)
        assert cfg.seed == 3
        if cfg.data.get("frozen_encoder") is not None:
            # one split for every seed: the cached features of the first run serve all the others
            assert cfg.data.seed == 42, name


@pytest.mark.slow
def test_quick_mode_end_to_end_on_yeast(tmp_path):
    """The real command, CI-sized: one seed, one epoch, two losses."""
    out = tmp_path / "results"
    args = ["--quick", "--datasets", "yeast", "--losses", "bce", "sigmoid_f1", "--out", str(out)]
    args += ["--studies", "sweep", "compare", "--log-dir", str(tmp_path / "logs")]
    assert loss_comparison.main(args) == 0
    runs = json.loads((out / "loss_comparison.json").read_text())["runs"]
    assert sorted((r["study"], r["loss"]) for r in runs) == [
        ("compare", "bce"),
        ("compare", "sigmoid_f1"),
        ("sweep", "sigmoid_f1"),
    ]
    for record in runs:
        assert record["epochs"] == 1 and Path(record["run_dir"]).is_dir()
        for prefix in ("test/", "test_untuned/"):
            for name in report.LABELS:
                assert 0.0 <= record["metrics"][prefix + name] < 15, prefix + name
    assert "| sigmoid_f1 |" in (out / "loss_comparison.md").read_text()
