"""The cluster path for real: a local SLURM cluster of two nodes (``scripts/slurm_local.sh``), the
CPU batch script ``scripts/sbatch_cpu.sh``, a submitit sweep (``hydra/launcher=slurm``),
preemption and requeue, and ``torchrun --nnodes=2``.

Every path trains the same run (Yeast, 2 epochs, global batch 64, world size 2, seed 42) and must
end with the test metrics of that run under ``trainer=ddp_cpu`` on one machine (trained once per
session), to float equality: the same processes do the same float math, whoever starts them.

The cluster needs Debian's slurm-wlm and munge and root (``.ci/run`` installs them); elsewhere
these tests are skipped with the reason. The session starts the cluster and stops it at the end
(unless it was running before).
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DESIGN_TEST_METRICS, REPO_ROOT, once_per_session, read_json, run_cli

pytestmark = pytest.mark.xdist_group("slurm")  # one worker: one cluster

CLUSTER = REPO_ROOT / "scripts" / "slurm_local.sh"
SBATCH_CPU = REPO_ROOT / "scripts" / "sbatch_cpu.sh"
SIZE = ["trainer.max_epochs=2", "data.batch_size=64"]  # 25 batches an epoch on Yeast
LAYOUT = ["trainer=ddp_cpu", "trainer.devices=1", "trainer.num_nodes=2"]  # 2 nodes x 1 process
JOB_TIMEOUT = 600  # seconds a job may take, its queueing and requeue included
SIGNAL_STEP = 10  # where the preempted job is signalled (epoch 0 of 25 batches)
DOCS = REPO_ROOT / "docs" / "cluster.md"


def cluster_unavailable() -> str | None:
    """Why the local cluster cannot run here (None when it can)."""
    missing = [
        tool for tool in ("slurmctld", "slurmd", "munged", "sbatch") if not shutil.which(tool)
    ]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)}): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "the local SLURM cluster (scripts/slurm_local.sh) runs its daemons as root"
    return None


def cluster(command: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLUSTER), command], capture_output=True, text=True, timeout=180, env=env
    )


def job_env(workdir: Path, slurm_conf: str) -> dict[str, str]:
    """What a user has in the shell that submits: the environment with sigmoidf1 (its bin first on
    PATH, as after `source .venv/bin/activate`), SLURM_CONF, W&B offline; this checkout's
    sources and the tests' callbacks importable by the jobs."""
    path = [str(REPO_ROOT / "src"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "SLURM_CONF": slurm_conf,
        "SIGMOIDF1_ROOT": str(workdir),
        "WANDB_MODE": "offline",
        "PYTHONWARNINGS": "ignore",
        "OMP_NUM_THREADS": "1",  # one torch thread per process, as in the reference
    }


@pytest.fixture(scope="session")
def slurm_conf() -> str:
    """The running local cluster's SLURM_CONF (started here, stopped at the end of the session)."""
    reason = cluster_unavailable()
    if reason:
        pytest.skip(reason)
    was_running = cluster("status").returncode == 0
    started = cluster("start")
    assert started.returncode == 0, started.stdout + started.stderr
    conf = cluster("env").stdout.strip().removeprefix("export SLURM_CONF=")
    yield conf
    if not was_running:
        stopped = cluster("stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def scontrol_job(job: str, env: dict) -> dict[str, str]:
    """``scontrol show job`` as ``key -> value`` (the first record: an array's first task)."""
    output = subprocess.run(
        ["scontrol", "show", "job", job], capture_output=True, text=True, env=env, check=True
    ).stdout
    fields = {}
    for token in output.split():
        key, _, value = token.partition("=")
        fields.setdefault(key, value)
    return fields


def wait_for_job(job: str, env: dict, timeout: float = JOB_TIMEOUT) -> dict[str, str]:
    """Wait until ``job`` has left the queue (requeues included); its final ``scontrol`` record."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = scontrol_job(job, env)["JobState"]
        if state not in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING"):
            return scontrol_job(job, env)
        time.sleep(2)
    subprocess.run(["scancel", job], env=env)
    raise AssertionError(f"SLURM job {job} did not finish in {timeout} s")


def sbatch(workdir: Path, env: dict, *overrides: str) -> str:
    """``sbatch scripts/sbatch_cpu.sh <overrides>`` from ``workdir`` (the project root of the job,
    where its logs/ go); returns the job id."""
    (workdir / "logs").mkdir(exist_ok=True)
    result = subprocess.run(
        ["sbatch", "--parsable", str(SBATCH_CPU), *overrides],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().split(";")[0]


def job_log(workdir: Path, job: str) -> str:
    path = workdir / "logs" / f"slurm-{job}.out"
    return path.read_text() if path.exists() else "(no log)"


def assert_same_test_metrics(run_dir: Path, reference: Path) -> None:
    metrics, expected = read_json(run_dir / "test_metrics.json"), read_json(reference)
    assert set(metrics) == set(expected) >= DESIGN_TEST_METRICS
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-6), name
    difference = max(abs(metrics[name] - value) for name, value in expected.items())
    print(  # the evidence, with -s
        f"{run_dir}: test/f1_micro {metrics['test/f1_micro']:.6f} (reference"
        f" {expected['test/f1_micro']:.6f}), largest difference over {len(expected)} test"
        f" metrics {difference:.1e}"
    )


def describe(job: str, record: dict[str, str]) -> str:
    """One line on a finished job from its ``scontrol`` record (printed with -s)."""
    fields = ("JobState", "Restarts", "NumNodes", "NumTasks", "RunTime", "NodeList")
    return f"SLURM job {job}: " + ", ".join(f"{key}={record.get(key)}" for key in fields)


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> Path:
    """test_metrics.json of the run on one machine: trainer=ddp_cpu (2 processes), same seed."""

    def build(root: Path) -> None:
        run_dir = f"hydra.run.dir={root / 'run'}"
        run_cli("train", "trainer=ddp_cpu", *SIZE, run_dir, cwd=root, env={"OMP_NUM_THREADS": "1"})

    return (
        once_per_session(tmp_path_factory, "cluster_reference", build) / "run" / "test_metrics.json"
    )


def test_the_cluster_tests_keep_to_one_worker(request):
    """Under ``--dist loadgroup`` (``make test``) every test here carries its group in its id, which
    sends them all to one worker: two of them on the one local cluster at once would wait on each
    other's jobs. (pytest 9.2 with pytest-xdist 3.8 drops the group without a word.)"""
    if not getattr(request.config.option, "loadgroup", False):  # set in pytest-xdist's workers
        pytest.skip("runs under pytest-xdist's --dist loadgroup, as make test does")
    assert request.node.nodeid.endswith("@slurm"), request.node.nodeid


# --- the documentation ---------------------------------------------------------------------
@pytest.mark.parametrize("script", ["sbatch_cpu.sh", "sbatch_gpu.sh"])
def test_the_docs_show_the_batch_scripts_verbatim(script):
    text = (REPO_ROOT / "scripts" / script).read_text()
    assert f"```text\n{text}```" in DOCS.read_text(), f"docs/cluster.md is out of date: {script}"


# --- the cluster script -----------------------------------------------------------------------
@pytest.mark.slow
def test_the_cluster_script_is_idempotent_and_stops_everything(slurm_conf):
    env = {**os.environ, "SLURM_CONF": slurm_conf}
    again = cluster("start")
    assert again.returncode == 0, again.stderr
    nodes = subprocess.run(
        ["sinfo", "--noheader", "--Node", "--format=%N %t"], env=env, capture_output=True, text=True
    ).stdout.split("\n")
    assert sorted(line.split()[0] for line in nodes if line) == ["n1", "n2"]
    assert cluster("status").returncode == 0
    print(again.stdout + "\n".join(nodes))

    run_dir = Path(slurm_conf).parent / "run"
    pids = [int(p.read_text()) for p in run_dir.glob("*.pid")]
    pids.append(int((Path(slurm_conf).parent / "munge" / "munged.pid").read_text()))
    assert len(pids) == 4  # slurmctld, slurmd n1 and n2, munged
    assert cluster("stop").returncode == 0
    assert cluster("stop").returncode == 0  # stopping a stopped cluster is fine
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} still running after stop"
    assert cluster("status").returncode != 0
    restarted = cluster("start")  # the rest of the session needs it
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr


# --- sbatch ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_cpu_batch_script_trains_on_two_nodes_like_ddp_cpu_on_one(
    slurm_conf, reference, workdir
):
    env = job_env(workdir, slurm_conf)
    job = sbatch(workdir, env, *SIZE)
    record = wait_for_job(job, env)
    print(describe(job, record))
    log = job_log(workdir, job)
    assert record["JobState"] == "COMPLETED", log[-4000:]
    assert record["NumNodes"] == "2" and record["NumTasks"] == "2"

    runs = workdir / "logs" / "train" / "runs"
    assert [p.name for p in runs.iterdir()] == [job]  # one run directory, named after the job
    run_dir = runs / job
    assert len(list(workdir.rglob("test_metrics.json"))) == 1
    assert_same_test_metrics(run_dir, reference)
    # the second process came from the second node (ranks > 0 log to the run's file only)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (run_dir / "train.log").read_text()
    # without a terminal, the log shows the epochs as plain lines (not a progress bar)
    assert log.count("sigmoidf1.callbacks.progress") >= 2 and "epoch 1/1: train/loss" in log
    assert f"Run directory: {run_dir}" in log


# --- preemption and requeue ------------------------------------------------------------------
@pytest.mark.slow
def test_a_preempted_job_saves_is_requeued_and_resumes_into_the_same_run(
    slurm_conf, reference, workdir
):
    """SIGUSR1 (what ``--signal=USR1@90`` sends before the time limit) in the middle of epoch 0:
    the job saves, requeues itself, restarts under the same id and continues from its checkpoint
    into the same run directory and W&B run, and ends as the uninterrupted run."""
    env = job_env(workdir, slurm_conf)
    marker = workdir / "step.marker"
    job = sbatch(
        workdir,
        env,
        *SIZE,
        "logger=[csv,wandb]",
        "+callbacks.wait._target_=tests.helpers.WaitForSignalAtStep",
        f"+callbacks.wait.step={SIGNAL_STEP}",
        f"+callbacks.wait.marker={marker}",
    )
    deadline = time.monotonic() + JOB_TIMEOUT
    while not marker.exists():
        assert time.monotonic() < deadline, job_log(workdir, job)[-4000:]
        assert scontrol_job(job, env)["JobState"] in ("PENDING", "RUNNING"), job_log(workdir, job)
        time.sleep(0.5)
    subprocess.run(["scancel", "--signal=USR1", job], env=env, check=True)
    record = wait_for_job(job, env)
    print(describe(job, record))
    log = job_log(workdir, job)
    assert record["JobState"] == "COMPLETED", log[-4000:]
    assert record["Restarts"] == "1", log[-4000:]

    run_dir = workdir / "logs" / "train" / "runs" / job
    checkpoint = run_dir / "checkpoints" / "interrupted.ckpt"
    stop = SIGNAL_STEP + 1  # the processes agree on the stop at the next batch end
    assert f"Stopped by SIGUSR1 in epoch 0 after {stop} batch(es) (global step {stop})" in log
    assert f"SLURM job {job} is requeued and continues from {checkpoint}" in log
    assert f"SLURM job {job} restarted (1): continuing from {checkpoint}" in log
    assert "not resumable" not in log  # Lightning's warning for loaders that restart the epoch
    assert [p.name for p in (workdir / "logs" / "train" / "runs").iterdir()] == [job]
    assert not checkpoint.exists()  # removed once the resumed fit completed
    assert_same_test_metrics(run_dir, reference)

    # one W&B run, continued: two offline segments with the same run id
    segments = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(segments) == 2 and len({p.name.rsplit("-", 1)[1] for p in segments}) == 1
    assert f"W&B: continuing run {segments[0].name.rsplit('-', 1)[1]}" in log

    # metrics.csv holds the whole run: the rows before the stop were kept
    reference_csv = reference.parent / "metrics.csv"
    with open(reference_csv) as a, open(run_dir / "metrics.csv") as b:
        expected, got = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert [(r["epoch"], r["step"]) for r in got] == [(r["epoch"], r["step"]) for r in expected]
    for want, have in zip(expected, got, strict=True):
        for key in ("train/loss_step", "val/loss", "val/f1_macro", "test/f1_macro"):
            if want.get(key):  # the interrupted epoch's train/* aggregates cover its resumed part
                assert float(have[key]) == pytest.approx(float(want[key]), abs=1e-6), key


# --- submitit ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_submitit_sweep_runs_each_job_on_two_nodes_and_survives_preemption(
    slurm_conf, reference, workdir
):
    """Two jobs of 2 nodes x 1 process each, both signalled in the middle of epoch 0: each array
    task requeues itself, submitit runs it again into the same job directory, and it continues."""
    env = job_env(workdir, slurm_conf)
    sweep_command = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sigmoidf1.train",
            "-m",
            "hydra/launcher=slurm",
            *LAYOUT,
            "loss=sigmoid_f1,bce",
            *SIZE,
            # the local cluster's nodes: no GPUs, and what one of its CPUs can hold
            "hydra.launcher.gpus_per_node=null",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1",
            "+callbacks.wait._target_=tests.helpers.WaitForSignalAtStep",
            f"+callbacks.wait.step={SIGNAL_STEP}",
            f"+callbacks.wait.marker={workdir}/marker-${{hydra:job.num}}",
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + JOB_TIMEOUT
        while not all((workdir / f"marker-{n}").exists() for n in (0, 1)):
            assert sweep_command.poll() is None, sweep_command.stdout.read()[-4000:]
            assert time.monotonic() < deadline, "the jobs did not reach the signal step"
            time.sleep(0.5)
        array = next((workdir / "logs" / "train" / "multiruns").glob("*/.submitit/*_0")).name
        subprocess.run(["scancel", "--signal=USR1", array.split("_")[0]], env=env, check=True)
        output = sweep_command.communicate(timeout=JOB_TIMEOUT)[0]
    finally:
        if sweep_command.poll() is None:
            sweep_command.kill()
    assert sweep_command.returncode == 0, output[-4000:]

    sweeps = list((workdir / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1
    sweep = sweeps[0]
    assert (sweep / "multirun.yaml").is_file()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0", "1"]
    assert not (workdir / "logs" / "train" / "runs").exists()  # no rank wrote a run of its own
    for job, loss in zip(jobs, ("sigmoid_f1", "bce"), strict=True):
        assert f"loss={loss}" in (job / ".hydra" / "overrides.yaml").read_text()
        assert set(read_json(job / "test_metrics.json")) >= DESIGN_TEST_METRICS
        assert "restarted (1): continuing from" in (job / "train.log").read_text()
    assert_same_test_metrics(jobs[0], reference)

    # each job was a SLURM array task of 2 nodes x 1 task, requeued once, and completed
    folders = (sweep / ".submitit").iterdir()
    submitted = sorted(p.name for p in folders if p.is_dir() and "_" in p.name)  # <array>_<task>
    assert len(submitted) == 2
    for array_task in submitted:
        record = wait_for_job(array_task, env)  # the results come before the job has ended
        print(describe(array_task, record))
        assert record["JobState"] == "COMPLETED" and record["Restarts"] == "1"
        assert record["NumNodes"] == "2" and record["NumTasks"] == "2"
        for rank in (0, 1):  # one result per task: both processes ran the job
            assert (sweep / ".submitit" / array_task / f"{array_task}_{rank}_result.pkl").is_file()


# --- torchrun without SLURM -------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_torchrun_on_two_nodes_trains_like_ddp_cpu_on_one(reference, workdir):
    """Two torchrun launchers (node ranks 0 and 1) over loopback, as docs/cluster.md shows them."""
    if shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("torchrun is not installed next to this Python")
    env = job_env(workdir, "")
    env.pop("SLURM_CONF")
    port = free_port()
    launchers = [
        subprocess.Popen(
            [
                "torchrun",
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={node}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                "-m",
                "sigmoidf1.train",
                *LAYOUT,
                "hydra.run.dir=logs/train/runs/torchrun-2nodes",
                *SIZE,
            ],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]
    outputs = []
    try:
        for launcher in launchers:
            outputs.append(launcher.communicate(timeout=JOB_TIMEOUT)[0])
    finally:
        for launcher in launchers:
            if launcher.poll() is None:
                launcher.kill()
    for launcher, output in zip(launchers, outputs, strict=True):
        assert launcher.returncode == 0, output[-4000:]
    runs = workdir / "logs" / "train" / "runs"
    assert [p.name for p in runs.iterdir()] == ["torchrun-2nodes"]
    assert_same_test_metrics(runs / "torchrun-2nodes", reference)
