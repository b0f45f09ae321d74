"""A one-vs-rest linear baseline on WordNet, on the split and with the metrics of ``data=wordnet``.

    python benchmarks/wordnet_baseline.py          # writes benchmarks/results/wordnet_baseline.json
    python benchmarks/wordnet_baseline.py --epochs 2 --max-features 2000 --json /tmp/b.json

The model: TF-IDF features of each gloss (scikit-learn's ``TfidfVectorizer``, sublinear term
frequency, words seen in at least two training glosses, the ``--max-features`` most frequent),
then one independent logistic regression per label, ``p_l = sigmoid(w_l . x + b_l)``, trained
jointly with plain binary cross-entropy (mean over examples and labels) and Adagrad, the usual
optimiser of sparse linear models. That is a linear layer on TF-IDF features; it is stored as an
``nn.EmbeddingBag`` (one row of ``L`` weights per feature, summed with the TF-IDF values as
weights) so that a step only touches the rows of the features present in the batch. The Adagrad
step on those rows is written out (``sparse_adagrad_step``): ``torch.optim.SparseAdam`` and
``Adagrad`` coalesce the ``[tokens in the batch, L]`` sparse gradient first, which took seconds
per step here at 17k labels. The epoch with the best validation macro-F1 (at
0.5, as the template's checkpointing follows ``val/f1_macro``) is tested with the template's own
large-label metric collection (``sigmoidf1.metrics.build_metrics``, training label counts for
psp@k), so its numbers compare directly with ``test_metrics.json`` of ``sigmoidf1-train
data=wordnet``.

The data comes from the ``data=wordnet`` config (same ``seed``, fractions and label filter); the
tarball must be in ``<data_dir>/wordnet/`` or fetchable with npm. One thread by default.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(REPO_ROOT / "data"))
    parser.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides of the data")
    parser.add_argument("--max-features", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seeds the initialisation and order")
    parser.add_argument(
        "--json", default=str(REPO_ROOT / "benchmarks/results/wordnet_baseline.json")
    )
    return parser.parse_args()


def wordnet_datamodule(data_dir: str, overrides: list[str]):
    """The DataModule exactly as ``sigmoidf1-train data=wordnet`` builds it (set up)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["data=wordnet", *overrides], return_hydra_config=False)
    datamodule = instantiate(cfg.data, data_dir=data_dir)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule, cfg


def sparse_batches(features, order, batch_size: int):
    """``(input ids [nnz], offsets [B], tf-idf weights [nnz], rows)`` of CSR rows, in ``order``."""
    import numpy as np
    import torch

    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        block = features[rows]
        lengths = np.diff(block.indptr)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        yield (
            torch.from_numpy(block.indices.astype(np.int64)),
            torch.from_numpy(offsets.astype(np.int64)),
            torch.from_numpy(block.data.astype(np.float32)),
            rows,
        )


def sparse_adagrad_step(weight, accumulator, lr: float, eps: float = 1e-10) -> None:
    """Adagrad on the rows of ``weight`` that its sparse gradient touches, in place:
    ``G_r += g_r^2``, ``w_r -= lr g_r / (sqrt(G_r) + eps)`` (repeated rows summed first)."""
    import torch

    grad = weight.grad
    rows, values = grad._indices()[0], grad._values()
    unique, inverse = torch.unique(rows, return_inverse=True)
    summed = torch.zeros(len(unique), values.shape[1]).index_add_(0, inverse, values)
    accumulator.index_add_(0, unique, summed * summed)
    step = summed.div_(accumulator[unique].sqrt_().add_(eps)).mul_(-lr)
    weight.data.index_add_(0, unique, step)
    weight.grad = None


def main() -> None:
    args = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import numpy as np
    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer
    from torch import nn

    sys.path.insert(0, str(REPO_ROOT / "src"))
    from sigmoidf1.metrics import build_metrics, label_counts

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    datamodule, cfg = wordnet_datamodule(args.data_dir, args.overrides)
    examples, splits = datamodule.examples, datamodule.split_rows
    texts = {split: [examples.texts[i] for i in rows] for split, rows in splits.items()}
    targets = {split: examples.targets.select(rows) for split, rows in splits.items()}
    num_labels = len(datamodule.label_names)

    vectorizer = TfidfVectorizer(
        sublinear_tf=True, min_df=2, max_features=args.max_features, lowercase=True
    )
    features = {"train": vectorizer.fit_transform(texts["train"])}
    for split in ("val", "test"):
        features[split] = vectorizer.transform(texts[split])
    num_features = len(vectorizer.vocabulary_)

    weights = nn.EmbeddingBag(num_features, num_labels, mode="sum", sparse=True)
    nn.init.zeros_(weights.weight)
    bias = nn.Parameter(torch.zeros(num_labels))
    accumulator = torch.zeros_like(weights.weight)
    dense_opt = torch.optim.Adagrad([bias], lr=args.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    counts, train_size = label_counts(datamodule.train_set)
    metric_options = {
        "train_label_counts": counts,
        "train_size": train_size,
        **{k: v for k, v in cfg.model.metrics.items() if k != "train"},  # build_metrics' options
    }

    def logits_of(ids, offsets, tfidf):
        return weights(ids, offsets, per_sample_weights=tfidf) + bias

    @torch.inference_mode()
    def evaluate(split: str) -> dict[str, float]:
        metrics = build_metrics(num_labels, f"{split}/", **metric_options)
        order = np.arange(features[split].shape[0])
        for ids, offsets, tfidf, rows in sparse_batches(features[split], order, 1024):
            dense = torch.stack([targets[split][int(i)] for i in rows]).int()
            metrics.update(torch.sigmoid(logits_of(ids, offsets, tfidf)), dense)
        return {k: float(v) for k, v in metrics.compute().items()}

    history, best, best_state = [], -1.0, None
    generator = np.random.default_rng(args.seed)
    for epoch in range(args.epochs):
        epoch_start = time.perf_counter()
        order = generator.permutation(features["train"].shape[0])
        total = 0.0
        batches = sparse_batches(features["train"], order, args.batch_size)
        for step, (ids, offsets, tfidf, rows) in enumerate(batches):
            if step % 50 == 0:
                print(f"epoch {epoch} step {step}", file=sys.stderr, flush=True)
            dense = torch.stack([targets["train"][int(i)] for i in rows])
            loss = loss_fn(logits_of(ids, offsets, tfidf), dense)
            dense_opt.zero_grad()
            loss.backward()
            sparse_adagrad_step(weights.weight, accumulator, args.lr)
            dense_opt.step()
            total += float(loss.detach()) * len(rows)
        val = evaluate("val")
        history.append(
            {
                "epoch": epoch,
                "train_loss": total / len(order),
                "val/f1_macro": val["val/f1_macro"],
                "val/f1_micro": val["val/f1_micro"],
                "seconds": round(time.perf_counter() - epoch_start, 1),
            }
        )
        print(json.dumps(history[-1]), flush=True)
        if val["val/f1_macro"] > best:
            best = val["val/f1_macro"]
            best_state = (weights.weight.detach().clone(), bias.detach().clone(), epoch)
    weights.weight.data.copy_(best_state[0])
    bias.data.copy_(best_state[1])
    test = evaluate("test")
    result = {
        "command": "python benchmarks/wordnet_baseline.py " + " ".join(sys.argv[1:]),
        "model": "TF-IDF + one logistic regression per label (linear layer, BCE, Adagrad)",
        "num_labels": num_labels,
        "num_features": num_features,
        "split": {split: len(rows) for split, rows in splits.items()},
        "epochs": args.epochs,
        "best_epoch": best_state[2],
        "history": history,
        "test": test,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": args.threads,
        "load_average": os.getloadavg(),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: round(v, 4) for k, v in test.items()}, indent=1))


if __name__ == "__main__":
    main()
