"""Look at a study, also while its workers run:

    python -m sigmoidf1.sweeps status logs/train/sweeps/yeast_sigmoid_f1
    python -m sigmoidf1.sweeps plots logs/train/sweeps/yeast_sigmoid_f1

``status`` prints one line per trial (state, value, the epoch where a pruned trial stopped, what
happened to failed ones); ``plots`` writes the PNGs of ``sweeps.plots`` into the sweep directory.
The study is read from ``<sweep dir>/optuna.journal``, or from ``--storage URL`` when the sweep
used a database (``--study-name`` when the storage holds several studies).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sigmoidf1.sweeps.study import (
    FAIL_ATTR,
    JOURNAL_NAME,
    PRUNED_ATTR,
    RETRY_ATTR,
    WORKER_ATTR,
    count_states,
    load_study,
)
from sigmoidf1.utils.errors import ConfigError


def _note(trial) -> str:
    notes = []
    if RETRY_ATTR in trial.user_attrs:
        notes.append(f"retry of {trial.user_attrs[RETRY_ATTR]}")
    if PRUNED_ATTR in trial.user_attrs:
        notes.append(f"pruned after epoch {trial.user_attrs[PRUNED_ATTR]}")
    if FAIL_ATTR in trial.user_attrs:
        notes.append(trial.user_attrs[FAIL_ATTR])
    return "; ".join(notes)


def status(study) -> str:
    """A table of the study's trials, and its best one."""
    counts = count_states(study)
    lines = [
        f"study {study.study_name} ({study.direction.name.lower()}): "
        + ", ".join(
            f"{counts[s]} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
        ),
        f"{'trial':>5}  {'state':<8}  {'value':>9}  {'worker':<16}  params / notes",
    ]
    for trial in study.get_trials(deepcopy=False):
        value = f"{trial.value:.6g}" if trial.value is not None else "-"
        worker = trial.system_attrs.get(WORKER_ATTR) or {}
        who = f"{worker.get('host', '?')}:{worker.get('pid', '?')}" if worker else "-"
        params = " ".join(
            f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
            for name, value in trial.params.items()
        )
        note = _note(trial)
        lines.append(
            f"{trial.number:>5}  {trial.state.name:<8}  {value:>9}  {who:<16}  {params}"
            + (f"  ({note})" if note else "")
        )
    try:
        best = study.best_trial
        lines.append(f"best: trial {best.number}, {best.value:.6g}, {best.params}")
    except ValueError:
        lines.append("best: none yet (no complete trial)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sigmoidf1.sweeps", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=("status", "plots"))
    parser.add_argument("sweep_dir", type=Path, help="the sweep directory (hydra.sweep.dir)")
    parser.add_argument("--storage", help=f"a database URL (default: <sweep_dir>/{JOURNAL_NAME})")
    parser.add_argument("--study-name", help="needed when the storage holds several studies")
    args = parser.parse_args(argv)

    storage = args.storage or args.sweep_dir / JOURNAL_NAME
    if not args.storage and not Path(storage).is_file():
        print(
            f"error: no study in {args.sweep_dir} ({JOURNAL_NAME} not found); a sweep that "
            "stores its study in a database needs --storage URL",
            file=sys.stderr,
        )
        return 2
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = load_study(storage, args.study_name)
    except (ConfigError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "status":
        print(status(study))
        return 0
    from sigmoidf1.sweeps.plots import write_plots

    for name, outcome in write_plots(study, args.sweep_dir).items():
        print(f"{name}: {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
