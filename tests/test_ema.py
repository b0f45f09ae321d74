"""`callbacks=ema`: an exponential moving average of the weights is what gets validated,
checkpointed and tested; a resume continues the average."""

from __future__ import annotations

import pytest
import torch

from sigmoidf1.module import MultilabelClassifier
from tests.conftest import (
    DESIGN_TEST_METRICS,
    QUIET,
    compose_train,
    read_json,
    run_cli,
    run_dir_from_output,
)

EMA_TARGET = "sigmoidf1.callbacks.ema.EMAWeightAveraging"


def test_ema_adds_the_average_to_the_default_callbacks(tmp_path):
    default = compose_train([], tmp_path).callbacks
    ema = compose_train(["callbacks=ema"], tmp_path).callbacks
    assert set(ema) == set(default) | {"ema"}
    assert ema.ema._target_ == EMA_TARGET
    assert 0 < ema.ema.decay < 1
    both = compose_train(["callbacks=[tuned,ema]"], tmp_path).callbacks
    assert {"threshold_tuning", "ema"} <= set(both)


def _checkpoint(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_the_tested_checkpoint_holds_the_averaged_weights_and_resume_continues_them(workdir):
    run = run_cli("train", "callbacks=ema", "trainer.max_epochs=2", *QUIET, cwd=workdir)
    run_dir = run_dir_from_output(run)
    (best,) = (run_dir / "checkpoints").glob("epoch_*.ckpt")
    checkpoint = _checkpoint(best)

    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    weights = [name for name in averaged if name != "thresholds"]
    assert any(not torch.equal(averaged[name], raw[name]) for name in weights)
    assert torch.equal(averaged["thresholds"], raw["thresholds"])  # kept, not averaged
    # one EMA update per optimizer step, the first being a copy of the weights
    assert int(checkpoint["averaging_state"]["n_averaged"]) == checkpoint["global_step"]

    model = MultilabelClassifier.load_from_checkpoint(best, map_location="cpu")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[name], averaged[name]) for name in averaged)

    # sigmoidf1-eval tests the checkpoint's state_dict (the average); the test after training
    # must agree with it (Lightning's callback alone put the raw weights back before testing)
    tested = read_json(run_dir / "test_metrics.json")
    evaluated = read_json(
        run_dir_from_output(run_cli("eval", f"ckpt_path={best}", *QUIET[:2], cwd=workdir))
        / "test_metrics.json"
    )
    assert set(tested) >= DESIGN_TEST_METRICS
    for name in DESIGN_TEST_METRICS:
        assert tested[name] == pytest.approx(evaluated[name], abs=1e-6), name

    last = run_dir / "checkpoints" / "last.ckpt"
    resumed = run_cli(
        "train", "callbacks=ema", "trainer.max_epochs=3", f"ckpt_path={last}", *QUIET, cwd=workdir
    )
    resumed_last = _checkpoint(run_dir_from_output(resumed) / "checkpoints" / "last.ckpt")
    assert resumed_last["global_step"] > _checkpoint(last)["global_step"]
    # a restarted average would count only the resumed steps
    assert int(resumed_last["averaging_state"]["n_averaged"]) == resumed_last["global_step"]
