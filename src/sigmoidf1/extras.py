"""What the template needs beyond the core, and the one line a command prints when it is missing.

``pip install .`` installs the core (losses, metrics, threshold search: torch and torchmetrics).
The commands (``sigmoidf1-train`` ...) are the template: they also need the ``template`` extra,
which ``make install`` installs. Standard library only, so that it runs where the template is not
installed.
"""

from __future__ import annotations

import importlib.util

# import name -> the package that provides it (as pip names it)
TEMPLATE_PACKAGES = {
    "lightning": "lightning",
    "hydra": "hydra-core",
    "omegaconf": "omegaconf",
    "torchvision": "torchvision",
    "rich": "rich",
    "matplotlib": "matplotlib",
}


def require_template(command: str) -> None:
    """Exit with one line naming what to install when a package of the template is missing."""
    missing = [
        package
        for module, package in TEMPLATE_PACKAGES.items()
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        raise SystemExit(
            f"{command} is a command of the template, which needs {', '.join(missing)}: "
            "run `make install`, or `pip install -e '.[template]'` in the clone"
        )
