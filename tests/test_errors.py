"""Bad input: one clear message naming the problem, a non-zero exit code, no traceback.
Unexpected errors (bugs) keep their traceback.

A few cases run the CLI in a subprocess (the real exit code); the others call the same Hydra entry
point in this process (the ``cli`` fixture: ``python -m sigmoidf1.train`` minus the interpreter
start-up, which costs several seconds per case).
"""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import pytest
import torch

from sigmoidf1.data.yeast import river_yeast_path
from tests.conftest import QUIET, REPO_ROOT, run_cli


def yeast_rows(n: int = 40) -> tuple[list[str], list[list[str]]]:
    with gzip.open(river_yeast_path(), "rt", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1 : n + 1]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


def fails(result, exit_code: int, *fragments: str) -> str:
    """A clean failure: the exit code, an ``error:`` line with every fragment, no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == exit_code, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors, f"no 'error:' line:\n{result.stderr[-3000:]}"
    for fragment in fragments:
        assert fragment in errors[-1], f"{fragment!r} not in {errors[-1]!r}"
    assert "Traceback" not in output
    return errors[-1]


def train(workdir: Path, *overrides: str, env: dict | None = None):
    """The real CLI in a subprocess."""
    return run_cli("train", *QUIET, *overrides, cwd=workdir, check=False, env=env)


# --- subprocess: the real exit codes --------------------------------------------------------------
@pytest.mark.slow
def test_missing_data_file_is_named(workdir):
    missing = workdir / "no" / "yeast.csv"
    fails(train(workdir, f"data.path={missing}"), 1, "not found", str(missing))


@pytest.mark.parametrize(
    ("entry", "overrides", "exit_code", "fragments"),
    [
        ("predict", [], 2, ["missing required value", "ckpt_path"]),
        ("predict", ["ckpt_path=nothing.ckpt", "input=rows.csv"], 1, ["ckpt_path not found"]),
        ("eval", ["ckpt_path=nothing.ckpt"], 1, ["ckpt_path not found", "nothing.ckpt"]),
        ("train", ["model/backbone=transformer"], 2, ["model.backbone.model_name_or_path"]),
    ],
)
def test_argument_errors_are_reported_before_torch_is_imported(
    workdir, entry, overrides, exit_code, fragments
):
    """A command line that cannot work is refused in about a second: `-X importtime` lists every
    module the process imported, and torch is not among them."""
    env = {"PYTHONPROFILEIMPORTTIME": "1"}
    result = run_cli(entry, *overrides, cwd=workdir, check=False, env=env)
    fails(result, exit_code, *fragments)
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "hydra" in imported  # the import trace is there
    assert "torch" not in imported and "lightning" not in imported


@pytest.mark.slow
def test_batch_size_larger_than_the_dataset(workdir):
    fails(
        train(workdir, "data.batch_size=100000"),
        2,
        "data.batch_size=100000",
        "larger than the training split",
    )


@pytest.mark.slow
def test_unexpected_errors_keep_their_traceback(workdir):
    # a negative layer width is not a user error we know of: torch raises deep inside the model
    result = train(workdir, "model.backbone.hidden_sizes=[-5]")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "negative dimension" in result.stderr
    assert not any(line.startswith("error:") for line in result.stderr.splitlines())


@pytest.mark.slow
def test_a_bare_value_error_at_run_time_is_a_bug_and_keeps_its_traceback(workdir):
    result = train(
        workdir,
        "+callbacks.bug._target_=tests.helpers.RaiseValueErrorAtTrainStart",
        env={"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "a bug deep inside a callback" in result.stderr
    assert not any(line.startswith("error:") for line in result.stderr.splitlines())


# --- in process: the same entry points, without the interpreter start-up --------------------------


def test_csv_without_label_column_lists_the_columns_present(workdir, cli):
    header, rows = yeast_rows()
    keep = [i for i, name in enumerate(header) if not name.startswith("Class")]
    path = write_csv(
        workdir / "unlabelled.csv",
        ["gene_id"] + [header[i] for i in keep],
        [[f"g{n}"] + [row[i] for i in keep] for n, row in enumerate(rows)],
    )
    fails(
        cli("train", *QUIET, f"data.path={path}"),
        1,
        str(path),
        "no label column",
        "Class",
        "columns present: gene_id, Att1, Att2",
    )


def test_text_csv_without_label_column_lists_the_columns_present(workdir, cli):
    path = workdir / "texts.csv"
    path.write_text("id,text\n1,good movie\n2,bad movie\n3,fine\n")
    fails(cli("train", *QUIET, "data=csv_text", f"data.path={path}"), 1, "labels", "id", "text")


def test_label_free_dataset_is_refused(workdir, cli):
    header, rows = yeast_rows()
    labels = [i for i, name in enumerate(header) if name.startswith("Class")]
    rows = [[("0" if i in labels else value) for i, value in enumerate(row)] for row in rows]
    path = write_csv(workdir / "no_positives.csv", header, rows)
    fails(cli("train", *QUIET, f"data.path={path}"), 1, str(path), "no example has any label")


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_features_are_refused(workdir, cli, bad):
    header, rows = yeast_rows()
    rows[1][0] = bad
    path = write_csv(workdir / "non_finite.csv", header, rows)
    fails(
        cli("train", *QUIET, f"data.path={path}"),
        1,
        str(path),
        "non-finite feature value in data row 2",
    )


def test_unknown_option_value_names_the_value_and_the_choices(cli):
    message = fails(
        cli("train", *QUIET, "loss.average=median"), 2, "`loss`", "median", "macro", "micro"
    )
    assert "Error in call to target" not in message  # Hydra's wrapper is unwrapped


def test_unknown_config_option_lists_the_available_ones(cli):
    result = cli("train", *QUIET, "data=no_such_dataset")
    assert result.returncode == 1
    assert "no_such_dataset" in result.stderr and "yeast" in result.stderr  # Hydra's own message
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_nan_loss_stops_with_the_step_and_writes_no_checkpoint(workdir, cli):
    run_dir = workdir / "diverged"
    result = cli("train", *QUIET, "model.optimizer.lr=1e30", f"hydra.run.dir={run_dir}")
    fails(result, 1, "non-finite training loss", "at global step")
    assert not list(run_dir.rglob("*.ckpt"))
    assert "Training diverged: no checkpoint written" in result.stdout + result.stderr


def test_eval_without_checkpoint_asks_for_it(cli):
    fails(cli("eval", *QUIET[:1]), 2, "missing required value: ckpt_path")


def test_truncated_checkpoint_is_named(workdir, cli):
    path = workdir / "truncated.ckpt"
    buffer = workdir / "whole.ckpt"
    torch.save({"sigmoidf1": {}, "state_dict": {"w": torch.zeros(1000)}}, buffer)
    path.write_bytes(buffer.read_bytes()[:2000])
    fails(cli("eval", f"ckpt_path={path}", *QUIET[:1]), 1, str(path), "truncated")


@pytest.mark.parametrize("content", ["text", "torch"])
def test_foreign_checkpoint_is_named(workdir, cli, content):
    path = workdir / "foreign.ckpt"
    if content == "text":
        path.write_text("this is not a checkpoint\n")
        expected = "not a torch checkpoint"
    else:
        torch.save({"state_dict": {"w": torch.zeros(3)}}, path)
        expected = "is not a sigmoidf1 checkpoint"
    fails(cli("eval", f"ckpt_path={path}", *QUIET[:1]), 1, str(path), expected)
    fails(cli("train", *QUIET, f"ckpt_path={path}"), 1, str(path), expected)
    fails(cli("predict", f"ckpt_path={path}", f"input={path}"), 1, str(path), expected)


def test_ddp_spawn_with_the_csv_logger_is_refused_before_training(cli):
    result = cli("train", *QUIET, "trainer=ddp_spawn")
    fails(result, 2, "trainer=ddp_spawn", "trainer=ddp_cpu")
    assert "Starting training" not in result.stdout + result.stderr
