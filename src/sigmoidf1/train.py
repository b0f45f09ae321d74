"""Train and test a model: ``sigmoidf1-train [overrides]`` (= ``python -m sigmoidf1.train``)."""

from __future__ import annotations

from sigmoidf1.extras import require_template

require_template("sigmoidf1-train")  # one line saying what to install, not an ImportError

import hydra
from omegaconf import DictConfig

from sigmoidf1 import CONFIG_DIR
from sigmoidf1.utils.errors import check_arguments, report_errors


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Return the best epoch's value of ``optimized_metric`` (``<name>_best``, logged by
    ``callbacks.best_metric``; the last value without that callback) for Hydra sweepers."""
    with report_errors():  # user errors: a short message and exit code 1/2, no traceback
        check_arguments(cfg, files=("ckpt_path",))  # before torch is imported
        from sigmoidf1.pipeline import train  # heavy imports stay off the `--help` path

        metrics = train(cfg)
        name = cfg.get("optimized_metric")
        return metrics.get(f"{name}_best", metrics.get(name))


if __name__ == "__main__":
    main()
