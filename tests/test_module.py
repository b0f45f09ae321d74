"""The classifier is built eagerly and rebuilds from its checkpoint alone, Lightning's way."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from sigmoidf1.checkpoints import read_checkpoint
from sigmoidf1.module import MultilabelClassifier
from tests.conftest import QUIET, REPO_ROOT, run_cli, run_dir_from_output

MLP = {"_target_": "sigmoidf1.backbones.MLP", "_partial_": True, "hidden_sizes": [8]}


def bare_trainer(log_every_n_steps: int):
    """A Trainer to attach to a module whose steps are called by hand (nothing written)."""
    import lightning as L

    return L.Trainer(
        logger=False,
        log_every_n_steps=log_every_n_steps,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )


def small_model(**overrides) -> MultilabelClassifier:
    arguments = {
        "backbone": MLP,
        "label_names": ["a", "b", "c"],
        "backbone_inputs": {"in_features": 5},
    }
    return MultilabelClassifier(**(arguments | overrides))


def test_model_is_built_at_construction_and_sized_from_the_label_names():
    model = small_model()
    assert model.head.out_features == 3 and model.backbone.out_features == 8
    assert model(torch.randn(4, 5)).shape == (4, 3)
    assert model.thresholds.tolist() == [0.5, 0.5, 0.5]


def test_hyperparameters_are_plain_data_even_from_omegaconf():
    from omegaconf import OmegaConf

    model = small_model(
        backbone=OmegaConf.create(MLP), backbone_inputs={"in_features": torch.tensor(5)}
    )
    assert model.hparams.backbone == MLP and type(model.hparams.backbone) is dict
    assert model.hparams.backbone_inputs == {"in_features": 5}


def test_an_empty_label_list_is_refused():
    with pytest.raises(ValueError, match="no labels"):
        small_model(label_names=[])


def test_load_from_checkpoint_roundtrip_in_this_process(tmp_path):
    import lightning as L

    model = small_model(loss={"_target_": "sigmoidf1.losses.get_loss", "name": "bce"})
    with torch.no_grad():
        model.thresholds.copy_(torch.tensor([0.2, 0.5, 0.7]))
    trainer = L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.strategy.connect(model)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    read_checkpoint(path)  # weights_only=True, and recognised as ours
    loaded = MultilabelClassifier.load_from_checkpoint(path, weights_only=True).eval()
    inputs = torch.randn(6, 5)
    model.eval()
    assert torch.equal(loaded(inputs), model(inputs))
    assert torch.equal(loaded.thresholds, model.thresholds)
    assert type(loaded.loss_fn).__name__ == type(model.loss_fn).__name__


@pytest.mark.slow
def test_a_trained_checkpoint_loads_in_a_fresh_process_and_predicts_the_same_logits(workdir):
    result = run_cli(
        "train", "trainer.max_epochs=1", "callbacks.per_label_report=null", *QUIET, cwd=workdir
    )
    run_dir = run_dir_from_output(result)
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    inputs = torch.randn(7, 103)
    torch.save(inputs, workdir / "inputs.pt")
    script = (
        "import torch; from sigmoidf1.module import MultilabelClassifier as M; "
        f"m = M.load_from_checkpoint({str(checkpoint)!r}).eval(); "
        f"x = torch.load({str(workdir / 'inputs.pt')!r}); "
        f"torch.save(m(x).detach(), {str(workdir / 'fresh.pt')!r})"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO_ROOT, timeout=300)

    # the weights as trained: the checkpoint's state dict in a model built like the training run's
    stored = torch.load(checkpoint, weights_only=True)
    reference = MultilabelClassifier(**stored["hyper_parameters"])
    reference.load_state_dict(stored["state_dict"])
    expected = reference.eval()(inputs).detach()
    # equal up to float rounding: a process with another thread count sums in another order
    torch.testing.assert_close(torch.load(workdir / "fresh.pt"), expected)
    assert stored["hyper_parameters"]["label_names"][0] == "Class1"


@pytest.mark.slow
def test_resume_refuses_a_changed_seed_and_names_the_keys(workdir):
    first = run_cli(
        "train",
        "trainer.max_epochs=1",
        "callbacks.per_label_report=null",
        "test=false",
        cwd=workdir,
    )
    last = run_dir_from_output(first) / "checkpoints" / "last.ckpt"
    refused = run_cli(
        "train",
        "trainer.max_epochs=2",
        "seed=1",
        f"ckpt_path={last}",
        cwd=workdir,
        check=False,
    )
    output = refused.stdout + refused.stderr
    assert refused.returncode == 1, output[-3000:]
    assert "data.seed: 42 -> 1" in output and "resume_check=false" in output
    assert "Traceback" not in output
    # the refused run leaves no run directory behind: only the first run's remains
    assert [p.name for p in (workdir / "logs" / "train" / "runs").iterdir()] == [
        last.parents[1].name
    ]


def test_a_training_step_between_logging_steps_never_reads_a_tensor_on_the_host(monkeypatch):
    """On a GPU, reading a tensor's value (``.item()``, ``bool``, ``float``) waits for the device:
    the training step must not, except on the steps that loggers record."""
    model = small_model()
    trainer = bare_trainer(log_every_n_steps=50)
    model.trainer = trainer
    batch = (torch.randn(16, 5), torch.randint(0, 2, (16, 3)).float())
    model.training_step(batch, 0).backward()  # warm-up: lazy initialisation may read values

    def host_read(*args, **kwargs):
        raise AssertionError("a tensor was read on the host during a training step")

    for name in ("item", "__bool__", "__float__", "__int__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    for step in range(3):
        model.training_step(batch, step).backward()
    monkeypatch.undo()
    assert trainer.global_step == 0  # step 1 is not a logging step (every 50)


def test_a_non_finite_loss_stops_training_on_a_logging_step():

    model = small_model()
    model.trainer = bare_trainer(log_every_n_steps=1)
    inputs = torch.full((4, 5), float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite training loss at global step 0"):
        model.training_step((inputs, torch.ones(4, 3)), 0)


def test_the_epoch_loss_is_the_mean_over_examples_of_the_batch_losses():
    """Batches of 16 and 4 examples: the logged epoch loss weighs each batch loss by its size."""

    model = small_model()
    model.trainer = bare_trainer(log_every_n_steps=50)
    batches = [
        (torch.randn(16, 5), torch.randint(0, 2, (16, 3)).float()),
        (torch.randn(4, 5), torch.randint(0, 2, (4, 3)).float()),
    ]
    model.on_train_epoch_start()
    losses = [model.training_step(batch, step).detach() for step, batch in enumerate(batches)]
    model._loss_updates["train"].flush()
    expected = (16 * losses[0] + 4 * losses[1]) / 20
    torch.testing.assert_close(model.train_loss.compute(), expected)


def test_the_module_builds_the_large_set_with_psp_and_can_skip_training_metrics():
    names = [f"l{i}" for i in range(12)]
    metrics = {"large_labels": 10, "top_k": [1, 2], "train": False}
    model = small_model(
        label_names=names, metrics=metrics, train_label_counts=[3] * 12, train_size=40
    )
    assert "psp_at_2" in model.val_metrics and "map_macro" not in model.test_metrics
    assert not model.train_metrics_on
    batch = (torch.randn(6, 5), (torch.rand(6, 12) < 0.3).float())
    model._is_logging_step = lambda: False  # no trainer attached: no step logging
    model._step(batch, "train")
    model._step(batch, "val")
    assert model._metric_updates["train"]._elements == 0
    assert model._metric_updates["val"]._elements == 6 * 12
    # the options and counts travel with the hyperparameters (a checkpoint rebuilds the same)
    assert model.hparams.metrics == metrics and model.hparams.train_size == 40
