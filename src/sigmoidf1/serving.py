"""What ``sigmoidf1-serve`` does: answer prediction requests over HTTP, with LitServe.

::

    POST /predict  {"inputs": [row, ...]}
               ->  {"predictions": [{"labels": [...], "scores": {label: probability}}, ...]}
    GET  /health   200 "ok" once every inference worker has loaded the model, 503 before

A row is what one line of a ``sigmoidf1-predict`` input file holds, e.g. ``{"Att1": 0.09, ...,
"Att103": -0.01}`` for Yeast, ``{"text": "..."}`` for text data, ``{"image": "/abs/path.png"}`` for
images (a file on the server). Predictions come back in row order, computed as
``sigmoidf1-predict`` computes them (``sigmoidf1.inference``): same preprocessing, same per-label
thresholds, hence the same labels.

Where a request goes:

1. the HTTP server process (uvicorn + FastAPI): ``BoundedQueue`` answers 503 with ``Retry-After``
   when ``max_queue`` requests are already in the server; LitServe answers 413 above
   ``max_payload_bytes``; FastAPI checks the body against ``PredictRequest`` and answers 422 when it
   is not JSON, lacks ``inputs``, has other keys, or holds a row that is not a JSON object.
2. an inference worker (``workers_per_device`` processes per device, each loading the checkpoint
   once in ``setup``): LitServe gathers up to ``max_batch_size`` requests, waiting at most
   ``batch_timeout`` seconds. Each request's rows are preprocessed on their own
   (``rows_dataset``), so a request whose rows the data module rejects (a missing feature, a value
   that is not a number) gets its own 422 naming ``inputs[i]`` without failing the requests
   batched with it; the rows of the others go through the model together, ``batch_size`` rows per
   forward pass.
"""

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import litserve as ls
import torch
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from torch.utils.data import ConcatDataset, Dataset

from sigmoidf1.checkpoints import load_trained, read_checkpoint
from sigmoidf1.inference import predict_batches, prediction_records, rows_dataset
from sigmoidf1.utils.config import apply_extras
from sigmoidf1.utils.errors import ConfigError, UserError
from sigmoidf1.utils.logging import get_logger
from sigmoidf1.utils.trust import trusted_prefixes

log = get_logger(__name__)

PREDICT_PATH = "/predict"
HEALTH_PATH = "/health"


class PredictRequest(BaseModel):
    """The body of ``POST /predict``: one or more rows, each a JSON object."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key ("input") is an error, not ignored

    inputs: list[dict[str, Any]] = Field(
        min_length=1, description="rows as in a sigmoidf1-predict input file"
    )


class RejectedRows:
    """A request whose rows the data module refused: answered 422 with ``message``."""

    def __init__(self, message: str) -> None:
        self.message = message


class BoundedQueue:
    """ASGI middleware: at most ``max_queue`` requests to ``path`` inside the server at once
    (waiting in LitServe's queue or being predicted). Beyond that a request is answered 503 with
    ``Retry-After`` at once, so an overload shows as quick refusals instead of latency and memory
    growing without bound. The count is per HTTP server process (``api_servers``)."""

    def __init__(self, app: ASGIApp, max_queue: int, path: str = PREDICT_PATH) -> None:
        self.app = app
        self.max_queue = max_queue
        self.path = path
        self.active = 0  # one event loop per process: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_queue:
            busy = JSONResponse(
                {"detail": f"server busy: {self.max_queue} requests already queued; retry later"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
            await busy(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


class ClassifierAPI(ls.LitAPI):
    """LitServe's view of a checkpoint: decode a request into a dataset of model inputs, predict
    a batch of requests in one pass, encode each request's predictions."""

    def __init__(
        self,
        ckpt_path: str,
        data_overrides: dict[str, Any] | None = None,
        batch_size: int | None = None,
        decimals: int | None = 6,
        num_threads: int | None = None,
        max_batch_size: int = 16,
        batch_timeout: float = 0.005,
        trusted_targets: list[str] | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.ckpt_path = ckpt_path
        self.data_overrides = data_overrides or {}
        self.batch_size = batch_size
        self.decimals = decimals
        self.num_threads = num_threads
        self.trusted_targets = trusted_targets or []

    def setup(self, device: str) -> None:
        """Load the model and its preprocessing once per inference worker."""
        # Ctrl-C reaches every process of the group: the main process stops this worker (with
        # SIGTERM) once the HTTP servers are down, instead of a KeyboardInterrupt traceback here
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        model, self.datamodule = load_trained(
            self.ckpt_path, self.data_overrides, self.trusted_targets
        )
        self.device = torch.device(device)
        self.model = model.to(self.device)

    def decode_request(self, request: PredictRequest) -> Dataset | RejectedRows:
        """The request's rows preprocessed as ``sigmoidf1-predict`` would (``rows_dataset``).

        A refusal is returned, not raised: raised, it would fail every request of the batch."""
        try:
            return rows_dataset(self.datamodule, request.inputs)
        except (UserError, FileNotFoundError) as error:
            return RejectedRows(str(error))

    def predict(self, x: Any) -> Any:
        """``x``: one decoded request, or a list of them when ``max_batch_size > 1`` (LitServe's
        default ``batch`` and ``unbatch`` keep lists of anything but tensors and arrays as they
        are: requests hold different numbers of rows, and ``predict_requests`` joins them)."""
        if self.max_batch_size == 1:
            return self.predict_requests([x])[0]
        return self.predict_requests(x)

    def predict_requests(
        self, requests: list[Dataset | RejectedRows]
    ) -> list[list[dict[str, Any]] | RejectedRows]:
        """Predictions per request; the rows of every accepted request in one loader."""
        accepted = [request for request in requests if not isinstance(request, RejectedRows)]
        records: list[dict[str, Any]] = []
        if accepted:
            loader = self.datamodule.predict_loader(ConcatDataset(accepted), self.batch_size)
            for probabilities, predicted in predict_batches(self.model, loader, self.device):
                records.extend(
                    prediction_records(
                        probabilities, predicted, self.model.label_names, self.decimals
                    )
                )
        outputs: list[list[dict[str, Any]] | RejectedRows] = []
        start = 0
        for request in requests:
            if isinstance(request, RejectedRows):
                outputs.append(request)
            else:
                outputs.append(records[start : start + len(request)])
                start += len(request)
        return outputs

    def encode_response(self, output: list[dict[str, Any]] | RejectedRows) -> Any:
        """``{"predictions": [...]}``, or the 422 of a refused request (a response object, which
        LitServe passes through as it is)."""
        if isinstance(output, RejectedRows):
            return JSONResponse({"detail": output.message}, status_code=422)
        return {"predictions": output}


@contextmanager
def stop_on_signals(server: ls.LitServer) -> Iterator[None]:
    """Inside, the first SIGINT or SIGTERM runs LitServe's graceful shutdown (HTTP servers and
    inference workers stopped, port freed) instead of the process dying with its workers left
    behind; a second signal kills at once.

    LitServe (0.2.19) shuts down on Ctrl-C without telling its worker-monitoring thread, which
    then polls the stopped process manager and logs a traceback: the handler first sets the
    shutdown event that thread watches (from a thread of its own, as the main thread is inside a
    call to that manager) and waits for the thread to end.
    """
    main_pid = os.getpid()

    def stop(signum: int, frame: Any) -> None:
        if os.getpid() != main_pid:
            # a forked child (LitServe's queue manager, an HTTP server process) that got the
            # signal with its process group (Ctrl-C, systemd, `kill -- -PGID`): the main process
            # stops it in order; dying now would break the queues under the other processes
            return
        for name in (signal.SIGINT, signal.SIGTERM):
            signal.signal(name, signal.SIG_DFL)
        event = getattr(server, "_shutdown_event", None)
        if event is not None:
            setter = threading.Thread(target=event.set)
            setter.start()
            setter.join(timeout=5)
        for thread in threading.enumerate():
            if thread.name == "litserve-monitoring":
                thread.join(timeout=getattr(server, "monitor_internal", 2) + 1)
        raise KeyboardInterrupt

    previous = {name: signal.signal(name, stop) for name in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(name, handler)


async def describe_invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 with one readable ``detail`` line per problem (``inputs[0]: Input should be a valid
    dictionary``) instead of FastAPI's default, which echoes the offending input back."""
    problems = []
    for problem in error.errors():
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in problem["loc"][1:]
        ).lstrip(".")
        if problem["type"] == "json_invalid":
            reason = problem.get("ctx", {}).get("error", problem["msg"])
            position = problem["loc"][-1]
            problems.append(f"the body is not valid JSON ({reason}, at character {position})")
        else:
            problems.append(f"{where or 'body'}: {problem['msg']}")
    detail = "; ".join(problems) + ' (expected {"inputs": [row, ...]}, each row a JSON object)'
    return JSONResponse({"detail": detail}, status_code=422)


def check_settings(cfg: DictConfig) -> None:
    """Refuse settings that cannot work, before anything is loaded or started."""
    if cfg.host not in ("127.0.0.1", "0.0.0.0", "::"):  # what LitServe binds to
        raise ConfigError(f"host must be 127.0.0.1, 0.0.0.0 or ::, got {cfg.host!r}")
    if not 1024 <= int(cfg.port) <= 65535:
        raise ConfigError(f"port must be in 1024..65535, got {cfg.port}")
    for key in (
        "max_batch_size",
        "max_queue",
        "workers_per_device",
        "api_servers",
        "max_payload_bytes",
    ):
        if int(cfg[key]) < 1:
            raise ConfigError(f"{key} must be >= 1, got {cfg[key]}")
    if cfg.batch_size is not None and int(cfg.batch_size) < 1:
        raise ConfigError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if float(cfg.batch_timeout) < 0:
        raise ConfigError(f"batch_timeout must be >= 0 seconds, got {cfg.batch_timeout}")


def build_server(cfg: DictConfig) -> ls.LitServer:
    """The LitServer for ``cfg`` (see ``configs/serve.yaml``); nothing is started yet."""
    api = ClassifierAPI(
        ckpt_path=str(cfg.ckpt_path),
        data_overrides=OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else {},
        batch_size=cfg.batch_size,
        decimals=cfg.decimals,
        num_threads=cfg.num_threads,
        max_batch_size=int(cfg.max_batch_size),
        batch_timeout=float(cfg.batch_timeout),
        trusted_targets=list(trusted_prefixes(cfg.get("trusted_targets"))),
    )
    server = ls.LitServer(
        api,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        workers_per_device=int(cfg.workers_per_device),
        timeout=cfg.timeout,
        healthcheck_path=HEALTH_PATH,
        max_payload_size=int(cfg.max_payload_bytes),  # bytes: LitServe 0.2.19 mishandles "10MB"
        middlewares=[(BoundedQueue, {"max_queue": int(cfg.max_queue)})],
    )
    server.app.add_exception_handler(RequestValidationError, describe_invalid_request)
    return server


def serve(cfg: DictConfig) -> None:
    """Serve ``cfg.ckpt_path`` until SIGINT or SIGTERM; the workers stop and the port is freed."""
    apply_extras(cfg)
    check_settings(cfg)
    # a bad or untrusted checkpoint fails here, with its message, not in a worker
    read_checkpoint(cfg.ckpt_path, cfg.get("trusted_targets"))
    server = build_server(cfg)
    log.info(
        f"Serving {cfg.ckpt_path} on http://{cfg.host}:{cfg.port}{PREDICT_PATH} "
        f"(health: {HEALTH_PATH}); stop with Ctrl-C or SIGTERM"
    )
    with stop_on_signals(server):
        server.run(
            host=str(cfg.host),
            port=int(cfg.port),
            num_api_servers=int(cfg.api_servers),
            log_level=str(cfg.log_level),
            generate_client_file=False,  # else LitServe writes client.py into the working dir
            access_log=bool(cfg.access_log),
        )
    log.info("Server stopped")
    log.info(f"Run directory: {cfg.paths.output_dir}")
