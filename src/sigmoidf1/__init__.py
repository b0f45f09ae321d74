"""sigmoidf1: a Lightning + Hydra template for multilabel classification with the sigmoidF1 loss."""

from pathlib import Path

__version__ = "0.1.0"

# The Hydra configs live at the repository root (the template is used from a clone, installed
# editable).
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")
