"""``sigmoidf1-predict`` on each modality: train a small model with the real CLI, then predict."""

from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from sigmoidf1.data.base import split_indices
from sigmoidf1.data.yeast import NUM_LABELS, read_yeast, river_yeast_path
from tests.conftest import (
    CONFIG_DIR,
    QUIET,
    once_per_session,
    read_json,
    run_cli,
    train_text_model,
)

pytestmark = pytest.mark.slow

YEAST_SEED = 42  # train.yaml's seed: the split that the run below tests on


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return [json.loads(line) for line in handle]


def predict(workdir: Path, checkpoint: Path, inputs: Path, output: Path, *extra: str):
    return run_cli(
        "predict",
        f"ckpt_path={checkpoint}",
        f"input={inputs}",
        f"output={output}",
        "decimals=null",
        *extra,
        cwd=workdir,
    )


# --- tabular (Yeast) ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def yeast_run(tmp_path_factory) -> Path:
    """A Yeast model trained once for the tests below."""

    def build(root: Path) -> None:
        run_cli("train", *QUIET, "trainer.max_epochs=3", f"hydra.run.dir={root / 'run'}", cwd=root)

    return once_per_session(tmp_path_factory, "predict_yeast", build) / "run"


def yeast_test_rows() -> tuple[list[str], list[list[str]], np.ndarray]:
    """The raw rows of the run's test split, their header, and their targets."""
    with gzip.open(river_yeast_path(), "rt", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    _, targets, _ = read_yeast(river_yeast_path())
    _, _, test = split_indices(len(rows), 0.15, 0.2, YEAST_SEED)
    return header, [rows[i] for i in test], targets[test]


def test_yeast_predictions_reproduce_the_test_metrics(yeast_run, workdir):
    """Predicting the test split's raw rows gives the labels the test metrics were computed from."""
    header, rows, targets = yeast_test_rows()
    # columns by name: shuffled, with an extra id column and without the labels
    features = [name for name in header if name.startswith("Att")]
    order = random.Random(0).sample(features, len(features))
    inputs = workdir / "rows.csv"
    with open(inputs, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["gene", *order])
        for n, row in enumerate(rows):
            values = dict(zip(header, row, strict=True))
            writer.writerow([f"g{n}", *(values[name] for name in order)])

    checkpoint = next((yeast_run / "checkpoints").glob("epoch_*.ckpt"))  # the one that was tested
    output = workdir / "predictions.jsonl"
    result = predict(workdir, checkpoint, inputs, output)
    assert f"Wrote {len(rows)} predictions to {output}" in result.stdout + result.stderr

    lines = read_jsonl(output)
    names = [f"Class{i}" for i in range(1, NUM_LABELS + 1)]
    assert len(lines) == len(rows)
    for line in lines:
        assert set(line) == {"labels", "scores"} and list(line["scores"]) == names
        assert all(0.0 <= p <= 1.0 for p in line["scores"].values())
        assert line["labels"] == [n for n in names if line["scores"][n] >= 0.5]  # thresholds 0.5

    predicted = np.array([[name in line["labels"] for name in names] for line in lines])
    truth = targets.astype(bool)
    tp = (predicted & truth).sum()
    f1_micro = 2 * tp / (predicted.sum() + truth.sum())
    exact = (predicted == truth).all(axis=1).mean()
    tested = read_json(yeast_run / "test_metrics.json")
    assert f1_micro == pytest.approx(tested["test/f1_micro"], abs=1e-6)
    assert exact == pytest.approx(tested["test/exact_match"], abs=1e-6)


def test_yeast_predictions_use_the_stored_thresholds(yeast_run, workdir):
    """Edit the checkpoint's thresholds: predict must follow them, label by label (JSONL.gz in)."""
    source = torch.load(yeast_run / "checkpoints" / "last.ckpt", weights_only=True)
    thresholds = torch.linspace(0.05, 0.95, NUM_LABELS)
    source["state_dict"]["thresholds"] = thresholds
    checkpoint = workdir / "tuned.ckpt"
    torch.save(source, checkpoint)

    header, rows, _ = yeast_test_rows()
    inputs = workdir / "rows.jsonl.gz"
    with gzip.open(inputs, "wt") as handle:
        for row in rows[:50]:
            handle.write(
                json.dumps(
                    {k: float(v) for k, v in zip(header, row, strict=True) if k.startswith("Att")}
                )
                + "\n"
            )
    output = workdir / "out" / "predictions.jsonl.gz"
    predict(workdir, checkpoint, inputs, output)
    lines = read_jsonl(output)
    assert len(lines) == 50
    names = list(lines[0]["scores"])
    decided = 0
    for line in lines:
        expected = [
            n
            for n, t in zip(names, thresholds.tolist(), strict=True)
            if line["scores"][n] >= t + 1e-6
        ]
        near = [
            n
            for n, t in zip(names, thresholds.tolist(), strict=True)
            if abs(line["scores"][n] - t) <= 1e-6
        ]
        assert [n for n in line["labels"] if n not in near] == expected
        decided += len(line["labels"])
    assert 0 < decided < 50 * NUM_LABELS


def test_predict_names_missing_columns(yeast_run, workdir, cli):
    inputs = workdir / "few.csv"
    inputs.write_text("gene,Att1,Att2\ng1,0.1,0.2\n")
    result = cli(
        "predict", f"ckpt_path={yeast_run / 'checkpoints' / 'last.ckpt'}", f"input={inputs}"
    )
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")][-1]
    assert str(inputs) in error and "Att3" in error and "columns present: gene, Att1, Att2" in error
    missing = workdir / "nope.csv"
    result = cli(
        "predict", f"ckpt_path={yeast_run / 'checkpoints' / 'last.ckpt'}", f"input={missing}"
    )
    assert result.returncode == 1 and str(missing) in result.stderr


# --- text and image -------------------------------------------------------------------------------
# These use only the shared DataModule interface (``data=csv_text|csv_image data.path=FILE``, the
# CSV format of DESIGN.md, ``predict_dataset``); they run once the DataModules are on the branch.
TEXT_LABELS = ["sport", "politics", "science"]
TEXT_WORDS = {
    "sport": ["match", "goal", "team"],
    "politics": ["vote", "law", "party"],
    "science": ["atom", "cell", "theory"],
}


def needs(option: str):
    return pytest.mark.skipif(
        not (CONFIG_DIR / "data" / f"{option}.yaml").exists(),
        reason=f"the {option} DataModule comes with the `data` branch",
    )


def check_predictions(lines: list[dict], count: int, labels: list[str]) -> None:
    assert len(lines) == count
    for line in lines:
        assert set(line["scores"]) == set(labels)
        assert set(line["labels"]) <= set(labels)
        assert all(0.0 <= p <= 1.0 for p in line["scores"].values())


@needs("csv_text")
def test_text_checkpoint_predicts(workdir):
    rng = random.Random(0)
    rows = []
    for _ in range(120):
        chosen = rng.sample(TEXT_LABELS, rng.randint(1, 2))
        words = [w for label in chosen for w in rng.sample(TEXT_WORDS[label], 2)] + ["the", "a"]
        rng.shuffle(words)
        rows.append((" ".join(words), "|".join(chosen)))
    train = workdir / "texts.csv"
    with open(train, "w", newline="") as handle:
        csv.writer(handle).writerows([("text", "labels"), *rows])
    checkpoint = train_text_model(workdir, train)

    inputs = workdir / "new.jsonl"
    inputs.write_text(
        "".join(
            json.dumps({"text": t}) + "\n"
            for t in ["goal by the team", "a new law", "cell theory", "x"]
        )
    )
    output = workdir / "predictions.jsonl"
    predict(workdir, checkpoint, inputs, output)
    check_predictions(read_jsonl(output), 4, TEXT_LABELS)


@needs("csv_image")
def test_image_checkpoint_predicts(workdir):
    from PIL import Image

    rng = np.random.default_rng(0)
    names = ["red", "green", "blue"]
    images = workdir / "images"
    images.mkdir()
    rows = []
    for n in range(60):
        present = [c for c in range(3) if rng.random() < 0.5] or [n % 3]
        pixels = np.zeros((16, 16, 3), dtype=np.uint8)
        for channel in present:
            pixels[..., channel] = 200
        Image.fromarray(pixels).save(images / f"{n}.png")
        rows.append((f"images/{n}.png", "|".join(names[c] for c in present)))
    train = workdir / "images.csv"
    with open(train, "w", newline="") as handle:
        csv.writer(handle).writerows([("image", "labels"), *rows])
    run_cli(
        "train",
        *QUIET,
        "data=csv_image",
        f"data.path={train}",
        "data.batch_size=8",
        "data.image_size=16",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        f"hydra.run.dir={workdir / 'run'}",
        cwd=workdir,
    )

    inputs = workdir / "new.csv"
    inputs.write_text("image\n" + "".join(f"images/{n}.png\n" for n in range(5)))
    output = workdir / "predictions.jsonl"
    predict(workdir, workdir / "run" / "checkpoints" / "last.ckpt", inputs, output)
    check_predictions(read_jsonl(output), 5, names)
