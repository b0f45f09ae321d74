"""``sigmoidf1-serve``: the real server in a subprocess, against ``sigmoidf1-predict`` on the same
rows; malformed requests; the bounded queue; shutdown on SIGINT and SIGTERM."""

from __future__ import annotations

import asyncio
import csv
import gzip
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sigmoidf1.data.yeast import river_yeast_path
from tests.conftest import QUIET, REPO_ROOT, once_per_session, run_cli

pytest.importorskip("litserve")

from sigmoidf1.serving import BoundedQueue, ClassifierAPI, PredictRequest, RejectedRows  # noqa: E402

pytestmark = pytest.mark.xdist_group("serve")  # one worker: the servers share the checkpoint

# seconds: the spawned inference worker imports torch again, slow on two busy cores
STARTUP_TIMEOUT = 300
BENCHMARKS = REPO_ROOT / "benchmarks"


# --- helpers --------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Nobody listens on ``port`` and a new server can bind it (with ``SO_REUSEADDR``, as uvicorn
    does: the connections the server closed may linger in TIME_WAIT, which is not a leak)."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


def request(url: str, body: bytes | None = None) -> tuple[int, dict | str]:
    """``(status, JSON body or text)`` of a GET (no body) or a JSON POST."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=60) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def post_rows(url: str, rows: list[dict]) -> tuple[int, dict | str]:
    return request(f"{url}/predict", json.dumps({"inputs": rows}).encode())


def yeast_rows(count: int) -> list[dict[str, float]]:
    """The first ``count`` rows of the Yeast file as ``{"Att1": ..., ...}`` (no labels)."""
    with gzip.open(river_yeast_path(), "rt", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return [
        {name: float(value) for name, value in zip(header, row, strict=True) if name[:3] == "Att"}
        for row in rows[:count]
    ]


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux ``/proc``; empty elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; its parent merely did not collect it yet


class Server:
    """``python -m sigmoidf1.serve`` on a free port, output in ``<workdir>/server.log``."""

    def __init__(self, checkpoint: Path, workdir: Path, *overrides: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "server.log"
        command = [
            sys.executable,
            "-m",
            "sigmoidf1.serve",
            f"ckpt_path={checkpoint}",
            f"port={self.port}",
            "num_threads=1",
            "log_level=warning",
            *overrides,
        ]
        env = {**os.environ, "SIGMOIDF1_ROOT": str(workdir), "PYTHONWARNINGS": "ignore"}
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(  # its own process group, as a shell job has
                command,
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_until_healthy()

    def output(self) -> str:
        return self.log.read_text()

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the server exited {self.process.returncode}:\n{self.output()}"
                )
            try:
                if request(f"{self.url}/health")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        self.process.kill()
        raise AssertionError(f"no healthy server after {STARTUP_TIMEOUT} s:\n{self.output()}")

    def stop(self, signum: int, timeout: float = 120, group: bool = False) -> int:
        """Send ``signum`` to the server process, or to its whole process group (as Ctrl-C in a
        terminal or systemd's stop do), and wait for the exit code."""
        if self.process.poll() is None:
            if group:
                os.killpg(self.process.pid, signum)
            else:
                self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A Yeast model trained once with the real CLI."""

    def build(root: Path) -> None:
        run_cli("train", *QUIET, "trainer.max_epochs=3", f"hydra.run.dir={root / 'run'}", cwd=root)

    return once_per_session(tmp_path_factory, "serve_yeast", build) / "run/checkpoints/last.ckpt"


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    """One server for the request tests: batches of up to 8 requests, gathered for 50 ms."""
    running = Server(
        checkpoint,
        tmp_path_factory.mktemp("serve"),
        "max_batch_size=8",
        "batch_timeout=0.05",
        "batch_size=4",  # several forward passes per batch: the split by request is exercised
    )
    yield running
    running.stop(signal.SIGTERM)


# --- refusals before anything starts -------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        (["host=localhost"], 2, "host must be 127.0.0.1, 0.0.0.0 or ::, got 'localhost'"),
        (["port=80"], 2, "port must be in 1024..65535, got 80"),
        (["max_queue=0"], 2, "max_queue must be >= 1, got 0"),
        ([], 1, "ckpt_path not found"),
    ],
)
def test_bad_settings_are_refused_before_the_server_starts(cli, workdir, overrides, code, message):
    checkpoint = workdir / ("missing.ckpt" if code == 1 else "truncated.ckpt")
    if code != 1:
        checkpoint.write_bytes(b"not read: the settings are checked first")
    result = cli("serve", f"ckpt_path={checkpoint}", *overrides)
    assert result.returncode == code, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr


# --- the model behind the API, in this process ----------------------------------------------------
@pytest.fixture(scope="module")
def api(checkpoint) -> ClassifierAPI:
    api = ClassifierAPI(str(checkpoint), batch_size=3, decimals=None, max_batch_size=4)
    api.setup("cpu")
    return api


@pytest.mark.slow
def test_a_batch_of_requests_predicts_each_as_if_alone(api):
    rows = yeast_rows(9)
    requests = [rows[:2], [{"Att1": 0.1}], rows[2:9], rows[5:6]]  # the second is refused
    decoded = [api.decode_request(PredictRequest(inputs=r)) for r in requests]
    assert isinstance(decoded[1], RejectedRows) and "missing feature column" in decoded[1].message

    batched = api.predict(api.batch(decoded))
    alone = [api.predict([d])[0] for d in decoded]
    assert [len(o) if isinstance(o, list) else o for o in batched] == [2, decoded[1], 7, 1]
    for together, single in zip(batched, alone, strict=True):
        if isinstance(together, list):
            assert [p["labels"] for p in together] == [p["labels"] for p in single]
            for a, b in zip(together, single, strict=True):
                assert a["scores"] == pytest.approx(b["scores"], abs=1e-6)
    assert [p["labels"] for p in batched[3]] == [alone[2][3]["labels"]]  # rows[5] either way

    refused = api.encode_response(batched[1])
    assert refused.status_code == 422 and b"Att2" in refused.body
    assert set(api.encode_response(batched[0])) == {"predictions"}


@pytest.mark.slow
def test_without_batching_predict_takes_and_returns_one_request(api, checkpoint):
    unbatched = ClassifierAPI(str(checkpoint), decimals=None, max_batch_size=1)
    unbatched.setup("cpu")
    rows = yeast_rows(3)
    alone = unbatched.predict(unbatched.decode_request(PredictRequest(inputs=rows)))
    batched = api.predict([api.decode_request(PredictRequest(inputs=rows))])[0]
    assert [p["labels"] for p in alone] == [p["labels"] for p in batched]
    assert isinstance(unbatched.predict(RejectedRows("no")), RejectedRows)


# --- the bounded queue, in this process -----------------------------------------------------------
def test_bounded_queue_refuses_beyond_its_bound_and_lets_health_through():
    release = asyncio.Event()

    async def slow_app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    async def call(app, path: str) -> tuple[int, dict, bytes]:
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": path, "headers": []}
        await app(scope, receive, send)
        start = sent[0]
        headers = {k.decode(): v.decode() for k, v in start["headers"]}
        return start["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])

    async def scenario():
        app = BoundedQueue(slow_app, max_queue=2)
        held = [asyncio.create_task(call(app, "/predict")) for _ in range(2)]
        await asyncio.sleep(0)  # both enter and wait inside the app
        # a third is refused at once (without the bound it would wait: a timeout, not a pass)
        status, headers, body = await asyncio.wait_for(call(app, "/predict"), timeout=30)
        assert status == 503 and headers["retry-after"] == "1"
        assert "2 requests already queued" in json.loads(body)["detail"]
        health = asyncio.create_task(call(app, "/health"))  # not counted, not refused
        await asyncio.sleep(0)
        assert not health.done()  # it reached the (slow) app instead of a 503
        release.set()
        assert [(await task)[0] for task in [*held, health]] == [200, 200, 200]
        assert app.active == 0
        assert (await call(app, "/predict"))[0] == 200  # room again

    asyncio.run(scenario())


# --- the real server ------------------------------------------------------------------------------
@pytest.mark.slow
def test_concurrent_requests_get_the_labels_of_sigmoidf1_predict(server, checkpoint, tmp_path):
    rows = yeast_rows(40)
    inputs = tmp_path / "rows.jsonl"
    inputs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "predictions.jsonl"
    run_cli(
        "predict", f"ckpt_path={checkpoint}", f"input={inputs}", f"output={output}", cwd=tmp_path
    )
    expected = [json.loads(line) for line in output.read_text().splitlines()]
    assert len({tuple(p["labels"]) for p in expected}) > 1  # the rows do not all get one label set

    assert request(f"{server.url}/health") == (200, "ok")
    sizes = [1, 7, 3, 5, 2, 8, 4, 6, 4]  # 40 rows in 9 concurrent requests
    chunks, start = [], 0
    for size in sizes:
        chunks.append(rows[start : start + size])
        start += size
    with ThreadPoolExecutor(len(chunks)) as pool:
        answers = list(pool.map(lambda chunk: post_rows(server.url, chunk), chunks))
    predictions = []
    for status, body in answers:
        assert status == 200, body
        predictions.extend(body["predictions"])
    assert len(predictions) == len(rows)
    for served, predicted in zip(predictions, expected, strict=True):
        assert served["labels"] == predicted["labels"]
        # both rounded to 6 decimals; batches of other sizes may differ in the last float bits,
        # which can move a rounded score by one unit of the 6th decimal
        assert served["scores"] == pytest.approx(predicted["scores"], abs=2e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"inputs": [', "the body is not valid JSON"),
        (b'{"rows": [{"Att1": 0.1}]}', "inputs: Field required; rows: Extra inputs are not"),
        (b'{"inputs": [[0.1, 0.2]]}', "inputs[0]: Input should be a valid dictionary"),
        (b'{"inputs": []}', "inputs: List should have at least 1 item"),
        (b'{"inputs": [{"Att1": 0.1}]}', "inputs: missing feature column(s) Att2"),
        (json.dumps({"inputs": [*yeast_rows(2), {"Att1": 0.1}]}).encode(), "inputs[2]:"),
        (json.dumps({"inputs": [yeast_rows(1)[0] | {"Att9": "n/a"}]}).encode(), "inputs[0]:"),
    ],
)
def test_malformed_requests_get_422_with_a_clear_message(server, body, message):
    status, answer = request(f"{server.url}/predict", body)
    assert status == 422, answer
    assert message in answer["detail"]
    assert "0.1" not in answer["detail"]  # the offending input is not echoed back
    assert post_rows(server.url, yeast_rows(1))[0] == 200  # the server still answers


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "group"),
    [(signal.SIGTERM, False), (signal.SIGINT, True), (signal.SIGTERM, True)],
    ids=["SIGTERM", "Ctrl-C (SIGINT to the group)", "systemd stop (SIGTERM to the group)"],
)
def test_a_signal_stops_the_server_its_workers_and_frees_the_port(
    checkpoint, tmp_path, signum, group
):
    running = Server(checkpoint, tmp_path)
    children = children_of(running.process.pid)
    assert children, "LitServe runs its HTTP server and inference worker in child processes"
    assert post_rows(running.url, yeast_rows(2))[0] == 200

    assert running.stop(signum, group=group) == 0, running.output()
    output = running.output()
    assert "Server stopped" in output
    for noise in ("Traceback", "Error", "leaked"):
        assert noise not in output, output
    deadline = time.monotonic() + 30
    while any(map(is_running, children)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(is_running, children)), "a child process outlived the server"
    assert port_is_free(running.port)


@pytest.mark.slow
def test_the_load_benchmark_counts_answers_and_errors(server):
    """``benchmarks/serve.py``'s load loop: closed-loop clients, latencies, errors by kind."""
    spec = importlib.util.spec_from_file_location("bench_serve", BENCHMARKS / "serve.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    body = json.dumps({"inputs": yeast_rows(2)}).encode()
    result = bench.load("127.0.0.1", server.port, body, clients=2, duration=1.0)
    assert result["requests"] > 0 and result["errors"] == {}
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    refused = bench.load("127.0.0.1", server.port, b'{"inputs": 1}', clients=1, duration=0.5)
    assert refused["requests"] == 0 and refused["errors"].get("HTTP 422", 0) > 0
