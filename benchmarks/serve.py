"""How much does ``sigmoidf1-serve`` answer? A bounded load test against localhost.

    python benchmarks/serve.py --train                      # trains a small Yeast model first
    python benchmarks/serve.py --ckpt logs/train/runs/<run>/checkpoints/last.ckpt
    python benchmarks/serve.py --url http://127.0.0.1:8000  # a server already running
    python benchmarks/serve.py --train --clients 1 8 32 --duration 10 --rounds 3 \\
        --json benchmarks/results/serve.json

For each number of concurrent clients (``--clients``), ``N`` client threads each keep one HTTP
connection open and send ``POST /predict`` with ``--rows`` Yeast rows, one request after the other
(a closed loop), for ``--duration`` seconds. The levels run in interleaved rounds (the order rotates
every round) so that a change in the machine's load hits every level alike. Reported per level:
requests and rows per second, p50 and p99 latency, and errors (non-200 answers and failed
connections, by kind), each as the median over rounds with the spread (min, max).

Unless ``--url`` is given the benchmark starts ``sigmoidf1-serve`` itself (``--server`` overrides,
``num_threads=--threads``) and stops it with SIGTERM at the end. The load generator runs on the
same machine as the server and competes with it for the CPUs: the figures are those of the pair.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 600  # seconds for the server to become healthy


def yeast_rows(count: int) -> list[dict[str, float]]:
    """The first ``count`` rows of the Yeast file, features only (the wheel of ``river``)."""
    from river.datasets import Yeast

    with gzip.open(Yeast().path, "rt", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return [
        {name: float(value) for name, value in zip(header, row, strict=True) if name[:3] == "Att"}
        for row in rows[:count]
    ]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def load(host: str, port: int, body: bytes, clients: int, duration: float) -> dict:
    """``clients`` closed-loop clients for ``duration`` seconds: counts, latencies, errors."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[Counter] = [Counter() for _ in range(clients)]
    start_line = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        headers = {"Content-Type": "application/json"}
        start_line.wait()
        while time.perf_counter() < deadline[0]:
            sent = time.perf_counter()
            try:
                connection.request("POST", "/predict", body, headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as error:
                errors[index][type(error).__name__] += 1
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=60)
                continue
            if response.status == 200:
                latencies[index].append(time.perf_counter() - sent)
            else:
                errors[index][f"HTTP {response.status}"] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + duration
    start_line.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    pooled = [latency for per_client in latencies for latency in per_client]
    return {
        "clients": clients,
        "seconds": elapsed,
        "requests": len(pooled),
        "requests_per_s": len(pooled) / elapsed,
        "p50_ms": percentile(pooled, 50) * 1000,
        "p99_ms": percentile(pooled, 99) * 1000,
        "errors": dict(sum(errors, Counter())),
    }


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(rounds: list[dict], rows_per_request: int) -> dict:
    """One level's rounds: median and (min, max) of each figure; errors summed."""
    rates = [r["requests_per_s"] for r in rounds]
    return {
        "requests_per_s": spread(rates),
        "rows_per_s": spread([rate * rows_per_request for rate in rates]),
        "p50_ms": spread([r["p50_ms"] for r in rounds]),
        "p99_ms": spread([r["p99_ms"] for r in rounds]),
        "requests": sum(r["requests"] for r in rounds),
        "errors": dict(sum((Counter(r["errors"]) for r in rounds), Counter())),
    }


# --- the server -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def train_checkpoint(workdir: Path, threads: int) -> Path:
    """A small Yeast model (3 epochs) trained with the real CLI."""
    run = workdir / "train"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sigmoidf1.train",
            "extras.print_config=false",
            "callbacks.progress_bar=null",
            "trainer.max_epochs=3",
            f"hydra.run.dir={run}",
        ],
        cwd=workdir,
        env=environment(workdir, threads),
        check=True,
        capture_output=True,
    )
    return run / "checkpoints" / "last.ckpt"


def environment(workdir: Path, threads: int) -> dict[str, str]:
    return {
        **os.environ,
        "SIGMOIDF1_ROOT": str(workdir),
        "OMP_NUM_THREADS": str(threads),
        "PYTHONWARNINGS": "ignore",
    }


def start_server(
    checkpoint: Path, workdir: Path, threads: int, overrides: list[str]
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "sigmoidf1.serve",
        f"ckpt_path={checkpoint}",
        f"port={port}",
        f"num_threads={threads}",
        "log_level=warning",
        *overrides,
    ]
    log = open(workdir / "server.log", "w")  # noqa: SIM115 - the server writes it until stopped
    process = subprocess.Popen(
        command, cwd=workdir, env=environment(workdir, threads), stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not healthy(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"the server did not start:\n{(workdir / 'server.log').read_text()}")
        time.sleep(0.5)
    return process, url


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", type=Path, help="serve this checkpoint")
    source.add_argument("--train", action="store_true", help="train a small Yeast model to serve")
    source.add_argument("--url", help="load an already running server (http://host:port)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per level per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1, help="Yeast rows per request")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before timing")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument(
        "--server", nargs="*", default=[], help="sigmoidf1-serve overrides (max_batch_size=32 ...)"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if min(args.clients) < 1 or args.rounds < 1 or args.rows < 1 or args.duration <= 0:
        parser.error("--clients, --rounds and --rows must be >= 1 and --duration > 0")

    body = json.dumps({"inputs": yeast_rows(args.rows)}).encode()
    with tempfile.TemporaryDirectory(prefix="sigmoidf1-bench-serve-") as folder:
        workdir = Path(folder)
        process = None
        if args.url:
            url = args.url.rstrip("/")
        else:
            checkpoint = args.ckpt or train_checkpoint(workdir, args.threads)
            process, url = start_server(checkpoint.resolve(), workdir, args.threads, args.server)
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        try:
            load_before = os.getloadavg()
            load(host, int(port), body, max(args.clients), args.warmup)
            rounds: dict[int, list[dict]] = {n: [] for n in args.clients}
            for r in range(args.rounds):
                order = (
                    args.clients[r % len(args.clients) :] + args.clients[: r % len(args.clients)]
                )
                for clients in order:
                    result = load(host, int(port), body, clients, args.duration)
                    rounds[clients].append(result)
                    print(
                        f"round {r + 1} clients {clients:>3}: {result['requests_per_s']:8.1f} req/s"
                        f"  p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms"
                        f"  errors {result['errors'] or 0}",
                        flush=True,
                    )
            load_after = os.getloadavg()
        finally:
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=120)

    results = {
        "command": "python benchmarks/serve.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "server_overrides": args.server,
        "server_torch_threads": args.threads,
        "rows_per_request": args.rows,
        "seconds_per_level_per_round": args.duration,
        "rounds": args.rounds,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
        "levels": {
            str(clients): summarise(per_round, args.rows) for clients, per_round in rounds.items()
        },
        "per_round": {str(clients): per_round for clients, per_round in rounds.items()},
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
