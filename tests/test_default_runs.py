"""The default run of every data config learns, and a default run prints nothing but its report.

Each dataset's default command (``sigmoidf1-train data=<name>``: the data group alone, default loss,
model, trainer and callbacks) goes through the real CLI on data whose inputs reveal the labels:
Yeast itself, and for the datasets that cannot be downloaded here small files in their real formats
(``tests/data_fixtures.py``). Only where the data lives and sizes are appended (examples, epochs,
batch size, image size). Its test micro-F1 must beat the frequent-labels baseline that the run
reports itself (``test_baseline/f1_micro``, ``sigmoidf1.baseline``: the best constant label set
of the training split, scored by the same metric object).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from sigmoidf1.baseline import BASELINE_KEY
from sigmoidf1.data.download import file_integrity
from tests.conftest import (
    DESIGN_TEST_METRICS,
    once_per_session,
    read_json,
    run_cli,
    run_dir_from_output,
)
from tests.data_fixtures import (
    image_rows,
    text_rows,
    write_glyph_fashion_mnist,
    write_learnable_coco,
    write_learnable_voc,
    write_reuters_tarball,
    write_synthetic_wordnet_tarball,
    write_text_file,
)

pytestmark = pytest.mark.slow

# What a user sees: Python's warnings as configured by default (run_cli silences them otherwise).
USER_ENV = {"PYTHONWARNINGS": ""}


def npm_archive(path: Path) -> list[str]:
    return [f"data.archive={path}", f"data.integrity='{file_integrity(path)}'"]


def reuters(root: Path) -> list[str]:
    # 36 training stories: the default batch of 256 would exceed the split
    return [*npm_archive(write_reuters_tarball(root / "reuters.tgz")), "data.batch_size=16"]


def wordnet(root: Path) -> list[str]:
    archive = write_synthetic_wordnet_tarball(root / "wordnet.tgz")  # 254 training glosses
    return [*npm_archive(archive), "data.batch_size=32", "trainer.max_epochs=10"]


def multi_fashion_mnist(root: Path) -> list[str]:
    source = write_glyph_fashion_mnist(root / "fashion-mnist")
    return [
        f"data.source_dir={source}",
        "data.num_train=1000",
        "data.num_val=200",
        "data.num_test=400",
    ]


def coco(root: Path) -> list[str]:
    return [f"data.root={write_learnable_coco(root / 'coco')}", "data.image_size=32"]


def voc(root: Path) -> list[str]:
    return [f"data.root={write_learnable_voc(root / 'voc')}", "data.image_size=32"]


def csv_text(root: Path) -> list[str]:
    return [f"data.path={write_text_file(root / 'texts.csv', text_rows(200))}"]


def csv_image(root: Path) -> list[str]:
    data = write_text_file(root / "images.csv", image_rows(root, 120))
    return [f"data.path={data}", "data.image_size=32"]


FIXTURES = {
    "reuters": reuters,
    "wordnet": wordnet,
    "multi_fashion_mnist": multi_fashion_mnist,
    "coco": coco,
    "voc": voc,
    "csv_text": csv_text,
    "csv_image": csv_image,
}


def assert_beats_the_baseline(name: str, run_dir: Path) -> None:
    metrics = read_json(run_dir / "test_metrics.json")
    model, baseline = metrics["test/f1_micro"], metrics[BASELINE_KEY]
    print(f"{name}: test micro-F1 {model:.4f}, frequent-labels baseline {baseline:.4f}")
    assert model > baseline, f"{name}: the default run did not learn ({model} <= {baseline})"


def test_every_data_config_has_a_default_run_here():
    configs = {p.stem for p in (Path(__file__).parents[1] / "configs" / "data").glob("*.yaml")}
    assert configs == {"yeast", *FIXTURES}


@pytest.fixture(scope="session")
def yeast_default(tmp_path_factory) -> subprocess.CompletedProcess:
    """``sigmoidf1-train`` exactly as documented, from an empty folder, warnings on: run once for
    the test session, whichever worker asks first."""

    def build(root: Path) -> None:
        result = run_cli("train", cwd=root, env=USER_ENV)
        (root / "stdout.txt").write_text(result.stdout)
        (root / "stderr.txt").write_text(result.stderr)

    root = once_per_session(tmp_path_factory, "yeast_default", build)
    return subprocess.CompletedProcess(
        ["sigmoidf1-train"], 0, (root / "stdout.txt").read_text(), (root / "stderr.txt").read_text()
    )


def test_yeast_default_run_learns(yeast_default):
    assert_beats_the_baseline("yeast", run_dir_from_output(yeast_default))


@pytest.mark.parametrize("name", list(FIXTURES))
def test_default_run_learns(name, tmp_path):
    result = run_cli("train", f"data={name}", *FIXTURES[name](tmp_path), cwd=tmp_path)
    assert_beats_the_baseline(name, run_dir_from_output(result))


# --- no noise ---------------------------------------------------------------------------------
# Lines a default run must not print: Lightning's uncounted FLOPs, its TPU line and the checkpoint
# lines that repeat the pipeline's own, its advertisement, Python warnings (``UserWarning``,
# Lightning's ``file.py:12: message`` form, logged ``[WARNING]`` lines) and tracebacks
NOISE = re.compile(
    r"FLOPs|TPU available|Restoring states|Loaded model weights|💡"
    r"|Warning\b|\[WARNING\]|^\S+\.py:\d+: |Traceback"
)


def noise_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if NOISE.search(line)]


def test_the_noise_patterns_match_what_they_are_for():
    lightning_warning = "/x/lightning/fabric/plugins/environments/slurm.py:204: The `srun` ..."
    for line in (
        "Total FLOPs: 0",
        "TPU available: False, using: 0 TPU cores",
        lightning_warning,
        "/x/y.py:3: UserWarning: something",
        "[2026-12-06 05:26:18,396][sigmoidf1.pipeline][WARNING] - the model does not beat ...",
        "Traceback (most recent call last):",
    ):
        assert noise_lines(line) == [line], line
    for line in ("│       deterministic: warn", "│   └── ignore_warnings: true", "Epoch 3/39"):
        assert noise_lines(line) == [], line


def test_default_run_prints_no_noise(yeast_default):
    output = yeast_default.stdout + yeast_default.stderr
    assert not noise_lines(output), noise_lines(output)
    for line in ("Instantiating data", "Starting training", "Test metrics", "Run directory:"):
        assert output.count(line) == 1, line
    assert "Trainable params" in output  # the model summary is still there, without FLOPs


def test_ddp_cpu_default_run_one_directory_test_metrics_and_rank_zero_alone_speaks(tmp_path):
    """``sigmoidf1-train trainer=ddp_cpu`` with every default: 2 processes, one run directory with
    its test metrics, a model that learns, and nothing printed by rank 1."""
    result = run_cli("train", "trainer=ddp_cpu", cwd=tmp_path, env=USER_ENV)
    run_dir = run_dir_from_output(result)
    assert [p.name for p in (tmp_path / "logs" / "train" / "runs").iterdir()] == [run_dir.name]
    assert set(read_json(run_dir / "test_metrics.json")) >= DESIGN_TEST_METRICS
    assert_beats_the_baseline("yeast, trainer=ddp_cpu", run_dir)
    output = result.stdout + result.stderr
    assert not noise_lines(output), noise_lines(output)
    assert "GLOBAL_RANK: 1" not in output  # rank 1's console shows warnings and errors only
    for line in ("Instantiating data", "Starting training", "Test metrics", "Run directory:"):
        assert output.count(line) == 1, line
