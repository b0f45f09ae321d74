"""Optuna searches that survive: search space, exact trial count, dead workers, plots, and real
sweeps that are killed and resumed, or shared by two workers (hparams_search=yeast_optuna)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from sigmoidf1.utils.errors import ConfigError
from tests.conftest import QUIET

optuna = pytest.importorskip("optuna", reason="searches come with sigmoidf1[sweeps]")

from optuna.distributions import (  # noqa: E402
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hydra_plugins.sigmoidf1_sweeper.optuna_sweeper import consecutive_runs  # noqa: E402
from sigmoidf1.sweeps import loop, workers  # noqa: E402
from sigmoidf1.sweeps.__main__ import main as sweeps_cli  # noqa: E402
from sigmoidf1.sweeps.plots import FILES, write_plots  # noqa: E402
from sigmoidf1.sweeps.space import SearchSpace  # noqa: E402
from sigmoidf1.sweeps.study import (  # noqa: E402
    FAIL_ATTR,
    HEARTBEAT_ATTR,
    RETRY_ATTR,
    WORKER_ATTR,
    load_study,
    open_study,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {"x": FloatDistribution(0.0, 1.0), "k": IntDistribution(1, 4)}


def states(study) -> list[str]:
    return [trial.state.name for trial in study.get_trials(deepcopy=False)]


# --- search space -------------------------------------------------------------------------------
def test_search_space_reads_hydra_sweep_syntax_and_writes_overrides():
    space = SearchSpace.parse(
        {
            "loss.beta": "tag(log, interval(0.5, 16.0))",
            "loss.eta": "interval(-1.0, 1.0)",
            "data.batch_size": "range(16, 65, 16)",
            "model.depth": "tag(int, interval(1, 4))",
        },
        ["hparams_search=yeast_optuna", "loss.eta=interval(0, 0.5)", "+x=choice(a, b c)"],
    )
    assert space.distributions == {
        "loss.beta": FloatDistribution(0.5, 16.0, log=True),
        "loss.eta": FloatDistribution(0.0, 0.5),  # the command line wins
        "data.batch_size": IntDistribution(16, 64, step=16),  # Hydra's range: 65 excluded
        "model.depth": IntDistribution(1, 4),
        "x": CategoricalDistribution(["a", "b c"]),
    }
    assert space.fixed == ["hparams_search=yeast_optuna"]
    params = {"loss.beta": 2.5e-05, "loss.eta": 0.25, "data.batch_size": 32, "model.depth": 2}
    assert space.overrides({**params, "x": "b c"}) == [
        "hparams_search=yeast_optuna",
        "loss.beta=2.5e-05",
        "loss.eta=0.25",
        "data.batch_size=32",
        "model.depth=2",
        "+x='b c'",  # the `+` of the command line kept; a space quoted
    ]


def test_an_empty_search_space_is_refused():
    with pytest.raises(ConfigError, match="search space is empty"):
        SearchSpace.parse({}, ["trainer.max_epochs=2"])


def test_jobs_are_launched_in_runs_of_consecutive_trial_numbers():
    trials = [optuna.trial.FixedTrial({}, number) for number in (3, 4, 7, 8, 9, 11)]
    runs = consecutive_runs(trials)
    assert [[t.number for t in run] for run in runs] == [[3, 4], [7, 8, 9], [11]]


# --- the loop -----------------------------------------------------------------------------------
def objective(trials):
    return [loop.JobResult(value=t.params["x"] + t.params["k"]) for t in trials]


@pytest.mark.parametrize("store", ["optuna.journal", "sqlite"])
def test_run_study_ends_with_exactly_n_trials_and_continues_a_finished_one(tmp_path, store):
    journal = tmp_path / store if store != "sqlite" else f"sqlite:///{tmp_path / 'optuna.db'}"
    study = open_study("s", journal, "maximize")
    loop.run_study(study, SPACE, objective, n_trials=3, n_jobs=2)
    assert states(study) == ["COMPLETE"] * 3
    again = open_study("s", journal, "maximize")  # the same command again: nothing to do
    loop.run_study(again, SPACE, objective, n_trials=3)
    loop.run_study(again, SPACE, objective, n_trials=5)  # more trials: two more
    assert states(load_study(journal)) == ["COMPLETE"] * 5
    with pytest.raises(ConfigError, match="created to maximize, not to minimize"):
        open_study("s", journal, "minimize")


def test_per_trial_seeds_are_reproducible_and_never_repeat_across_resumes(tmp_path):
    def make_sampler(number):
        return optuna.samplers.RandomSampler(seed=1234 + number)

    def params(study):
        return [t.params["x"] for t in study.trials]

    one = open_study("s", tmp_path / "one.journal", "maximize")
    loop.run_study(one, SPACE, objective, n_trials=4, make_sampler=make_sampler)
    resumed = open_study("s", tmp_path / "two.journal", "maximize")
    loop.run_study(resumed, SPACE, objective, n_trials=2, make_sampler=make_sampler)
    resumed = open_study("s", tmp_path / "two.journal", "maximize")  # a new process, same seed
    loop.run_study(resumed, SPACE, objective, n_trials=4, make_sampler=make_sampler)
    assert params(one) == params(resumed)  # trial k drew with seed 1234 + k in both
    assert len(set(params(one))) == 4


def test_a_trial_asked_beyond_n_trials_by_a_concurrent_worker_is_not_run(tmp_path):
    study = open_study("s", tmp_path / "optuna.journal", "maximize")
    for _ in range(2):
        study.tell(study.ask(), 1.0)
    first, second = study.ask(), study.ask()  # two workers ask the last of 3 trials at once
    assert loop.within_quota(study, first, 3)
    assert not loop.within_quota(study, second, 3)


def test_a_worker_waits_for_the_last_trials_of_others_and_replaces_a_failed_one(tmp_path):
    study = open_study("s", tmp_path / "optuna.journal", "maximize")
    study.tell(study.ask(), 1.0)
    other = study.ask()  # another worker's trial, alive (it is this process)
    workers.Worker.this_process().claim(study, other)
    worker = threading.Thread(
        target=loop.run_study,
        args=(open_study("s", tmp_path / "optuna.journal", "maximize"), SPACE, objective, 2),
        kwargs={"poll_interval": 0.05},
    )
    worker.start()
    time.sleep(1.0)
    assert states(study) == ["COMPLETE", "RUNNING"]  # 1 finished + 1 running = 2: it waits
    study.tell(other, state=optuna.trial.TrialState.FAIL)  # the other worker's trial failed
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert states(study) == ["COMPLETE", "FAIL", "COMPLETE"]


def test_job_errors_fail_the_trial_divergence_goes_on_other_errors_stop(tmp_path):
    study = open_study("s", tmp_path / "optuna.journal", "maximize")
    outcomes = iter([FloatingPointError("diverged"), float("nan"), 0.5, RuntimeError("bug")])

    def run(trials):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            return [loop.JobResult(error=outcome)]
        return [loop.JobResult(value=outcome)]

    with pytest.raises(RuntimeError, match="bug"):
        loop.run_study(study, SPACE, run, n_trials=3)
    assert states(study) == ["FAIL", "FAIL", "COMPLETE", "FAIL"]
    assert "not a finite number" in study.trials[1].user_attrs[FAIL_ATTR]


def test_an_interrupted_batch_is_failed_and_retried_with_the_same_parameters(tmp_path):
    study = open_study("s", tmp_path / "optuna.journal", "maximize")

    def interrupted(trials):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.run_study(study, SPACE, interrupted, n_trials=2, n_jobs=2)
    assert states(study) == ["FAIL", "FAIL", "WAITING", "WAITING"]
    loop.run_study(study, SPACE, objective, n_trials=2)
    trials = study.trials
    assert states(study) == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    for retry in trials[2:]:
        original = trials[retry.user_attrs[RETRY_ATTR]]
        assert retry.params == original.params
        assert original.user_attrs[FAIL_ATTR] == "interrupted (KeyboardInterrupt)"


def test_a_launch_that_raises_fails_its_trials_without_retry(tmp_path):
    study = open_study("s", tmp_path / "optuna.journal", "maximize")

    def broken_launcher(trials):
        raise ConfigError("cannot compose")

    with pytest.raises(ConfigError):
        loop.run_study(study, SPACE, broken_launcher, n_trials=2)
    assert states(study) == ["FAIL"]
    assert "cannot compose" in study.trials[0].user_attrs[FAIL_ATTR]


# --- dead workers -------------------------------------------------------------------------------
def dead_worker_record() -> dict:
    """The worker record of a process that ran on this machine and is gone now."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    record = {**asdict(workers.Worker.this_process()), "pid": process.pid}
    record["started"] = workers._process_start(process.pid)
    process.kill()
    process.wait()
    return record


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_the_trials_of_dead_workers_fail_and_are_retried_once(tmp_path):
    study = open_study("s", tmp_path / "optuna.journal", "maximize")
    storage = study._storage
    me = workers.Worker.this_process()
    trials = [loop.ask(study, SPACE) for _ in range(4)]
    dead, alive, far_silent, far_beating = trials
    storage.set_trial_system_attr(dead._trial_id, WORKER_ATTR, dead_worker_record())
    me.claim(study, alive)
    elsewhere = {**asdict(me), "kernel": "another machine", "host": "node7"}
    for trial, beat in ((far_silent, time.time() - 400), (far_beating, time.time() - 10)):
        storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, elsewhere)
        storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, beat)

    other_worker = open_study("s", tmp_path / "optuna.journal", "maximize")
    seen_running = other_worker.trials[0]  # what a second worker saw just before
    assert workers.fail_dead_trials(study, me, grace_period=300) == [0, 2]
    assert not workers.fail_and_retry(other_worker, seen_running, "late")  # retried once only
    assert workers.fail_dead_trials(other_worker, me, grace_period=300) == []
    trials = study.trials
    assert states(study) == ["FAIL", "RUNNING", "FAIL", "RUNNING", "WAITING", "WAITING"]
    assert "is gone" in trials[0].user_attrs[FAIL_ATTR]
    assert "no heartbeat for 400 s" in trials[2].user_attrs[FAIL_ATTR]
    assert [t.user_attrs[RETRY_ATTR] for t in trials[4:]] == [0, 2]
    retry = loop.ask(study, SPACE)  # the next ask of any worker takes a retry, same parameters
    assert retry.number == 4 and retry.params == trials[0].params


def test_a_heartbeat_keeps_a_long_trial_alive(tmp_path):
    study = open_study("s", tmp_path / "optuna.journal", "maximize")
    trial = study.ask()
    with workers.Heartbeat(study, [trial], interval=0.05):
        time.sleep(0.5)
    stored = load_study(tmp_path / "optuna.journal").trials[0]
    assert time.time() - stored.system_attrs[HEARTBEAT_ATTR] < 1.0


# --- plots and the command line -----------------------------------------------------------------
def test_plots_and_status_of_a_study(tmp_path, capsys):
    study = open_study("s", tmp_path / "optuna.journal", "maximize")
    assert set(write_plots(study, tmp_path).values()) == {
        "not drawn: 0 complete trial(s), 1 needed",
        "not drawn: 0 complete trial(s), 2 needed",
    }
    loop.run_study(study, SPACE, objective, n_trials=4)
    assert sweeps_cli(["plots", str(tmp_path)]) == 0
    for filename in FILES.values():
        assert (tmp_path / filename).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", filename
    assert sweeps_cli(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "study s (maximize): 4 complete, 0 pruned" in out
    assert re.search(rf"best: trial {study.best_trial.number}, ", out)
    assert sweeps_cli(["status", str(tmp_path / "nowhere")]) == 2


def test_the_sweeper_ships_as_a_hydra_plugin():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper
    from setuptools import find_namespace_packages

    names = [f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Sweeper)]
    assert "hydra_plugins.sigmoidf1_sweeper.optuna_sweeper.OptunaSweeper" in names
    source = Path(__file__).resolve().parents[1] / "src"
    assert "hydra_plugins.sigmoidf1_sweeper" in find_namespace_packages(source)
    assert not (source / "hydra_plugins" / "__init__.py").exists()  # would hide other plugins


# --- real sweeps --------------------------------------------------------------------------------
SWEEP = [
    sys.executable,
    "-m",
    "sigmoidf1.train",
    "-m",
    "hparams_search=yeast_optuna",
    *QUIET,
    "trainer.max_epochs=2",
]


def start_sweep(workdir: Path, *overrides: str, log: str) -> subprocess.Popen:
    env = {**os.environ, "SIGMOIDF1_ROOT": str(workdir), "PYTHONWARNINGS": "ignore"}
    with open(workdir / log, "w") as out:
        return subprocess.Popen(
            [*SWEEP, *overrides],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed whole, as a scheduler does
        )


def finish(process: subprocess.Popen, workdir: Path, log: str) -> str:
    assert process.wait(timeout=900) == 0, (workdir / log).read_text()[-5000:]
    return (workdir / log).read_text()


SWEEP_DIR = Path("logs") / "train" / "sweeps" / "yeast_sigmoid_f1"


@pytest.mark.slow
def test_a_sweep_killed_during_a_trial_resumes_with_the_same_command(workdir):
    sweep = workdir / SWEEP_DIR
    process = start_sweep(workdir, "hydra.sweeper.n_trials=3", log="first.log")
    started = sweep / "1" / ".hydra" / "config.yaml"  # trial 1 has begun
    deadline = time.monotonic() + 600
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), (workdir / "first.log").read_text()[-5000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = load_study(sweep / "optuna.journal")
    assert states(before) == ["COMPLETE", "RUNNING"]
    print(f"killed during trial 1: {states(before)}")  # the evidence, with -s

    output = finish(
        start_sweep(workdir, "hydra.sweeper.n_trials=3", log="second.log"), workdir, "second.log"
    )
    study = load_study(sweep / "optuna.journal")
    trials = study.trials
    assert states(study) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert "is gone" in trials[1].user_attrs[FAIL_ATTR]
    assert trials[2].user_attrs[RETRY_ATTR] == 1 and trials[2].params == trials[1].params
    assert trials[0].value == before.trials[0].value  # kept, not run again
    assert output.count("Run directory:") == 2  # the retry and one new trial
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(t.value for t in trials if t.value))
    assert results["trials"] == {"complete": 3, "fail": 1}
    print(f"resumed: {states(study)}, best value {results['best_value']:.4f}")
    for filename in FILES.values():
        assert (sweep / filename).stat().st_size > 0


@pytest.mark.slow
def test_two_workers_share_one_study_and_run_each_trial_once(workdir):
    sweep = workdir / SWEEP_DIR
    n_trials = 6
    first = start_sweep(workdir, f"hydra.sweeper.n_trials={n_trials}", log="a.log")
    second = start_sweep(workdir, f"hydra.sweeper.n_trials={n_trials}", log="b.log")
    outputs = [finish(first, workdir, "a.log"), finish(second, workdir, "b.log")]
    study = load_study(sweep / "optuna.journal")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == n_trials
    for trial in study.trials:  # a surplus trial of a simultaneous ask is the only other kind
        assert trial.state.name == "COMPLETE" or "not run" in trial.user_attrs[FAIL_ATTR]
    run_dirs = [
        Path(line.split("Run directory:")[-1].strip())
        for output in outputs
        for line in output.splitlines()
        if "Run directory:" in line
    ]
    assert sorted(int(d.name) for d in run_dirs) == sorted(t.number for t in complete)
    assert {d.parent.resolve() for d in run_dirs} == {
        sweep.resolve()
    }  # trial k in <sweep>/k, run once
    pids = {t.system_attrs[WORKER_ATTR]["pid"] for t in complete}
    assert pids == {first.pid, second.pid}  # both workers ran trials
    print(
        f"two workers: {states(study)}; trials per worker"
        f" {sorted(sum(t.system_attrs[WORKER_ATTR]['pid'] == p for t in complete) for p in pids)}"
    )
