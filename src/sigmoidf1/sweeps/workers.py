"""Which process runs which trial, and what happens to the trials of a worker that died.

A worker that is killed (SIGKILL, a SLURM time limit, an out-of-memory kill, a laptop lid) leaves
its trial RUNNING in the study forever: nothing in the study says that nobody runs it any more.
So every worker marks the trials it runs with

- who it is (``WORKER_ATTR``): the host name, the process id and its start time, and the kernel it
  runs on (boot id and PID namespace, on Linux);
- a heartbeat (``HEARTBEAT_ATTR``): the time, written every ``heartbeat_interval`` seconds while
  the trial runs.

A RUNNING trial is dead when, seen from another worker, either its process is gone (checked only
on the same kernel, where a process id means the same thing: immediate), or its last heartbeat
(else its start) is more than ``grace_period`` seconds old (any machine; needs clocks that agree
to well within the grace period). ``fail_dead_trials`` marks each dead trial FAIL and enqueues a
retry with the same parameters (user attribute ``retry_of``), which the next ``study.ask()``
of any worker picks up; two workers that find the same dead trial retry it once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigmoidf1.sweeps.study import FAIL_ATTR, HEARTBEAT_ATTR, RETRY_ATTR, WORKER_ATTR

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot; Linux), or None when it is gone (or
    a zombie: killed, not yet reaped by its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # from field 3 on: after "pid (comm)"
    return None if fields[0] in ("Z", "X") else fields[19]  # state, start time (field 22)


def _kernel() -> str | None:
    """This boot of this machine and this PID namespace (Linux), else None: two processes with the
    same value see the same process ids."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


@dataclass(frozen=True)
class Worker:
    host: str
    pid: int
    started: str | None  # None where /proc is missing: liveness then by heartbeat only
    kernel: str | None

    @classmethod
    def this_process(cls) -> Worker:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _process_start(pid), _kernel())

    def is_alive(self, record: dict[str, Any]) -> bool | None:
        """Whether the worker described by ``record`` (a ``WORKER_ATTR``) still runs, when this
        process can tell (same kernel); None when it cannot."""
        if self.kernel is None or record.get("kernel") != self.kernel or not record.get("started"):
            return None
        return _process_start(int(record["pid"])) == record["started"]

    def claim(self, study: optuna.Study, trial: optuna.Trial) -> None:
        """Mark ``trial`` as run by this worker, alive now."""
        storage = study._storage  # Trial has no public setter for system attributes
        storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, asdict(self))
        storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time())


class Heartbeat:
    """``with Heartbeat(study, trials, interval):`` writes the time on ``trials`` every
    ``interval`` seconds from a daemon thread, until the block ends."""

    def __init__(self, study: optuna.Study, trials: Sequence[Any], interval: float) -> None:
        self.storage = study._storage
        self.trial_ids = [trial._trial_id for trial in trials]
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="sweep-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            for trial_id in self.trial_ids:
                try:
                    self.storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
                except Exception as error:  # finished meanwhile, or the store hiccupped
                    log.debug(f"heartbeat of trial id {trial_id} not written: {error}")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join()


def last_sign_of_life(trial: optuna.trial.FrozenTrial) -> float:
    """Unix time of the trial's last heartbeat, else of its start."""
    beat = trial.system_attrs.get(HEARTBEAT_ATTR)
    if beat is not None:
        return float(beat)
    return trial.datetime_start.timestamp() if trial.datetime_start else time.time()


def fail_and_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str) -> bool:
    """Mark RUNNING ``trial`` FAIL with ``reason`` and enqueue a copy of its parameters; False
    (and nothing done) when another process finished or failed it first."""
    import optuna

    try:
        study._storage.set_trial_user_attr(trial._trial_id, FAIL_ATTR, reason)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    except (ValueError, RuntimeError):  # a finished trial (UpdateFinishedTrialError since 4.x)
        return False
    study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number})
    return True


def fail_dead_trials(study: optuna.Study, me: Worker, grace_period: float) -> list[int]:
    """Fail and retry the RUNNING trials whose worker is dead (see the module's docstring);
    returns their numbers."""
    import optuna

    now = time.time()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        record = trial.system_attrs.get(WORKER_ATTR) or {}
        alive = me.is_alive(record) if record else None
        if alive is None:
            silent = now - last_sign_of_life(trial)
            alive = silent <= grace_period
            reason = f"no heartbeat for {silent:.0f} s (grace period {grace_period:.0f} s)"
        else:
            reason = f"its worker (process {record['pid']} on {record['host']}) is gone"
        if not alive and fail_and_retry(study, trial, reason):
            log.warning(f"Trial {trial.number} failed: {reason}; it will be retried")
            failed.append(trial.number)
    return failed
