"""`lmctl serve`: a model behind HTTP, the rows of many clients' requests run as one batch.

The server holds no inference code: one `Predictor` (lmctl.predictor) is loaded once and does
the work, so a response's records are the ones `lmctl predict` writes for the same rows.

Dynamic batching: each request's rows are checked on arrival (a bad row is that request's 4xx,
never its neighbours' failure) and queued; one inference thread takes what is queued, up to
`max_batch_size` rows, and runs it as one `Predictor.predict` call (which sorts by length and
keeps a token budget like `predict`), then hands each request its own records. A batch starts
as soon as the model is free: rows that arrive while one batch runs form the next, so a lone
client never waits for company; `max_wait_ms` lets a batch that is not full wait that long for
more rows, and only while other requests are in flight (the previous batch held several).
Inference runs off the event loop, which keeps accepting, answering /health and refusing with
503 + Retry-After once `max_queue` requests wait, at once rather than by timing out.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (Request) at run time.
import asyncio
import collections
import hmac
import json
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmctl.console import Console
from lmctl.errors import RowError, UserError, first_line

# The page is static (no model, no data: it asks /info and /predict with the key typed into it),
# so it loads without the key; every route that answers with the model's data needs it.
OPEN_ROUTES = ("/health", "/")
ROUTES = ("/", "/predict", "/health", "/info", "/metrics", "/docs", "/openapi.json")


@dataclass
class ServeOptions:
    """`lmctl serve`'s options; also what a worker process is started with (as JSON)."""

    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    task: str | None = None
    mode: str | None = None
    max_batch_size: int = 32
    max_tokens: int | None = 256
    max_wait_ms: float = 2.0
    max_queue: int = 256
    max_rows_per_request: int = 64
    max_body_bytes: int = 1 << 20
    api_key: str | None = None
    threads: int | None = None
    workers: int = 1
    explain_steps: int = 20
    log_format: str = "text"


# ---- what the server reports -----------------------------------------------------------------
class Log:
    """One line per event (a start, a batch, a stop) on stderr: words, or JSON with --log-format json."""

    def __init__(self, fmt: str):
        self.json = fmt == "json"

    def __call__(self, event: str, message: str = "", **fields) -> None:
        if self.json:
            line = json.dumps({"time": round(time.time(), 3), "event": event,
                               **({"message": message} if message else {}), **fields})
        else:
            line = " ".join([event, message] + [f"{k}={v}" for k, v in fields.items()]).replace("  ", " ").strip()
        say(line)


def say(line: str) -> None:
    """One line to stderr in one write: print() writes the text and its newline apart, and --workers
    processes share this pipe, so their lines interleaved ("serving ... pid=1serving ... pid=2\n\n")."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class Metrics:
    """Prometheus metrics of one server process (a registry of its own, so two apps in one process
    do not collide); each --workers process counts its own."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # the *_created series only double what a scrape shows
        self.registry = CollectorRegistry()
        self.requests = Counter("lmctl_requests", "HTTP requests answered", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("lmctl_request_seconds", "Time from request to response", ["route"],
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30), registry=self.registry)
        self.rows = Counter("lmctl_rows", "Rows predicted", registry=self.registry)
        self.rows_per_second = Gauge("lmctl_rows_per_second", "Rows predicted per second over the last 10 s",
                                     registry=self.registry)
        self.batch_rows = Histogram("lmctl_batch_rows", "Rows per inference batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self.queue = Gauge("lmctl_queue_depth", "Requests waiting for the model", registry=self.registry)
        self.rejected = Counter("lmctl_rejected", "Requests refused", ["reason"], registry=self.registry)
        self._recent: collections.deque[tuple[float, int]] = collections.deque()

    def batch(self, rows: int) -> None:
        self.rows.inc(rows)
        self.batch_rows.observe(rows)
        now = time.monotonic()
        self._recent.append((now, rows))
        while self._recent and self._recent[0][0] < now - 10:
            self._recent.popleft()
        self.rows_per_second.set(sum(n for _, n in self._recent) / 10)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


# ---- the queue and the inference thread ------------------------------------------------------
class Overloaded(Exception):
    """The queue is full: the request is refused now (503) instead of waiting without bound."""


@dataclass
class _Job:
    rows: list[dict]
    future: asyncio.Future


class Batcher:
    """Requests' rows queued, run together on one inference thread, answered one by one."""

    def __init__(self, predict, max_rows: int, max_wait_ms: float, max_queue: int, batchable: bool,
                 metrics: Metrics, log: Log):
        self.predict, self.max_rows, self.max_wait = predict, max_rows, max_wait_ms / 1000
        self.max_queue, self.batchable, self.metrics, self.log = max_queue, batchable, metrics, log
        self.pending: collections.deque[_Job] = collections.deque()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="lmctl-infer")
        self._arrived = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None
        self._last_requests = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, rows: list[dict]) -> list[dict]:
        if len(self.pending) >= self.max_queue:
            raise Overloaded
        job = _Job(rows, asyncio.get_running_loop().create_future())
        self.pending.append(job)
        self.metrics.queue.set(len(self.pending))
        self._arrived.set()
        return await job.future

    async def run_alone(self, fn, *args):
        """Work that is not batched (explanations) on the same thread, so it never runs beside a batch."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task
        self.executor.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            while not self.pending:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            jobs = self._take()
            # A batch that is not full waits a little for more rows, but only under concurrent load:
            # after a batch of one request, a lone client is answered at once.
            if self.max_wait and self._last_requests > 1:
                deadline = time.monotonic() + self.max_wait
                while self._rows(jobs) < self.max_rows and (left := deadline - time.monotonic()) > 0:
                    self._arrived.clear()
                    if not self.pending:
                        try:
                            await asyncio.wait_for(self._arrived.wait(), left)
                        except TimeoutError:
                            break
                    more = self._take(self.max_rows - self._rows(jobs))
                    if not more and self.pending:  # the next request does not fit: it starts the next batch
                        break
                    jobs += more
            self.metrics.queue.set(len(self.pending))
            self._last_requests = len(jobs)
            await self._answer(jobs)

    def _take(self, room: int | None = None) -> list[_Job]:
        """Queued requests up to `room` rows (at least one request, whatever its size); a task whose
        predictions are ordered across rows (reranking groups by query) runs each request alone."""
        room = self.max_rows if room is None else room
        jobs: list[_Job] = []
        while self.pending and (not jobs or (self.batchable and self._rows(jobs) + len(self.pending[0].rows) <= room)):
            if not jobs and room <= 0:
                break
            jobs.append(self.pending.popleft())
        return jobs

    @staticmethod
    def _rows(jobs: list[_Job]) -> int:
        return sum(len(j.rows) for j in jobs)

    async def _answer(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        rows = [r for j in jobs for r in j.rows]
        start = time.perf_counter()
        try:
            records = await loop.run_in_executor(self.executor, self.predict, rows)
        except RowError as exc:
            if len(jobs) == 1:
                return self._fail(jobs[0], exc)
            for job in jobs:  # which request holds the bad row: each alone, so the others are answered
                await self._answer([job])
            return
        except Exception as exc:  # a bug or a library failure: every request of the batch gets a 500
            for job in jobs:
                self._fail(job, exc)
            return
        seconds = time.perf_counter() - start
        self.metrics.batch(len(rows))
        self.log("batch", rows=len(rows), requests=len(jobs), ms=round(1000 * seconds, 1), queued=len(self.pending))
        at = 0
        for job in jobs:
            if not job.future.done():  # a client that went away leaves a cancelled future
                job.future.set_result(records[at:at + len(job.rows)])
            at += len(job.rows)

    @staticmethod
    def _fail(job: _Job, exc: BaseException) -> None:
        if not job.future.done():
            job.future.set_exception(exc)


# ---- the HTTP application ----------------------------------------------------------------------
class _Refusal(Exception):
    """A request answered with an error: status, one line, the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers or {}


class Server:
    """The state one server process shares between its routes: the options, the model once it has
    loaded (in a thread, so /health answers 503 meanwhile), the batcher and the metrics."""

    def __init__(self, opts: ServeOptions, cfg, log: Log):
        self.opts, self.cfg, self.log = opts, cfg, log
        self.metrics = Metrics()
        self.predictor = None
        self.batcher: Batcher | None = None
        self.failure: str | None = None
        self.on_failure = lambda: None  # set by whoever runs the server: stop it
        self.url = ""  # where it listens, for the line that says it is ready

    # -- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model (in a thread started at start-up); a failure stops the server."""
        from lmctl.predictor import Predictor

        try:
            predictor = Predictor(self.opts.model, self.opts.mode, cfg=self.cfg, batch_size=self.opts.max_batch_size,
                                  max_tokens=self.opts.max_tokens, console=Console(enabled=False), key="--model")
        except UserError as exc:
            self.failure = str(exc)
        except Exception as exc:  # a damaged file deep in a library: one line, as every start-up failure
            self.failure = f"--model: {self.opts.model} cannot be loaded ({first_line(exc)})"
        else:
            self.batcher.batchable = predictor.task.streams
            self.predictor = predictor
            info = predictor.info()
            # The first line a server prints, once it answers: a start that fails prints only its error.
            self.log("serving", self.url, task=info["task"], backend=info["backend"], model=self.opts.model,
                     pid=os.getpid())
            return
        self.on_failure()

    # -- requests -----------------------------------------------------------------------------
    async def predict(self, body: bytes, explain: bool) -> list[dict]:
        if self.predictor is None:
            raise _Refusal(503, "the model is still loading; retry shortly", headers={"Retry-After": "1"})
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise _Refusal(400, f"the request body is not JSON ({exc}); send {{\"inputs\": [row, ...]}}",
                           "body") from None
        if not isinstance(payload, dict) or "inputs" not in payload:
            raise _Refusal(422, "no 'inputs'; send {\"inputs\": [row, ...]}", "inputs")
        rows = payload["inputs"]
        if not isinstance(rows, list):
            raise _Refusal(422, f"'inputs' is {type(rows).__name__}, not a list of rows", "inputs")
        if not rows:
            raise _Refusal(422, "'inputs' is empty; give at least one row", "inputs")
        if len(rows) > self.opts.max_rows_per_request:
            raise _Refusal(413, f"{len(rows)} rows in one request; the server takes at most "
                                f"{self.opts.max_rows_per_request} (--max-rows-per-request)", "inputs")
        try:
            rows = self.predictor.check_rows(rows)
        except RowError as exc:
            raise _refusal(exc) from None
        try:
            if explain:
                return await self.batcher.run_alone(self._explain, rows)
            return await self.batcher.submit(rows)
        except Overloaded:
            self.metrics.rejected.labels("overloaded").inc()
            raise _Refusal(503, f"the server is busy ({self.opts.max_queue} requests queued); retry shortly",
                           headers={"Retry-After": "1"}) from None
        except RowError as exc:
            raise _refusal(exc) from None
        except UserError as exc:
            raise _Refusal(422, str(exc)) from None

    def _explain(self, rows: list[dict]) -> list[dict]:
        if not self.predictor.task.explains or self.predictor.backend == "onnx":
            raise UserError(f"explanations are for text-classification models run in PyTorch; this server runs "
                            f"'{self.cfg.task}' ({self.predictor.backend})")
        return self.predictor.predict(rows, explain_steps=self.opts.explain_steps)


def _refusal(exc: RowError) -> _Refusal:
    """A bad row's error in predict's words, with the row counted in the request's inputs."""
    index = exc.index
    message = f"inputs: row {exc.row}{exc.where}: {exc.message}"
    field = f"inputs[{index}]" + (f".{exc.column}" if exc.column else "")
    return _Refusal(422, message, field)


def build_app(server: Server):
    """The FastAPI application of `server`."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel
    from starlette.exceptions import HTTPException

    class PredictRequest(BaseModel):
        inputs: list[dict[str, Any] | str]

    @asynccontextmanager
    async def lifespan(app):
        server.batcher = Batcher(lambda rows: server.predictor.predict(rows), server.opts.max_batch_size,
                                 server.opts.max_wait_ms, server.opts.max_queue, True, server.metrics, server.log)
        server.batcher.start()
        threading.Thread(target=server.load, name="lmctl-load", daemon=True).start()
        yield
        await server.batcher.close()  # the queued requests are answered before the process ends

    app = FastAPI(title="lmctl serve", lifespan=lifespan, version=_version(),
                  description=f"Predictions of {server.opts.model}; records as `lmctl predict` writes them.")

    def error(status: int, message: str, field: str | None = None, headers: dict | None = None):
        body = {"error": message, **({"field": field} if field else {})}
        return JSONResponse(body, status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):  # unknown routes and methods, in the same JSON as the rest
        return error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()}}}})
    async def predict(request: Request, explain: bool = False):
        """Records for the rows in `inputs`, in order: `{"predictions": [...]}`. `explain=true`:
        word attributions too (text classification, PyTorch models)."""
        try:
            body = await _read_body(request, server.opts.max_body_bytes)
            records = await server.predict(body, explain)
        except _Refusal as exc:
            if exc.status != 503:
                server.metrics.rejected.labels("bad_request" if exc.status < 500 else "unavailable").inc()
            return error(exc.status, exc.message, exc.field, exc.headers)
        data = json.dumps({"predictions": records}, ensure_ascii=False).encode()
        return Response(data, media_type="application/json")

    @app.get("/health")
    async def health():
        """200 once the model is loaded (503 before): what a load balancer polls."""
        if server.predictor is None:
            return error(503, "loading the model" if server.failure is None else server.failure,
                         headers={"Retry-After": "1"})
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        """Task, mode, input columns, labels, family, max_length, backend and the batching limits."""
        if server.predictor is None:
            return error(503, "loading the model", headers={"Retry-After": "1"})
        limits = {k: getattr(server.opts, k) for k in ("max_batch_size", "max_tokens", "max_wait_ms", "max_queue",
                                                         "max_rows_per_request")}
        return {**server.predictor.info(), **limits,
                "explains": bool(server.predictor.task.explains and server.predictor.backend != "onnx")}

    @app.get("/metrics")
    async def metrics():
        """Prometheus text: requests, latency, rows, batch sizes, queue depth, refusals."""
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    return _Guard(app, server)


PAGE = Path(__file__).with_name("serve_page.html")


async def _read_body(request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Refusal(413, f"request body of {declared} bytes; the server takes at most {limit} (--max-body-bytes)",
                       "body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refusal(413, f"request body over {limit} bytes (--max-body-bytes)", "body")
        chunks.append(chunk)
    return b"".join(chunks)


class _Guard:
    """ASGI middleware: the API key (every route but OPEN_ROUTES) and the request metrics."""

    def __init__(self, app, server: Server):
        self.app, self.server = app, server
        key = server.opts.api_key
        self.expected = f"Bearer {key}".encode() if key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        route = path if path in ROUTES else "other"
        start = time.perf_counter()
        status = 500

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self.expected is not None and path not in OPEN_ROUTES and not self._authorized(scope):
                self.server.metrics.rejected.labels("unauthorized").inc()
                await _send_json(sending, 401, {"error": "missing or wrong API key; send 'Authorization: Bearer KEY'",
                                                "field": "Authorization"}, [(b"www-authenticate", b"Bearer")])
            else:
                await self.app(scope, receive, sending)
        finally:
            metrics = self.server.metrics
            metrics.requests.labels(route, str(status)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - start)

    def _authorized(self, scope) -> bool:
        given = dict(scope["headers"]).get(b"authorization", b"")
        return hmac.compare_digest(given, self.expected)


async def _send_json(send, status: int, body: dict, headers: list) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})


def _version() -> str:
    from lmctl import __version__

    return __version__


# ---- running it ------------------------------------------------------------------------------
def serve(opts: ServeOptions) -> None:
    """Check the options, bind the port, load the model and serve until SIGTERM/SIGINT, which stop
    accepting, answer what is queued and return. Start-up failures raise UserError (one line)."""
    if opts.workers > 1:
        return _serve_workers(opts)
    http, sock, server = make_server(opts)
    with _signals_end_cleanly():
        http.run(sockets=[sock])
    if server.failure:
        raise UserError(server.failure)
    server.log("stopped", pid=os.getpid())


def make_server(opts: ServeOptions):
    """(uvicorn server, its bound socket, lmctl's Server) after the checks that need no model:
    `http.run(sockets=[sock])` serves (from any thread; the model loads once it runs)."""
    import uvicorn

    cfg, sock = _prepare(opts)
    server = Server(opts, cfg, Log(opts.log_format))
    server.url = _url(opts.host, sock)
    config = uvicorn.Config(build_app(server), log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=60)
    http = uvicorn.Server(config)
    server.on_failure = lambda: setattr(http, "should_exit", True)
    return http, sock, server


def _prepare(opts: ServeOptions):
    """The config and the listening socket, or a one-line UserError for what can be checked up front."""
    from lmctl import models

    _check(opts)
    if opts.threads:
        _set_threads(opts.threads)
    cfg = _config(opts)
    models.resolve(opts.model, key="--model")  # a wrong path fails here, before the port is taken
    return cfg, bind(opts.host, opts.port)


def _config(opts: ServeOptions):
    from lmctl import config as config_lib

    cfg = config_lib.config_for_model(opts.model, opts.config, list(opts.overrides), opts.task, overrides_key="--set")
    # A server runs no code that came with a model, whatever the run was trained with.
    cfg.model.trust_remote_code = False
    return cfg


def _check(opts: ServeOptions) -> None:
    from importlib.util import find_spec

    missing = [m for m in ("fastapi", "uvicorn", "prometheus_client") if find_spec(m) is None]
    if missing:
        raise UserError(f"lmctl serve needs {', '.join(missing)}; pip install 'lmctl[serve]'")
    if opts.log_format not in ("text", "json"):
        raise UserError(f"--log-format {opts.log_format}: use text or json")
    if opts.workers < 1:
        raise UserError(f"--workers {opts.workers}: at least 1")


def _set_threads(n: int) -> None:
    """Threads per worker for PyTorch (OpenMP and MKL, which it reads when it loads, or now if it
    has) and ONNX Runtime (which follows them). An MKL_NUM_THREADS inherited from the caller would
    otherwise keep each worker's matrix products on every core: two workers on 2 cores then ran
    at a third of one worker's rate (docs/benchmarks.md#sizing)."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def _url(host: str, sock: socket.socket | None = None, port: int | None = None) -> str:
    port = sock.getsockname()[1] if sock is not None else port
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, taken before the model loads: a port in use is one line, at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every response (headers and body written apart) waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); pick another port "
                        "(--port) or stop what holds it") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _signals_end_cleanly:
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, which would end the process
    with the signal's default status; handlers that ignore the re-raise make a stop exit 0."""

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.saved = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc):
        for s, handler in getattr(self, "saved", {}).items():
            signal.signal(s, handler)


# ---- several worker processes ----------------------------------------------------------------
WORKER_ENV = "LMCTL_SERVE_WORKER"


def _serve_workers(opts: ServeOptions) -> None:
    """`--workers N`: N processes share the listening socket (uvicorn's supervisor), each with its
    own model, batcher and metrics, and `--threads` (default: the cores split between them)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    _, sock = _prepare(opts)
    threads = opts.threads or max(1, (os.cpu_count() or 1) // opts.workers)
    os.environ[WORKER_ENV] = json.dumps({**asdict(opts), "port": sock.getsockname()[1], "threads": threads,
                                         "workers": 1})
    config = uvicorn.Config("lmctl.serve:worker_app", factory=True, workers=opts.workers, log_level="warning",
                            access_log=False, lifespan="on", timeout_graceful_shutdown=60)
    log = Log(opts.log_format)
    log("starting", _url(opts.host, sock), workers=opts.workers, threads=threads, pid=os.getpid())
    supervisor = Multiprocess(config, sockets=[sock])  # it takes SIGTERM/SIGINT itself and stops the workers
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise UserError(f"--model: {opts.model}: a worker could not load it (its error is above)")
    log("stopped", pid=os.getpid())


def worker_app():
    """The application of one --workers process (uvicorn imports this by name in each)."""
    opts = ServeOptions(**json.loads(os.environ[WORKER_ENV]))
    _set_threads(opts.threads)
    cfg = _config(opts)
    log = Log(opts.log_format)
    server = Server(opts, cfg, log)
    server.url = _url(opts.host, port=opts.port)  # the port the parent bound (0 resolved)

    def fail() -> None:  # the supervisor stops every worker when one exits with this status
        from uvicorn.config import STARTUP_FAILURE

        say(f"error: {server.failure}")
        os._exit(STARTUP_FAILURE)

    server.on_failure = fail
    return build_app(server)
