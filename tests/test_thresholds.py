"""``ThresholdTuning``: the callback inside a real fit/test, its config, and the CLI path (the
search itself is tested in tests/core/test_thresholds.py)."""

from __future__ import annotations

import os
import socket
import traceback
from datetime import timedelta
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.multiprocessing as mp
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint

from sigmoidf1.callbacks.thresholds import ThresholdTuning
from sigmoidf1.data import YeastDataModule
from sigmoidf1.distributed import gather_rows
from sigmoidf1.module import MultilabelClassifier
from tests.conftest import QUIET, compose_train, read_json, run_cli, run_dir_from_output

# --- the callback in a real fit / test ------------------------------------------------------------
MLP = {
    "_target_": "sigmoidf1.backbones.MLP",
    "_partial_": True,
    "hidden_sizes": [32],
    "dropout": 0.0,
}
BCE = {"_target_": "sigmoidf1.losses.get_loss", "name": "bce"}
ADAMW = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3}


def yeast_model(data: YeastDataModule, model_class: type = MultilabelClassifier, **overrides):
    """A small MLP with BCE for ``data``, sized from it (``setup`` runs here)."""
    data.prepare_data()
    data.setup("fit")
    arguments = {"backbone": MLP, "loss": BCE, "optimizer": ADAMW}
    return model_class(
        label_names=data.label_names,
        backbone_inputs=data.backbone_inputs,
        **(arguments | overrides),
    )


def fit_yeast(
    tmp_path: Path, callbacks: list, seed: int = 0
) -> tuple[L.Trainer, MultilabelClassifier, dict]:
    """Fit 3 epochs on Yeast, then test the best checkpoint; also return the metrics after fit."""
    L.seed_everything(seed, workers=True)
    data = YeastDataModule(seed=seed, batch_size=128, eval_batch_size=512)
    model = yeast_model(data)
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path, monitor="val/f1_macro", mode="max", save_last=True
    )
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        num_sanity_val_steps=0,
        callbacks=[checkpoint, *callbacks],
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=data)
    fit_metrics = dict(trainer.callback_metrics)
    trainer.test(model, datamodule=data, ckpt_path=checkpoint.best_model_path, verbose=False)
    return trainer, model, fit_metrics


def test_callback_tunes_into_checkpoint_and_test_but_leaves_fit_metrics_alone(tmp_path):
    plain_trainer, _, plain_fit = fit_yeast(tmp_path / "plain", [])
    trainer, model, tuned_fit = fit_yeast(tmp_path / "tuned", [ThresholdTuning()])
    plain, tuned = plain_trainer.callback_metrics, trainer.callback_metrics

    # fitting is unchanged: same train/validation metrics, same selected checkpoint
    for name in ("val/f1_macro", "val/f1_micro", "train/f1_macro", "val/loss"):
        assert tuned_fit[name].item() == pytest.approx(plain_fit[name].item(), abs=1e-7), name
    assert tuned_fit["val_tuned/f1_macro"] >= tuned_fit["val/f1_macro"] - 1e-6
    # the fixed-threshold test metrics equal the run without the callback
    for name in ("f1_macro", "f1_micro", "f1_samples", "card_mae", "map_macro"):
        assert tuned[f"test_untuned/{name}"].item() == pytest.approx(
            plain[f"test/{name}"].item(), abs=1e-6
        )

    # the best checkpoint stores thresholds tuned on its epoch; test used them, and they mattered
    best = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    stored = best["state_dict"]["thresholds"]
    assert not torch.allclose(stored, torch.full_like(stored, 0.5))
    assert torch.equal(model.thresholds, stored)
    assert tuned["test/f1_macro"].item() != pytest.approx(
        tuned["test_untuned/f1_macro"].item(), abs=1e-4
    )
    assert tuned["test/map_macro"].item() == pytest.approx(
        tuned["test_untuned/map_macro"].item(), abs=1e-6
    )

    # a model rebuilt from the checkpoint predicts with the stored thresholds
    rebuilt = MultilabelClassifier.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    assert torch.equal(rebuilt.thresholds, stored)


def test_global_mode_stores_one_threshold(tmp_path):
    _, model, _ = fit_yeast(tmp_path, [ThresholdTuning(mode="global")])
    assert torch.all(model.thresholds == model.thresholds[0])
    assert model.thresholds[0].item() != 0.5


def test_callback_needs_logits_from_the_steps(tmp_path):
    class NoOutputs(MultilabelClassifier):
        def validation_step(self, batch, batch_idx):
            super().validation_step(batch, batch_idx)

    data = YeastDataModule(seed=0, batch_size=256)
    model = yeast_model(data, NoOutputs)
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        limit_train_batches=1,
        enable_checkpointing=False,
        callbacks=[ThresholdTuning()],
        default_root_dir=tmp_path,
        enable_model_summary=False,
    )
    with pytest.raises(TypeError, match="needs validation_step to return"):
        trainer.fit(model, datamodule=data)


# --- DDP: every rank gathers every rank's rows and picks the same thresholds ----------------------
# the default strategy, the exact per-label search and the global threshold
DDP_STRATEGIES = [
    {},
    {"mode": "per_label", "min_positives": 0, "shrinkage": 0.0, "guard": False},
    {"mode": "global"},
]


def _rank_rows(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + rank)
    rows = 25 if rank == 0 else 38  # uneven on purpose
    # rates: labels 0-1 have fewer than 10 positives in all (they keep the global threshold under
    # the default strategy), labels 2-3 more (shrunk toward it)
    rates = torch.tensor([0.04, 0.1, 0.4, 0.6])
    targets = (torch.rand(rows, 4, generator=generator) < rates).float()
    return torch.randn(rows, 4, generator=generator) + targets, targets


def _ddp_rank(rank: int, port: int, out_dir: str) -> None:
    try:
        import torch.distributed as dist

        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=60))
        logits, targets = _rank_rows(rank)
        all_logits = gather_rows(logits)
        all_targets = gather_rows(targets)
        tuned = [ThresholdTuning(**k).tune(all_logits, all_targets, 0.5) for k in DDP_STRATEGIES]
        torch.save({"logits": all_logits, "tuned": tuned}, Path(out_dir) / f"rank{rank}.pt")
        dist.destroy_process_group()
    except Exception:
        (Path(out_dir) / f"rank{rank}.error").write_text(traceback.format_exc())


@pytest.mark.slow
def test_gather_under_two_gloo_processes(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_ddp_rank, args=(port, str(tmp_path)), nprocs=2, start_method="spawn")
    errors = list(tmp_path.glob("*.error"))
    assert not errors, errors[0].read_text()
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    expected_logits = torch.cat([_rank_rows(0)[0], _rank_rows(1)[0]])
    expected_targets = torch.cat([_rank_rows(0)[1], _rank_rows(1)[1]])
    assert torch.equal(rank0["logits"], expected_logits) and torch.equal(
        rank1["logits"], expected_logits
    )
    positives = expected_targets.sum(0)
    assert (positives[:2] < 10).all() and (positives[2:] >= 10).all()
    for strategy, tuned0, tuned1 in zip(
        DDP_STRATEGIES, rank0["tuned"], rank1["tuned"], strict=True
    ):
        single = ThresholdTuning(**strategy).tune(expected_logits, expected_targets, fixed=0.5)
        assert torch.equal(tuned0, single) and torch.equal(tuned1, single), strategy
    default, exact, pooled = rank0["tuned"]
    assert torch.equal(default[:2], pooled[:2]) and not torch.equal(default, exact)


# --- the CLI: `callbacks=tuned` ------------------------------------------------------------------
@pytest.mark.slow
def test_cli_tuned_run_and_eval_use_the_stored_thresholds(workdir):
    result = run_cli(
        "train", "callbacks=tuned", "loss=bce", "trainer.max_epochs=3", *QUIET, cwd=workdir
    )
    run_dir = run_dir_from_output(result)
    metrics = read_json(run_dir / "test_metrics.json")
    assert {"test/f1_macro", "test_untuned/f1_macro", "test_untuned/card_mae"} <= set(metrics)
    assert metrics["test/f1_macro"] != pytest.approx(metrics["test_untuned/f1_macro"], abs=1e-4)

    best = next((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    assert torch.load(best, weights_only=True)["state_dict"]["thresholds"].ne(0.5).any()
    evaluation = run_cli(
        "eval",
        f"ckpt_path={best}",
        "callbacks.progress_bar=null",
        "extras.print_config=false",
        cwd=workdir,
    )
    eval_metrics = read_json(run_dir_from_output(evaluation) / "test_metrics.json")
    assert eval_metrics["test/f1_macro"] == pytest.approx(metrics["test/f1_macro"], abs=1e-6)


# --- options and the tuned config ---------------------------------------------------------------
def test_the_callback_checks_its_options_when_built():
    with pytest.raises(ValueError, match="mode must be one of"):
        ThresholdTuning(mode="per_class")
    with pytest.raises(ValueError, match="shrinkage"):
        ThresholdTuning(shrinkage=-0.5)


def test_tuned_config_instantiates_and_its_strategy_keys_reach_the_callback(tmp_path: Path):
    cfg = compose_train(["callbacks=tuned"], tmp_path)
    assert isinstance(instantiate(cfg.callbacks.threshold_tuning), ThresholdTuning)

    cfg = compose_train(
        [
            "callbacks=tuned",
            "callbacks.threshold_tuning.mode=global",
            "callbacks.threshold_tuning.min_positives=3",
            "callbacks.threshold_tuning.shrinkage=0",
        ],
        tmp_path,
    )
    callback = instantiate(cfg.callbacks.threshold_tuning)
    assert (callback.mode, callback.min_positives, callback.shrinkage) == ("global", 3, 0.0)
