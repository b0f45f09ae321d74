"""A checkpoint is data, never code: the configs it stores name no code that runs when it loads.

Crafted checkpoints carry a config that, instantiated, writes a file of the checkpoint's choosing
with contents of its choosing (``pathlib.Path.write_text``, which Hydra's own blocklist lets
through). Each stored config (data, backbone, loss, optimizer, scheduler) is crafted at the top
level and nested inside an allowed config; every loader must refuse before anything runs. The
payloads are shown to be live (they do write the file once trusted), and a genuine checkpoint and
one trained with a user's own package still load and predict. See docs/security.md.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import gzip
import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from sigmoidf1.checkpoints import STORED_CONFIGS, datamodule_from, read_checkpoint
from sigmoidf1.data.yeast import river_yeast_path
from sigmoidf1.module import MultilabelClassifier
from sigmoidf1.utils.errors import CheckpointError, ConfigError
from sigmoidf1.utils.pretrained import package_folder
from sigmoidf1.utils.trust import check_targets, trusted_prefixes
from tests.conftest import CONFIG_DIR, QUIET, once_per_session, run_cli

PAYLOAD_TEXT = "written by the checkpoint"
# where each stored config sits in the hyperparameters, and a keyword to nest the payload under
CRAFTED = {
    "data": (("run_config", "data"), "path"),
    "model.backbone": (("backbone",), "dropout"),
    "loss": (("loss",), "beta"),
    "model.optimizer": (("optimizer",), "lr"),
    "model.scheduler": (("scheduler",), "T_max"),
}
PLACEMENTS = ("top", "nested")
SCHEDULER = {
    "_target_": "torch.optim.lr_scheduler.CosineAnnealingLR",
    "_partial_": True,
    "T_max": 3,
}
YEAST_DATA = {
    "_target_": "sigmoidf1.data.YeastDataModule",
    "path": None,
    "val_fraction": 0.15,
    "test_fraction": 0.2,
    "seed": 42,
}


def payload(marker: Path) -> dict:
    """Instantiated, this config writes ``marker``: ``Path(marker).write_text(PAYLOAD_TEXT)``."""
    return {
        "_target_": "pathlib.Path.write_text",
        "_args_": [{"_target_": "pathlib.Path", "_args_": [str(marker)]}, PAYLOAD_TEXT],
    }


def craft(hparams: dict, config: str, placement: str, marker: Path) -> dict:
    """``hparams`` with the payload as the stored ``config`` (top) or inside it (nested)."""
    hparams = copy.deepcopy(hparams)
    (*parents, name), keyword = CRAFTED[config]
    parent = hparams
    for part in parents:
        parent = parent.setdefault(part, {})
    if placement == "top":
        parent[name] = payload(marker)
    else:
        parent[name] = {**(parent.get(name) or SCHEDULER), keyword: payload(marker)}
    return hparams


def crafted_file(source: Path, config: str, placement: str, directory: Path) -> tuple[Path, Path]:
    """A copy of the checkpoint ``source`` (weights untouched) with ``config`` crafted; returns
    ``(file, marker)``. The file still loads with ``torch.load(weights_only=True)``."""
    checkpoint = torch.load(source, weights_only=True)
    marker = directory / f"marker-{config}-{placement}.txt"
    checkpoint["hyper_parameters"] = craft(
        checkpoint["hyper_parameters"], config, placement, marker
    )
    path = directory / f"crafted-{config}-{placement}.ckpt"
    torch.save(checkpoint, path)
    return path, marker


def where(config: str, placement: str) -> str:
    """The config key the refusal names."""
    return f"{config}._target_" if placement == "top" else f"{config}.{CRAFTED[config][1]}._target_"


def expect_refusal(error: str, config: str, placement: str, path: Path) -> None:
    assert f"refusing to load {path}" in error, error
    assert f"`{where(config, placement)}` names pathlib.Path.write_text, which is not trusted" in (
        error
    )
    assert "trusted_targets=[pathlib]" in error


# --- the check itself ----------------------------------------------------------------------------
def test_the_matrix_covers_every_config_a_loader_instantiates():
    assert set(CRAFTED) == set(STORED_CONFIGS)
    assert all(CRAFTED[key][0] == STORED_CONFIGS[key] for key in CRAFTED)


def template_targets() -> list[str]:
    """Every ``_target_`` the template's configs can write into a checkpoint's stored configs."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            found.extend([node["_target_"]] if isinstance(node.get("_target_"), str) else [])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for group in ("data", "model", "loss", "encoder"):
        for path in sorted((CONFIG_DIR / group).rglob("*.yaml")):
            walk(OmegaConf.to_container(OmegaConf.load(path), resolve=False))
    return sorted(set(found) - {"sigmoidf1.module.MultilabelClassifier"})  # run_config.model


@pytest.mark.parametrize(
    "target",
    [
        *template_targets(),
        "torch.optim.SGD",
        "torch.optim.lr_scheduler.ReduceLROnPlateau",
        "torch.optim.lr_scheduler.OneCycleLR",
        "torch.optim.lr_scheduler.SequentialLR",
    ],
)
def test_what_the_template_stores_is_trusted(target):
    check_targets({"_target_": target, "_partial_": True}, "model.backbone")


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("builtins.open", "which is not trusted"),
        ("os.system", "which is not trusted"),
        ("torch.save", "which is not trusted"),
        ("torch.hub.load", "which is not trusted"),
        ("sigmoidf1.utils.files.atomic_write_text", "which is not trusted"),
        ("sigmoidf1_evil.Net", "which is not trusted"),  # a module boundary, not a prefix
        # names inside a trusted family that lead elsewhere, or to a function of it
        ("sigmoidf1.data.base.np.save", "which leads through module numpy"),
        ("sigmoidf1.data.base.Dataset", "which leads to torch.utils.data.dataset.Dataset"),
        ("sigmoidf1.data.download.download", "a function: of sigmoidf1 and torch.optim only"),
        ("torch.optim.AdamW.step", "a function: of sigmoidf1 and torch.optim only"),
        ("sigmoidf1.data", "which is not a class or function"),
        ("sigmoidf1.data.no_such_module.X", "which cannot be imported"),
    ],
)
def test_untrusted_targets_are_refused(target, reason):
    with pytest.raises(CheckpointError, match="refusing to load a.ckpt") as refused:
        check_targets({"_target_": target}, "data", source="a.ckpt")
    assert f"`data._target_` names {target}" in str(refused.value)
    assert reason in str(refused.value)


def test_nested_targets_are_found_anywhere():
    nested = [
        {"path": {"_target_": "builtins.open"}},
        {"_args_": [1, [{"_target_": "builtins.open"}]]},
        {
            "encoder": {
                "_target_": "sigmoidf1.backbones.MLP",
                "x": {"y": [{"_target_": "os.getcwd"}]},
            }
        },
    ]
    keys = ["data.path._target_", "data._args_[1][0]._target_", "data.encoder.x.y[0]._target_"]
    for extra, key in zip(nested, keys, strict=True):
        with pytest.raises(CheckpointError, match=rf"`{re.escape(key)}` names"):
            check_targets({**YEAST_DATA, **extra}, "data")


def test_interpolations_and_non_names_are_refused():
    with pytest.raises(CheckpointError, match=r"`data.path` holds an interpolation"):
        check_targets({**YEAST_DATA, "path": "${oc.env:HOME}/.ssh/id_rsa"}, "data")
    for value in (3, "", "os.system; rm", ["os.system"]):
        with pytest.raises(CheckpointError, match="which is not a dotted name"):
            check_targets({"_target_": value}, "loss")


def test_trusted_targets_are_module_paths():
    assert trusted_prefixes(None) == ()
    assert trusted_prefixes("mylab") == ("mylab",)
    assert trusted_prefixes(["mylab.", "other.models"]) == ("mylab", "other.models")
    assert trusted_prefixes(OmegaConf.create(["mylab."])) == ("mylab",)
    for bad in ("", ".", "my lab", ["mylab", ""], [3], {"mylab": True}, 3):
        with pytest.raises(ConfigError, match="trusted_targets"):
            trusted_prefixes(bad)


@pytest.fixture
def user_packages(tmp_path, monkeypatch) -> Path:
    """``mylab_probe`` (a user's own classes) and ``mylab_probeevil`` (whose import writes a
    marker), importable from ``tmp_path``; returns the marker path."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "mylab_probe").mkdir()
    (tmp_path / "mylab_probe" / "__init__.py").write_text("")
    (tmp_path / "mylab_probe" / "models.py").write_text(
        "import os\nfrom os import system\n\n\nclass Net:\n    pass\n\n\n"
        "def make_net():\n    return Net()\n"
    )
    (tmp_path / "mylab_probeevil").mkdir()
    (tmp_path / "mylab_probeevil" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nclass Net:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return marker


@pytest.mark.parametrize(
    "trust", ["mylab_probe", "mylab_probe.", "mylab_probe.models", "mylab_probe.models.Net"]
)
def test_a_trusted_package_is_matched_on_module_boundaries(user_packages, trust):
    check_targets({"_target_": "mylab_probe.models.Net"}, "model.backbone", [trust])
    with pytest.raises(CheckpointError, match="mylab_probeevil.Net, which is not trusted"):
        check_targets({"_target_": "mylab_probeevil.Net"}, "model.backbone", [trust])
    assert not user_packages.exists()  # refused by name: never imported


def test_every_name_is_checked_before_anything_is_imported(user_packages):
    config = {"data": {"_target_": "mylab_probeevil.Net"}, "loss": {"_target_": "os.system"}}
    with pytest.raises(CheckpointError, match="`loss._target_` names os.system"):
        check_targets(config, "", ["mylab_probeevil"])
    assert not user_packages.exists()  # the trusted package was not imported either
    check_targets(config["data"], "data", ["mylab_probeevil"])
    assert user_packages.exists()  # (importing it is what writes the marker)


def test_a_trusted_package_cannot_lend_its_imports(user_packages):
    trust = ["mylab_probe"]
    check_targets({"_target_": "mylab_probe.models.make_net"}, "loss", trust)  # a user function
    with pytest.raises(CheckpointError, match="which leads to posix.system"):
        check_targets({"_target_": "mylab_probe.models.system"}, "loss", trust)
    with pytest.raises(CheckpointError, match="which leads through module os"):
        check_targets({"_target_": "mylab_probe.models.os.system"}, "loss", trust)


def test_a_pip_model_name_imports_no_package(tmp_path, monkeypatch):
    """``pip:<module>`` (a model name a checkpoint may store) locates the package, never runs its
    ``__init__``, parents included (``importlib.util.find_spec("a.b")`` would import ``a``)."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "shipsmodel" / "sub").mkdir(parents=True)
    (tmp_path / "shipsmodel" / "__init__.py").write_text(f"open({str(marker)!r}, 'w')\n")
    (tmp_path / "shipsmodel" / "sub" / "__init__.py").write_text(f"open({str(marker)!r}, 'w')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert package_folder("shipsmodel.sub") == tmp_path / "shipsmodel" / "sub"
    with pytest.raises(FileNotFoundError, match="not installed"):
        package_folder("shipsmodel.missing")
    assert not marker.exists() and "shipsmodel" not in sys.modules


# --- a checkpoint written in this process: every stored config, read and loaded ------------------
@pytest.fixture
def small_checkpoint(tmp_path) -> Path:
    """A genuine checkpoint of a small model, with a Yeast data config and a scheduler."""
    model = MultilabelClassifier(
        backbone={"_target_": "sigmoidf1.backbones.MLP", "_partial_": True, "hidden_sizes": [8]},
        label_names=["a", "b", "c"],
        backbone_inputs={"in_features": 103},
        scheduler=SCHEDULER,
        run_config={"data": YEAST_DATA},
    )
    path = tmp_path / "small.ckpt"
    torch.save({"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}, path)
    return path


def test_a_genuine_checkpoint_loads(small_checkpoint):
    read_checkpoint(small_checkpoint)
    model = MultilabelClassifier.load_from_checkpoint(small_checkpoint, map_location="cpu")
    assert model(torch.randn(2, 103)).shape == (2, 3)
    assert model.configure_optimizers()["lr_scheduler"]["scheduler"].T_max == 3


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("config", CRAFTED)
def test_every_crafted_config_is_refused_before_anything_runs(
    small_checkpoint, tmp_path, config, placement
):
    path, marker = crafted_file(small_checkpoint, config, placement, tmp_path)
    for load in (read_checkpoint, MultilabelClassifier.load_from_checkpoint):
        with pytest.raises(CheckpointError) as refused:
            load(path)
        expect_refusal(str(refused.value), config, placement, path)
    with pytest.raises(CheckpointError):
        MultilabelClassifier.load_from_checkpoint(path, trusted_targets=["mylab"])
    assert not marker.exists()


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("config", CRAFTED)
def test_the_payloads_are_live(small_checkpoint, tmp_path, config, placement):
    """Trusted, each crafted config does write its file: the refusals above are what protect."""
    path, marker = crafted_file(small_checkpoint, config, placement, tmp_path)
    with contextlib.suppress(Exception):  # the payload returns a number, not what was expected
        if config == "data":
            datamodule_from(read_checkpoint(path, trusted_targets=["pathlib"]))
        else:
            model = MultilabelClassifier.load_from_checkpoint(path, trusted_targets=["pathlib"])
            model.configure_optimizers()
    assert marker.read_text() == PAYLOAD_TEXT


def test_a_checkpoint_cannot_trust_itself(small_checkpoint, tmp_path):
    """``trusted_targets`` comes from the user's config or command line, never from the file."""
    path, marker = crafted_file(small_checkpoint, "data", "top", tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["run_config"]["trusted_targets"] = ["pathlib"]
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="which is not trusted"):
        read_checkpoint(path)
    assert not marker.exists()


def test_keyword_replacements_are_not_checked_nor_used(small_checkpoint, tmp_path):
    path, marker = crafted_file(small_checkpoint, "loss", "top", tmp_path)
    loss = {"_target_": "sigmoidf1.losses.get_loss", "name": "bce"}
    model = MultilabelClassifier.load_from_checkpoint(path, loss=loss)
    assert model.hparams.loss == loss and not marker.exists()
    with pytest.raises(TypeError, match="hparams_file is not supported"):
        MultilabelClassifier.load_from_checkpoint(path, hparams_file="h.yaml")
    with pytest.raises(ValueError, match="weights_only=True only"):
        MultilabelClassifier.load_from_checkpoint(path, weights_only=False)


# --- the real CLI on a trained checkpoint ---------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A Yeast model trained once by ``sigmoidf1-train`` (one epoch)."""

    def build(root: Path) -> None:
        run_cli("train", *QUIET, "trainer.max_epochs=1", f"hydra.run.dir={root / 'run'}", cwd=root)

    return once_per_session(tmp_path_factory, "trust_yeast", build) / "run/checkpoints/last.ckpt"


def yeast_rows_file(directory: Path, count: int = 5) -> Path:
    """The first ``count`` Yeast rows (features only) as a JSON Lines input file."""
    with gzip.open(river_yeast_path(), "rt", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    path = directory / "rows.jsonl"
    with path.open("w") as handle:
        for row in rows[:count]:
            features = {k: float(v) for k, v in zip(header, row, strict=True) if k[:3] == "Att"}
            handle.write(json.dumps(features) + "\n")
    return path


def run_loader(cli, loader: str, checkpoint: Path, workdir: Path, *extra: str):
    """One entry point on ``checkpoint``, in this process; returns ``(result, files it would
    write)``."""
    outputs = {"predict": workdir / "out.jsonl", "export": workdir / "model.pt2"}
    arguments = {
        "eval": [*QUIET[:2]],
        "predict": [f"input={yeast_rows_file(workdir)}", f"output={outputs['predict']}"],
        "export": ["format=exported_program", f"output={outputs['export']}"],
        "serve": ["port=8765"],
        "train": [*QUIET, "trainer.max_epochs=2"],  # resume
    }[loader]
    result = cli(loader, f"ckpt_path={checkpoint}", *arguments, *extra)
    return result, outputs.get(loader)


def error_line(result) -> str:
    """The one ``error:`` line of a clean refusal (exit code 1, no traceback)."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in output
    return errors[0]


LOADERS = ("eval", "predict", "export", "serve", "train")


@pytest.mark.slow
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("config", CRAFTED)
@pytest.mark.parametrize("loader", LOADERS)
def test_every_loader_refuses_every_crafted_config(
    trained, workdir, cli, loader, config, placement
):
    path, marker = crafted_file(trained, config, placement, workdir)
    result, output = run_loader(cli, loader, path, workdir)
    expect_refusal(error_line(result), config, placement, path)
    assert not marker.exists()
    assert output is None or not output.exists()


@pytest.mark.slow
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("config", CRAFTED)
def test_load_from_checkpoint_refuses_every_crafted_config(trained, workdir, config, placement):
    path, marker = crafted_file(trained, config, placement, workdir)
    with pytest.raises(CheckpointError) as refused:
        MultilabelClassifier.load_from_checkpoint(path)
    expect_refusal(str(refused.value), config, placement, path)
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("loader", "config", "placement"), [("predict", "data", "top"), ("eval", "loss", "nested")]
)
def test_a_real_process_refuses_and_writes_nothing(trained, workdir, loader, config, placement):
    """The issue's reproduction, as a user runs it: a separate process, the console's output."""
    path, marker = crafted_file(trained, config, placement, workdir)
    output = workdir / "out.jsonl"
    extra = {
        "predict": [f"input={yeast_rows_file(workdir)}", f"output={output}"],
        "eval": [*QUIET[:2]],
    }[loader]
    result = run_cli(loader, f"ckpt_path={path}", *extra, cwd=workdir, check=False)
    expect_refusal(error_line(result), config, placement, path)
    assert not marker.exists() and not output.exists()


@pytest.mark.slow
def test_configs_kept_only_as_a_record_are_never_instantiated(trained, workdir, cli):
    """The stored trainer, callbacks, loggers and the run config's copies of the model and loss
    are not instantiated by any loader: a payload there never runs, and the file loads."""
    checkpoint = torch.load(trained, weights_only=True)
    marker = workdir / "marker.txt"
    run_config = checkpoint["hyper_parameters"]["run_config"]
    for section in ("trainer", "callbacks", "logger", "model", "loss"):
        run_config[section] = {"_target_": "pathlib.Path.write_text", "p": payload(marker)}
    path = workdir / "record.ckpt"
    torch.save(checkpoint, path)
    result, output = run_loader(cli, "predict", path, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(output.read_text().splitlines()) == 5
    assert run_loader(cli, "eval", path, workdir)[0].returncode == 0
    MultilabelClassifier.load_from_checkpoint(path).configure_optimizers()
    assert not marker.exists()


@pytest.mark.slow
def test_the_genuine_checkpoint_loads_and_predicts(trained, workdir, cli):
    result, output = run_loader(cli, "predict", trained, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == 5 and all(len(row["scores"]) == 14 for row in rows)
    model = MultilabelClassifier.load_from_checkpoint(trained)
    assert model.eval()(torch.randn(2, 103)).shape == (2, 14)


USER_LOSS = '''"""A user's own loss, outside sigmoidf1."""

import torch
from torch import nn


class WeightedBCE(nn.Module):
    def __init__(self, pos_weight: float = 1.0) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits, targets):
        weight = torch.full_like(logits[0], self.pos_weight)
        return nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)
'''


@pytest.mark.slow
def test_a_checkpoint_of_a_trusted_package_loads_predicts_and_resumes(workdir, cli, monkeypatch):
    """Trained with the user's own loss class: refused until the package is trusted, by name, on
    the command line; then it predicts, loads in Python and resumes."""
    packages = workdir / "packages"
    (packages / "mylab_user").mkdir(parents=True)
    (packages / "mylab_user" / "__init__.py").write_text("")
    (packages / "mylab_user" / "losses.py").write_text(USER_LOSS)
    monkeypatch.syspath_prepend(str(packages))
    env = {"PYTHONPATH": os.pathsep.join([str(packages), os.environ.get("PYTHONPATH", "")])}
    # the user's own loss config, in a config folder of their own on Hydra's search path
    (workdir / "conf" / "loss").mkdir(parents=True)
    (workdir / "conf" / "loss" / "weighted_bce.yaml").write_text(
        "_target_: mylab_user.losses.WeightedBCE\npos_weight: 2.0\n"
    )
    loss = [f"hydra.searchpath=[file://{workdir / 'conf'}]", "loss=weighted_bce"]
    run_dir = workdir / "run"
    run_cli(
        "train", *QUIET, *loss, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}",
        cwd=workdir, env=env,
    )  # fmt: skip
    checkpoint = run_dir / "checkpoints" / "last.ckpt"

    result, output = run_loader(cli, "predict", checkpoint, workdir)
    error = error_line(result)
    assert "`loss._target_` names mylab_user.losses.WeightedBCE" in error
    assert "trusted_targets=[mylab_user]" in error and not output.exists()

    result, output = run_loader(
        cli, "predict", checkpoint, workdir, "trusted_targets=[mylab_user.]"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(output.read_text().splitlines()) == 5

    model = MultilabelClassifier.load_from_checkpoint(checkpoint, trusted_targets=["mylab_user"])
    assert type(model.loss_fn).__name__ == "WeightedBCE" and model.loss_fn.pos_weight == 2.0

    resume = ["train", *QUIET, *loss, f"ckpt_path={checkpoint}", "trainer.max_epochs=2"]
    assert "trusted_targets=[mylab_user]" in error_line(cli(*resume))
    resumed = run_cli(*resume, "trusted_targets=[mylab_user]", cwd=workdir, env=env)
    assert "Resuming training from" in resumed.stdout + resumed.stderr
