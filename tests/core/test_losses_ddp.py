"""sync_dist under real DDP: two gloo processes on CPU reproduce one process on the global batch.

Each rank feeds its shard (uneven on purpose: 5 and 7 samples) of a fixed global batch through a
float64 ``DistributedDataParallel(nn.Linear(8, 5))`` and backpropagates a loss that syncs over
ranks: a sigmoidF1-family loss (soft counts) or two_way (its label-wise term and sample mean).
After DDP's gradient averaging, the parameter gradients must equal those of a single process on
the whole global batch, and every rank's loss value must be the global loss.
"""

from __future__ import annotations

import os
import socket
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from sigmoidf1.losses import get_loss

pytestmark = pytest.mark.slow

WORLD_SIZE = 2
SHARDS = [slice(0, 5), slice(5, 12)]
CASES = [
    ("sigmoid_f1", {"average": "macro", "sync_dist": True}),
    ("sigmoid_f1", {"average": "micro", "sync_dist": True}),
    ("sigmoid_fbeta", {"f_beta": 2.0, "beta": 2.0, "eta": 0.1, "sync_dist": None}),  # auto
    ("sigmoid_metric", {"metric": "accuracy", "average": "micro", "sync_dist": True}),
    ("sigmoid_precision", {"official_compat": True, "sync_dist": True}),
    ("two_way", {"sync_dist": True}),  # label-wise logsumexps over ranks, sample-wise mean
    ("two_way", {"temperature_pos": 1.0, "temperature_neg": 2.0, "sync_dist": None}),
]
CONTROL = ("sigmoid_f1", {"sync_dist": False})  # local counts: must NOT match the global loss


def make_problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Linear(8, 5).double()
    inputs = torch.randn(12, 8, dtype=torch.float64)
    targets = (torch.rand(12, 5) < 0.4).double()
    targets[0] = 1
    targets[6] = 1
    targets[5:, 4] = 0  # label 4 has positives on rank 0 only
    targets[1, :] = 0  # sample 1 has no positives
    return model, inputs, targets


def run_rank(rank: int, port: int, out_dir: str) -> None:
    """Child process: DDP forward/backward of every case on this rank's shard."""
    try:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group(
            "gloo", rank=rank, world_size=WORLD_SIZE, timeout=timedelta(seconds=60)
        )
        results = []
        for name, kwargs in [*CASES, CONTROL]:
            model, inputs, targets = make_problem()
            ddp = DistributedDataParallel(model)
            shard = SHARDS[rank]
            loss = get_loss(name, **kwargs)(ddp(inputs[shard]), targets[shard])
            loss.backward()
            results.append(
                {
                    "loss": loss.item(),
                    "grads": [p.grad.detach().clone() for p in model.parameters()],
                }
            )
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:
        (Path(out_dir) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def single_process(name: str, kwargs: dict) -> tuple[float, list[torch.Tensor]]:
    model, inputs, targets = make_problem()
    loss = get_loss(name, **{**kwargs, "sync_dist": False})(model(inputs), targets)
    loss.backward()
    return loss.item(), [p.grad for p in model.parameters()]


def test_synced_counts_under_ddp_match_one_process_on_the_global_batch(tmp_path):
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [
        ctx.Process(target=run_rank, args=(rank, port, str(tmp_path))) for rank in range(WORLD_SIZE)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=180)
    hung = [proc for proc in procs if proc.is_alive()]
    for proc in hung:
        proc.terminate()
        proc.join(10)
    errors = "\n".join(p.read_text() for p in sorted(tmp_path.glob("rank*.err")))
    assert not hung, f"DDP workers timed out\n{errors}"
    assert all(proc.exitcode == 0 for proc in procs), (
        f"DDP workers failed: {[p.exitcode for p in procs]}\n{errors}"
    )

    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    for index, (name, kwargs) in enumerate(CASES):
        loss, grads = single_process(name, kwargs)
        for rank, results in enumerate(ranks):
            got = results[index]
            assert got["loss"] == pytest.approx(loss, rel=1e-12, abs=1e-12), (name, kwargs, rank)
            for got_grad, grad in zip(got["grads"], grads, strict=True):
                torch.testing.assert_close(
                    got_grad, grad, rtol=0, atol=1e-9, msg=f"{name} {kwargs} rank {rank}"
                )

    # control: without syncing each rank sees only its shard, so values and gradients differ
    loss, grads = single_process(*CONTROL)
    control = [results[len(CASES)] for results in ranks]
    assert all(abs(c["loss"] - loss) > 1e-4 for c in control)
    assert any((c - g).abs().max() > 1e-4 for c, g in zip(control[0]["grads"], grads, strict=True))
