"""Ask, run and tell trials until the study holds ``n_trials`` finished ones.

"Finished" means COMPLETE or PRUNED. Any number of workers may run this loop on one study; each
pass of one worker:

1. fails (and enqueues a retry of) the RUNNING trials of dead workers (``workers``);
2. stops when ``n_trials`` trials are finished; waits when the finished and running ones already
   make ``n_trials`` (one of the running ones may still fail and need a successor);
3. asks up to ``n_jobs`` trials (a waiting retry first), runs them (``run_batch``: the Hydra
   launcher) with a heartbeat, and tells the study how each ended: COMPLETE with the value the job
   returned, PRUNED when the pruning callback stopped it (user attribute ``pruned_at_epoch``),
   FAIL when it raised or returned no finite value.

Exact count with concurrent workers: two workers may ask at the same moment when one trial is
left. Trial numbers order all trials of a study, so a trial is run only when fewer than
``n_trials`` trials numbered below it are finished, running or waiting; the later of the two is
then told FAIL without running (user attribute ``failed_because``). Hence the study never holds
more than ``n_trials`` finished trials, and every worker goes on until it holds exactly that many.

Sampling: ``make_sampler(number)``, when given, builds the sampler of trial ``number`` (the
sweeper seeds it with ``seed + number``): suggestions are reproducible for one worker, and a
resumed sweep or a second worker never repeats the random draws of another.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sigmoidf1.sweeps.study import FAIL_ATTR, PRUNED_ATTR, count_states, finished
from sigmoidf1.sweeps.workers import Heartbeat, Worker, fail_and_retry, fail_dead_trials

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

_ACTIVE = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")  # trials that count toward n_trials


@dataclass
class JobResult:
    """How a job ended: the value it returned, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None


RunBatch = Callable[[Sequence["optuna.Trial"]], Sequence[JobResult]]


def suggest(trial: optuna.Trial, name: str, distribution: Any) -> Any:
    """``trial.suggest_*`` for an Optuna distribution object."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    number = trial.suggest_int if isinstance(distribution, IntDistribution) else trial.suggest_float
    return number(
        name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
    )


def ask(
    study: optuna.Study,
    distributions: dict[str, Any],
    make_sampler: Callable[[int], Any] | None = None,
) -> optuna.Trial:
    """A new trial (or a waiting retry) with every parameter of ``distributions`` suggested."""
    import optuna

    trial = study.ask()
    if make_sampler is not None:  # the trial's number is known only now: build its sampler
        study.sampler = make_sampler(trial.number)
        trial = optuna.Trial(study, trial._trial_id)  # sampler hooks of the new sampler
    for name, distribution in distributions.items():
        suggest(trial, name, distribution)
    return trial


def within_quota(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """Whether fewer than ``n_trials`` trials numbered below ``trial`` are finished, running or
    waiting (see the module's docstring)."""
    ahead = sum(
        other.number < trial.number and other.state.name in _ACTIVE
        for other in study.get_trials(deepcopy=False)
    )
    return ahead < n_trials


def tell(study: optuna.Study, trial: optuna.Trial, result: JobResult) -> str:
    """Store how the job of ``trial`` ended; returns one line that says it."""
    from optuna.trial import TrialState

    (stored,) = [t for t in study.get_trials(deepcopy=False) if t.number == trial.number]
    if result.error is not None:
        reason = f"{type(result.error).__name__}: {result.error}"[:500]
        trial.set_user_attr(FAIL_ATTR, reason)
        study.tell(trial, state=TrialState.FAIL)
        return f"Trial {trial.number} failed: {reason}"
    if PRUNED_ATTR in stored.user_attrs:
        study.tell(trial, state=TrialState.PRUNED)
        return f"Trial {trial.number} pruned after epoch {stored.user_attrs[PRUNED_ATTR]}"
    try:
        value = float(result.value)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        reason = f"the job returned {result.value!r}, not a finite number"
        trial.set_user_attr(FAIL_ATTR, reason)
        study.tell(trial, state=TrialState.FAIL)
        return f"Trial {trial.number} failed: {reason}"
    study.tell(trial, value)
    return f"Trial {trial.number} finished: {value:.6g}"


def run_study(
    study: optuna.Study,
    distributions: dict[str, Any],
    run_batch: RunBatch,
    n_trials: int,
    n_jobs: int = 1,
    make_sampler: Callable[[int], Any] | None = None,
    heartbeat_interval: float = 60.0,
    grace_period: float = 300.0,
    poll_interval: float = 5.0,
    catch: tuple[type[BaseException], ...] = (FloatingPointError,),
) -> None:
    """Run trials of ``study`` until it holds ``n_trials`` finished ones (module docstring).

    A job that raised one of ``catch`` (default: a diverged training) is FAIL and the loop goes
    on; another exception stops it once its batch is told (it propagates). An interruption
    (Ctrl-C, SIGTERM) fails the trials it cut short and enqueues their retries; a launcher that
    raises fails them (no retry) and stops the loop.
    """
    from optuna.trial import TrialState

    me = Worker.this_process()
    waiting_said = False
    while True:
        fail_dead_trials(study, me, grace_period)
        counts = count_states(study)
        room = n_trials - finished(counts) - counts["RUNNING"]
        if finished(counts) >= n_trials:
            return
        if room <= 0:
            if not waiting_said:
                log.info(
                    f"{counts['RUNNING']} trial(s) of other workers are running; waiting in "
                    f"case one of them fails (every {poll_interval:g} s)"
                )
                waiting_said = True
            time.sleep(poll_interval)
            continue
        waiting_said = False
        trials = []
        for _ in range(min(n_jobs, room)):
            trial = ask(study, distributions, make_sampler)
            if not within_quota(study, trial, n_trials):
                reason = f"not run: {n_trials} trials were already under way"
                trial.set_user_attr(FAIL_ATTR, reason)
                study.tell(trial, state=TrialState.FAIL)
                break
            me.claim(study, trial)
            trials.append(trial)
        if not trials:
            continue
        _run_and_tell(study, trials, run_batch, heartbeat_interval, catch)


def _run_and_tell(
    study: optuna.Study,
    trials: Sequence[optuna.Trial],
    run_batch: RunBatch,
    heartbeat_interval: float,
    catch: tuple[type[BaseException], ...],
) -> None:
    from optuna.trial import TrialState

    try:
        with Heartbeat(study, trials, heartbeat_interval):
            results = run_batch(trials)
    except BaseException as error:  # the launch itself failed, or the process is stopping
        interrupted = not isinstance(error, Exception)  # Ctrl-C, SIGTERM (SystemExit)
        stored = {t.number: t for t in study.get_trials(deepcopy=False)}
        for trial in (stored[t.number] for t in trials if stored[t.number].state.name == "RUNNING"):
            if interrupted:
                fail_and_retry(study, trial, f"interrupted ({type(error).__name__})")
            else:  # e.g. a config the launcher cannot compose: a retry would fail alike
                study._storage.set_trial_user_attr(trial._trial_id, FAIL_ATTR, repr(error)[:500])
                study.tell(trial.number, state=TrialState.FAIL)
        raise
    errors = []
    for trial, result in zip(trials, results, strict=True):
        log.info(tell(study, trial, result))
        if result.error is not None and not isinstance(result.error, catch):
            errors.append(result.error)
    if errors:  # not an error a search expects (e.g. a config error): stop, as Optuna does
        raise errors[0]
    best = _best(study)
    if best is not None:
        log.info(f"Best so far: trial {best.number}, {best.value:.6g}")


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None
