"""The core is a library of its own: importing it pulls in neither the template (Lightning, Hydra,
OmegaConf) nor torchmetrics (whose own import takes seconds; the metric classes load it on first
use), and the template's commands say in one line what to install when the template is absent."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

CORE = "import sigmoidf1.losses, sigmoidf1.metrics, sigmoidf1.thresholds, sigmoidf1.distributed"


def imported_modules(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``statement``."""
    script = f"import sys\n{statement}\nprint(' '.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    return set(result.stdout.split())


def test_importing_the_core_imports_no_template_and_no_torchmetrics():
    modules = imported_modules(CORE)
    assert "sigmoidf1.losses" in modules  # the check reads what it should
    heavy = {m for m in modules if re.match(r"(lightning|hydra|omegaconf|torchmetrics)(\.|$)", m)}
    assert not heavy, sorted(heavy)[:10]


def test_the_metric_classes_load_torchmetrics_on_first_use():
    modules = imported_modules("from sigmoidf1.metrics import build_metrics")
    assert "torchmetrics" in modules and "sigmoidf1.metrics.collection" in modules


def test_a_command_without_the_template_says_what_to_install(monkeypatch):
    from sigmoidf1 import extras

    monkeypatch.setitem(extras.TEMPLATE_PACKAGES, "a_module_that_is_not_installed", "the-package")
    with pytest.raises(SystemExit) as stop:
        extras.require_template("sigmoidf1-train")
    message = str(stop.value.code)
    assert "\n" not in message
    assert "sigmoidf1-train" in message and "the-package" in message
    assert "make install" in message and ".[template]" in message
