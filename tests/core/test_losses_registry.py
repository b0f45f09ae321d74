"""The loss registry: lookup errors, user registration, discovery of new modules, presets, configs.

Nothing here lists the losses by hand: they come from ``available_losses()``, from the package's
source files and from ``configs/loss/``.
"""

from __future__ import annotations

import ast
import inspect
import os
import pkgutil
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import sigmoidf1.losses as losses_pkg
from sigmoidf1.losses import (
    AsymmetricLoss,
    BCELoss,
    FocalLoss,
    SigmoidF1Loss,
    SigmoidFBetaLoss,
    SigmoidMetricLoss,
    SigmoidPrecisionLoss,
    SigmoidRecallLoss,
    TwoWayLoss,
    UnboundedF1Loss,
    ZLPRLoss,
    asymmetric_loss,
    available_losses,
    bce_loss,
    focal_loss,
    get_loss,
    register_loss,
    registry,
    sigmoid_f1_loss,
    sigmoid_metric_loss,
    two_way_loss,
    zlpr_loss,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs" / "loss"
PACKAGE_DIR = Path(losses_pkg.__file__).parent


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_LOSSES", dict(registry._LOSSES))


def registered_in_source(package_dir: Path) -> set[str]:
    """Names passed as a literal to ``register_loss(...)`` in the package's modules."""
    names = set()
    for path in package_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "register_loss"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(node.args[0].value)
    return names


# --- registry --------------------------------------------------------------------------------


def test_available_losses_is_sorted_and_is_what_the_package_registers():
    names = available_losses()
    assert names == sorted(names)
    assert set(names) == registered_in_source(PACKAGE_DIR)


def test_the_package_imports_every_module_it_holds():
    for module in pkgutil.iter_modules(losses_pkg.__path__):
        assert f"sigmoidf1.losses.{module.name}" in sys.modules, module.name


def test_a_module_dropped_into_the_package_is_discovered(tmp_path):
    """A copy of the package with one more file: the new loss is available, nothing else edited."""
    shutil.copytree(
        PACKAGE_DIR.parent, tmp_path / "sigmoidf1", ignore=shutil.ignore_patterns("__pycache__")
    )
    (tmp_path / "sigmoidf1" / "losses" / "my_loss.py").write_text(
        textwrap.dedent("""
        from torch import nn

        from sigmoidf1.losses import register_loss


        @register_loss("my_loss")
        class MyLoss(nn.Module):
            def __init__(self, scale: float = 1.0):
                super().__init__()
                self.scale = scale

            def forward(self, logits, targets):
                return self.scale * (logits - targets).abs().mean()
        """)
    )
    script = (
        "import torch, sigmoidf1.losses as m; "
        "print(m.__file__); print(','.join(m.available_losses())); "
        "print(m.get_loss('my_loss', scale=2.0)(torch.ones(2, 3), torch.zeros(2, 3)).item())"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    where, names, value = result.stdout.split()
    assert Path(where).is_relative_to(tmp_path)  # the copy, not this checkout
    assert set(names.split(",")) == set(available_losses()) | {"my_loss"}
    assert float(value) == 2.0


def test_get_loss_errors():
    available = ", ".join(available_losses())  # whatever is registered, a cloner's losses too
    with pytest.raises(ValueError, match=rf"unknown loss 'dice'; available: {available}$"):
        get_loss("dice")
    with pytest.raises(
        ValueError,
        match=r"loss 'sigmoid_f1' got unexpected keyword argument\(s\) "
        r"'alpha', 'gama'; accepted: beta, eta, average, "
        r"official_compat, sync_dist, validate_targets, eps",
    ):
        get_loss("sigmoid_f1", gama=2.0, alpha=1)
    with pytest.raises(
        ValueError, match=r"loss 'focal' got unexpected keyword argument\(s\) 'beta'"
    ):
        get_loss("focal", beta=1.0)


def test_register_loss_from_a_user_module(tmp_path, monkeypatch, clean_registry):
    (tmp_path / "my_losses.py").write_text(
        textwrap.dedent("""
        import torch
        from torch import nn
        from sigmoidf1.losses import register_loss

        @register_loss("mean_logit")
        class MeanLogit(nn.Module):
            def __init__(self, scale: float = 1.0):
                super().__init__()
                self.scale = scale

            def forward(self, logits, targets):
                return self.scale * logits.mean()

        @register_loss("factory_loss")
        def make_loss(weight):
            return MeanLogit(scale=weight)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_losses", raising=False)
    import my_losses  # noqa: F401

    assert {"mean_logit", "factory_loss"} <= set(available_losses())
    logits = torch.ones(2, 3)
    assert get_loss("mean_logit", scale=2.0)(logits, logits).item() == 2.0
    assert get_loss("factory_loss", weight=3.0)(logits, logits).item() == 3.0
    with pytest.raises(ValueError, match=r"missing required keyword argument\(s\) 'weight'"):
        get_loss("factory_loss")
    with pytest.raises(ValueError, match="'mean_logit' is already registered"):
        register_loss("mean_logit")(nn.Identity)
    with pytest.raises(ValueError, match="'sigmoid_f1' is already registered"):
        register_loss("sigmoid_f1")(nn.Identity)

    @register_loss("not_a_module")
    def not_a_module():
        return lambda logits, targets: logits.sum()

    with pytest.raises(TypeError, match="not an nn.Module"):
        get_loss("not_a_module")
    with pytest.raises(ValueError, match="non-empty string"):
        register_loss("")


def test_get_loss_converts_omegaconf_lists():
    omegaconf = pytest.importorskip("omegaconf")
    weights = omegaconf.OmegaConf.create({"w": [1.0, 2.0, 3.0]}).w
    module = get_loss("bce", pos_weight=weights)
    torch.testing.assert_close(module.pos_weight, torch.tensor([1.0, 2.0, 3.0]))


# --- presets -----------------------------------------------------------------------------------


def defaults(function) -> dict[str, object]:
    """``{option: default}`` of a function's or class's keyword options."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if name not in ("logits", "targets")
    }


# each preset of the sigmoidF1 family, with the options of `sigmoid_metric_loss` it fixes
PRESETS = {
    SigmoidFBetaLoss: {"metric"},
    SigmoidF1Loss: {"metric", "f_beta"},
    UnboundedF1Loss: {"metric", "f_beta", "beta", "eta", "official_compat"},
    SigmoidPrecisionLoss: {"metric", "f_beta"},
    SigmoidRecallLoss: {"metric", "f_beta"},
    sigmoid_f1_loss: {"metric", "f_beta"},
}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda preset: preset.__name__)
def test_presets_spell_out_every_option_they_do_not_fix_with_the_same_defaults(preset):
    """An option added to ``sigmoid_metric_loss`` must be added to every preset's signature."""
    general = defaults(sigmoid_metric_loss)
    expected = {key: value for key, value in general.items() if key not in PRESETS[preset]}
    assert defaults(preset) == expected


MODULE_FORMS = {
    BCELoss: bce_loss,
    FocalLoss: focal_loss,
    AsymmetricLoss: asymmetric_loss,
    ZLPRLoss: zlpr_loss,
    TwoWayLoss: two_way_loss,
    SigmoidMetricLoss: sigmoid_metric_loss,
}


@pytest.mark.parametrize("module", MODULE_FORMS, ids=lambda module: module.__name__)
def test_each_module_takes_the_options_of_its_function_with_the_same_defaults(module):
    """The module forms spell their options out; they must not drift from their functions'."""
    assert defaults(module) == defaults(MODULE_FORMS[module])


def test_presets_are_the_general_loss_with_arguments_fixed():
    assert issubclass(UnboundedF1Loss, SigmoidF1Loss)
    assert issubclass(SigmoidF1Loss, SigmoidMetricLoss)
    with pytest.raises(TypeError, match="beta"):
        UnboundedF1Loss(beta=2.0)
    logits = torch.randn(6, 4, dtype=torch.float64)
    targets = (torch.rand(6, 4) < 0.5).double()
    with pytest.raises(TypeError, match="metric"):
        sigmoid_f1_loss(logits, targets, metric="jaccard")
    expected = sigmoid_metric_loss(logits, targets, "fbeta", beta=2.0)
    assert sigmoid_f1_loss(logits, targets, beta=2.0).item() == expected.item()
    assert SigmoidF1Loss(beta=2.0)(logits, targets).item() == expected.item()
    precision = sigmoid_metric_loss(logits, targets, "precision", eta=0.5)
    assert SigmoidPrecisionLoss(eta=0.5)(logits, targets).item() == precision.item()
    assert UnboundedF1Loss().arguments == SigmoidF1Loss().arguments
    # `type(loss)(**loss.options)` rebuilds a preset from its own options
    rebuilt = type(SigmoidF1Loss(beta=3.0))(**SigmoidF1Loss(beta=3.0).options)
    assert rebuilt.arguments["beta"] == 3.0
    # `loss=sigmoid_metric` keeps its documented default (soft Jaccard); the class defaults to F1
    assert get_loss("sigmoid_metric").options["metric"] == "jaccard"
    assert SigmoidMetricLoss().options["metric"] == "f1"


# --- configs ---------------------------------------------------------------------------------


def test_every_registered_loss_has_a_config_and_every_config_a_loss():
    configs = {path.stem for path in CONFIG_DIR.glob("*.yaml")}
    assert configs == set(available_losses())


@pytest.mark.parametrize("name", available_losses())
def test_config_composes_and_instantiates_through_hydra(name):
    hydra = pytest.importorskip("hydra")
    from hydra.utils import instantiate

    overrides = [f"loss={name}"]
    if name == "bce":
        overrides.append("loss.pos_weight=[1.0,2.0,3.0]")  # arrives as a ListConfig
    with hydra.initialize_config_dir(str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = hydra.compose("train", overrides=overrides)
    loss = instantiate(cfg.loss)
    assert type(loss) is type(get_loss(name))
    logits = torch.randn(4, 3)
    targets = (torch.rand(4, 3) < 0.5).float()
    assert torch.isfinite(loss(logits, targets))
