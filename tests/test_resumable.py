"""The pieces of exact resumption, one at a time (fast; the CLI tests are in test_resume.py)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import TensorDataset

from sigmoidf1.callbacks import InterruptCheckpoint, ModelCheckpoint
from sigmoidf1.data.resumable import (
    EpochShuffleDistributedSampler,
    EpochShuffleSampler,
    ResumableDataLoader,
)

DATA = TensorDataset(torch.arange(100).float().unsqueeze(1))


def batches(loader, epoch: int, count: int | None = None) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)
    out = []
    for (x,) in loader:
        out.append(x.squeeze(1).int().tolist())
        if count is not None and len(out) == count:
            break
    return out


def test_order_depends_on_seed_and_epoch_only():
    a, b = EpochShuffleSampler(100, seed=3), EpochShuffleSampler(100, seed=3)
    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(123)  # the global random state plays no part
    assert list(b) == first and sorted(first) == list(range(100))
    a.set_epoch(1)
    assert list(a) != first
    assert list(EpochShuffleSampler(100, seed=4)) != first


def test_iterating_does_not_consume_the_global_random_state():
    loader = ResumableDataLoader(DATA, batch_size=10, seed=0, generator=torch.Generator())
    before = torch.get_rng_state()
    batches(loader, epoch=0)
    assert torch.equal(torch.get_rng_state(), before)


def test_mid_epoch_state_resumes_with_the_remaining_batches():
    loader = ResumableDataLoader(DATA, batch_size=8, seed=1)
    full = batches(loader, epoch=2)
    batches(loader, epoch=2, count=5)
    state = loader.state_dict()
    assert state == {"seed": 1, "epoch": 2, "batches": 5}

    fresh = ResumableDataLoader(DATA, batch_size=8, seed=1)
    fresh.load_state_dict(state)
    assert batches(fresh, epoch=2) == full[5:]
    assert fresh.state_dict()["batches"] == len(full)
    assert batches(fresh, epoch=2) == full  # the skip applies once


def test_an_end_of_epoch_state_starts_the_next_epoch_from_its_beginning():
    loader = ResumableDataLoader(DATA, batch_size=8, seed=1)
    expected = batches(loader, epoch=3)
    batches(loader, epoch=2, count=4)  # e.g. limit_train_batches=4: the epoch ended early
    fresh = ResumableDataLoader(DATA, batch_size=8, seed=1)
    fresh.load_state_dict(loader.state_dict())
    assert batches(fresh, epoch=3) == expected


def test_a_different_seed_is_refused_and_no_seed_adopts_the_checkpoints():
    state = {"seed": 1, "epoch": 0, "batches": 3}
    with pytest.raises(ValueError, match="same seed"):
        ResumableDataLoader(DATA, batch_size=8, seed=2).load_state_dict(state)
    unseeded = ResumableDataLoader(DATA, batch_size=8, seed=None)
    unseeded.load_state_dict(state)
    assert unseeded.seed == 1 and unseeded.sampler.seed == 1


def test_ranks_share_the_single_process_order_global_batch_by_global_batch():
    """Under DDP each of W ranks takes every W-th index of the one-process permutation: the ranks'
    j-th batches together are the j-th batch of one process (same seed, global batch W * b)."""
    single = batches(ResumableDataLoader(DATA, batch_size=10, seed=5), epoch=1)
    per_rank = []
    for rank in range(2):
        sampler = EpochShuffleDistributedSampler(DATA, num_replicas=2, rank=rank, seed=5)
        loader = ResumableDataLoader(DATA, batch_size=5, seed=5, sampler=sampler)
        per_rank.append(batches(loader, epoch=1))
    assert len(per_rank[0]) == len(per_rank[1]) == len(single)
    for j, global_batch in enumerate(single):
        assert sorted(per_rank[0][j] + per_rank[1][j]) == sorted(global_batch)


def test_ranks_pad_to_the_same_length_and_resume_mid_epoch():
    data = TensorDataset(torch.arange(11).float().unsqueeze(1))  # 11 examples on 3 ranks: 1 padded
    shares = [list(EpochShuffleDistributedSampler(data, 3, rank, seed=0)) for rank in range(3)]
    assert [len(share) for share in shares] == [4, 4, 4]
    assert sorted(set(sum(shares, []))) == list(range(11))

    sampler = EpochShuffleDistributedSampler(DATA, num_replicas=2, rank=1, seed=2)
    loader = ResumableDataLoader(DATA, batch_size=4, seed=2, sampler=sampler)
    full = batches(loader, epoch=3)
    batches(loader, epoch=3, count=6)
    fresh_sampler = EpochShuffleDistributedSampler(DATA, num_replicas=2, rank=1, seed=2)
    fresh = ResumableDataLoader(DATA, batch_size=4, seed=2, sampler=fresh_sampler)
    fresh.load_state_dict(loader.state_dict())
    assert batches(fresh, epoch=3) == full[6:]


def fitting_trainer() -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(fn="fit"))


def test_model_checkpoint_carries_its_record_into_a_new_directory(tmp_path):
    old, new = tmp_path / "old" / "checkpoints", tmp_path / "new" / "checkpoints"
    old.mkdir(parents=True)
    best, other = old / "epoch_001.ckpt", old / "epoch_000.ckpt"
    best.write_bytes(b"best"), other.write_bytes(b"other")
    state = {
        "monitor": "val/f1_macro",
        "dirpath": str(old),
        "best_model_path": str(best),
        "best_model_score": torch.tensor(0.4),
        "current_score": torch.tensor(0.3),
        "best_k_models": {str(best): torch.tensor(0.4), str(other): torch.tensor(0.3)},
        "kth_best_model_path": str(other),
        "kth_value": torch.tensor(0.3),
        "last_model_path": str(old / "last.ckpt"),
    }
    callback = ModelCheckpoint(dirpath=str(new), monitor="val/f1_macro", mode="max", save_top_k=2)
    callback.on_load_checkpoint(fitting_trainer(), None, {})
    callback.load_state_dict(state)

    assert callback.best_model_path == str(new / "epoch_001.ckpt")
    assert (new / "epoch_001.ckpt").read_bytes() == b"best" and best.exists()  # copied, not moved
    assert callback.best_model_score == torch.tensor(0.4)
    assert set(callback.best_k_models) == {str(new / "epoch_001.ckpt"), str(new / "epoch_000.ckpt")}
    assert callback.kth_best_model_path == str(new / "epoch_000.ckpt")


def test_model_checkpoint_falls_back_when_old_files_are_gone(tmp_path):
    state = {
        "monitor": "val/f1_macro",
        "dirpath": str(tmp_path / "gone"),
        "best_model_path": str(tmp_path / "gone" / "x.ckpt"),
        "best_model_score": torch.tensor(1.0),
        "best_k_models": {str(tmp_path / "gone" / "x.ckpt"): torch.tensor(1.0)},
    }
    callback = ModelCheckpoint(dirpath=str(tmp_path / "new"), monitor="val/f1_macro", mode="max")
    callback.on_load_checkpoint(fitting_trainer(), None, {})
    with pytest.warns(UserWarning, match="dirpath has changed"):
        callback.load_state_dict(state)  # Lightning's own behaviour
    assert callback.best_k_models == {}


class _Trainer(SimpleNamespace):
    def save_checkpoint(self, path, weights_only=False):
        self.saved = path


@pytest.mark.parametrize(
    ("exception", "step", "saved"),
    [
        (RuntimeError("crash"), 5, True),
        (FloatingPointError("nan"), 5, False),
        (KeyboardInterrupt(), 5, False),
        (ValueError("bad data file"), 0, False),  # nothing trained yet
    ],
)
def test_interrupt_checkpoint_saves_only_resumable_states(tmp_path, exception, step, saved):
    callback = InterruptCheckpoint(dirpath=str(tmp_path))
    progress = SimpleNamespace(current=SimpleNamespace(completed=step))
    trainer = _Trainer(
        state=SimpleNamespace(fn="fit"),
        global_step=step,
        current_epoch=0,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
        saved=None,
        world_size=1,
    )
    callback.on_exception(trainer, torch.nn.Linear(2, 2), exception)
    assert (trainer.saved == callback.ckpt_path) is saved


def test_interrupt_checkpoint_refuses_non_finite_weights(tmp_path):
    callback = InterruptCheckpoint(dirpath=str(tmp_path))
    module = torch.nn.Linear(2, 2)
    with torch.no_grad():
        module.weight[0, 0] = float("nan")
    progress = SimpleNamespace(current=SimpleNamespace(completed=3))
    trainer = _Trainer(
        state=SimpleNamespace(fn="fit"),
        global_step=3,
        current_epoch=0,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
        saved=None,
        world_size=1,
    )
    callback.on_exception(trainer, module, RuntimeError("crash"))
    assert trainer.saved is None


@pytest.mark.parametrize(
    ("exception", "saved"), [(RuntimeError("crash"), False), ("sigterm", True)]
)
def test_interrupt_checkpoint_in_a_distributed_run_saves_only_on_sigterm(
    tmp_path, exception, saved
):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    exception = SIGTERMException() if exception == "sigterm" else exception
    callback = InterruptCheckpoint(dirpath=str(tmp_path))
    progress = SimpleNamespace(current=SimpleNamespace(completed=3))
    trainer = _Trainer(
        state=SimpleNamespace(fn="fit"),
        global_step=3,
        current_epoch=0,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
        saved=None,
        world_size=2,
    )
    callback.on_exception(trainer, torch.nn.Linear(2, 2), exception)
    assert (trainer.saved == callback.ckpt_path) is saved


class _ScriptedScore(L.LightningModule):
    """One weight; epoch ``e`` logs ``val/score = scores[e]`` and stores ``e`` in the weight."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = scores
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.weight * batch[0]).sum() * 0.0

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self) -> None:
        self.log("val/score", self.scores[self.current_epoch])
        with torch.no_grad():
            self.weight.fill_(self.current_epoch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class _RecordFiles(L.Callback):
    """After each epoch's checkpointing (at the next epoch start and at fit end): the epoch stored
    in last.ckpt and in the best file, and whether the two share their bytes."""

    def __init__(self, checkpoint: ModelCheckpoint) -> None:
        self.checkpoint, self.seen = checkpoint, []

    def _record(self) -> None:
        last, best = Path(self.checkpoint.last_model_path), Path(self.checkpoint.best_model_path)
        load = functools.partial(torch.load, weights_only=True)
        self.seen.append((load(last)["epoch"], load(best)["epoch"], os.path.samefile(last, best)))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch > 0:
            self._record()

    def on_fit_end(self, trainer, pl_module) -> None:
        self._record()


def test_last_checkpoint_links_to_the_epochs_checkpoint_only_when_saved_at_the_same_step(tmp_path):
    scores = [0.1, 0.3, 0.2, 0.5, 0.4, 0.6]
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path,
        filename="epoch_{epoch:03d}",
        monitor="val/score",
        mode="max",
        save_last=True,
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    record = _RecordFiles(checkpoint)
    data = torch.utils.data.DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=2)
    trainer = L.Trainer(
        max_epochs=len(scores),
        callbacks=[checkpoint, record],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(_ScriptedScore(scores), data, data)
    # (epoch in last.ckpt, epoch in the best file, same bytes): last.ckpt is always the latest
    # epoch; linked where that epoch improved, a file of its own where it did not
    assert record.seen == [
        (0, 0, True),
        (1, 1, True),
        (2, 1, False),
        (3, 3, True),
        (4, 3, False),
        (5, 5, True),
    ]
    # the replaced best files are gone, and no write through last.ckpt changed the best file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_005.ckpt", "last.ckpt"]
    best = torch.load(tmp_path / "epoch_005.ckpt", weights_only=True)
    assert best["state_dict"]["weight"].item() == 5.0
