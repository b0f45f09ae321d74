"""Pictures of a study, as PNG files: what the search found and where it looked.

- ``optimization_history.png``: every trial's value and the best so far;
- ``param_importances.png``: how much of the variation of the value each parameter explains
  (PED-ANOVA, Optuna's own estimator: no scikit-learn needed);
- ``parallel_coordinates.png``: each trial as a line through its parameters, coloured by value.

Drawn with Optuna's matplotlib backend on a non-interactive canvas (no display needed). Each file
is written under a temporary name, then renamed: a reader (or a second worker writing the same
pictures) never sees half a file.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

FILES = {
    "optimization_history": "optimization_history.png",
    "param_importances": "param_importances.png",
    "parallel_coordinate": "parallel_coordinates.png",
}


def _draw(study: optuna.Study, name: str):
    from optuna.visualization import matplotlib as plots

    if name == "param_importances":
        from optuna.importance import PedAnovaImportanceEvaluator

        return plots.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    return getattr(plots, f"plot_{name}")(study)


def write_plots(study: optuna.Study, directory: str | os.PathLike) -> dict[str, str]:
    """Write the pictures of ``study`` into ``directory``; returns, for each picture, its path or
    why it was not drawn (e.g. too few complete trials for importances)."""
    import matplotlib

    matplotlib.use("Agg")  # this is a file writer; never open a window
    import matplotlib.pyplot as plt
    import optuna

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    written: dict[str, str] = {}
    for name, filename in FILES.items():
        needed = 2 if name == "param_importances" else 1
        if len(complete) < needed:
            written[name] = f"not drawn: {len(complete)} complete trial(s), {needed} needed"
            continue
        # rc_context: Optuna switches the global style to ggplot; keep that inside
        with warnings.catch_warnings(), matplotlib.rc_context():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                axes = _draw(study, name)
            except (ValueError, RuntimeError) as error:  # e.g. no parameter varies yet
                written[name] = f"not drawn: {error}"
                continue
            figure = axes.figure
            figure.set_size_inches(8, 5)
            path = directory / filename
            partial = path.with_name(f".{filename}.{os.getpid()}.tmp")
            figure.savefig(partial, format="png", dpi=110, bbox_inches="tight")
            plt.close(figure)
        os.replace(partial, path)
        written[name] = str(path)
    return written
