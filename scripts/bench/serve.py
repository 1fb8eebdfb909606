"""Benchmark: `lmctl serve` under load, against the server a user writes first and against `lmctl predict`.

Starts each server on 127.0.0.1 (a free port) in a child process and drives it from this
process with an async HTTP client (aiohttp; httpx with --client httpx, which costs far more CPU a
request), one sentence per request, with 1, 8 and 32 concurrent clients:

- lmctl serve on the finetuned run directory (PyTorch) and on its int8 ONNX export;
- the peer, scripts/bench/peer_server.py: FastAPI with a sync route calling
  `transformers.pipeline("text-classification")` once per request.

For each it prints requests/s and p50/p90/p99 latency, the share of answers whose label equals
`lmctl predict`'s for the same sentence, then the ratios the targets name: lmctl against the
peer, and server rows/s at 32 clients against `lmctl predict`'s on the same sentences (its
steady state: the whole run's wall less a 1-row run's). Last, an overload test: lmctl serve with
a short queue (--max-queue 64) under 200 clients, counting 200s, 503s, other statuses and
timeouts, with the server's RSS before, during and after, and one request afterwards.
Every server is stopped at the end, also on an error or Ctrl-C. Run from the repository root:

    .venv/bin/python -m scripts.bench.serve --model runs/minilm-sst2 --onnx runs/minilm-sst2-int8 \\
        --data ../shared/data/sst2
    .venv/bin/python -m scripts.bench.serve --model RUN --onnx EXPORT --requests 40 --clients 1,4 \\
        --overload-clients 20 --overload-requests 100        # smoke run

Results and method: docs/benchmarks.md ("Serving: lmctl serve under load").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from scripts.bench import common

HOST = "127.0.0.1"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the finetuned run directory (PyTorch)")
    p.add_argument("--onnx", help="its int8 ONNX export (lmctl export --quantize int8); left out: not measured")
    p.add_argument("--data", default=str(common.SHARED_DATA / "sst2"), help="folder with train.tsv")
    p.add_argument("--servers", default="lmctl,onnx,peer",
                   help="which servers to measure, comma-separated: lmctl, onnx, peer")
    p.add_argument("--requests", type=int, default=4000,
                   help="sentences (the first N rows of train.tsv) and requests per load level")
    p.add_argument("--single-requests", type=int, default=500, help="requests at 1 client (at most --requests)")
    p.add_argument("--clients", default="1,8,32", help="concurrent clients per load level, comma-separated")
    p.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp",
                   help="the load generator's HTTP client (httpx costs ~15x the CPU a request; see docs)")
    p.add_argument("--warmup", type=int, default=32, help="requests sent to each server before it is timed")
    p.add_argument("--level-seconds", type=float, default=180.0,
                   help="a load level stops sending after this many seconds")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds one request may take")
    p.add_argument("--overload-clients", type=int, default=200, help="0: no overload test")
    p.add_argument("--overload-requests", type=int, default=2000)
    p.add_argument("--overload-seconds", type=float, default=60.0)
    p.add_argument("--overload-queue", type=int, default=64, help="lmctl serve --max-queue in the overload test")
    p.add_argument("--overload-timeout", type=float, default=30.0, help="seconds one overload request may take")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="torch (and ONNX Runtime) threads of every server and predict run (default: the cores)")
    p.add_argument("--serve-args", default="", help="extra options for every lmctl serve, e.g. '--max-wait-ms 2'")
    p.add_argument("--ready-seconds", type=float, default=180.0, help="how long a server may take to load")
    p.add_argument("--no-predict", action="store_true",
                   help="skip the lmctl predict runs (no rows/s ratios, answers not checked against predict's)")
    p.add_argument("--output", default="runs/bench-serve/results.json")
    p.add_argument("--keep", action="store_true", help="keep the work folder (predictions, server logs)")
    args = p.parse_args()
    common.require_positive(p, args, ("requests", "single_requests", "level_seconds", "timeout", "threads",
                                      "overload_seconds", "overload_queue", "overload_timeout", "ready_seconds"))
    for name in ("warmup", "overload_clients", "overload_requests"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")
    try:
        args.clients = [int(c) for c in args.clients.split(",")]
    except ValueError:
        p.error(f"--clients {args.clients}: expected whole numbers separated by commas, e.g. 1,8,32")
    if not args.clients or min(args.clients) <= 0:
        p.error("--clients: every level needs at least one client")
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = sorted(set(args.servers) - {"lmctl", "onnx", "peer"})
    if unknown or not args.servers:
        p.error(f"--servers: expected some of lmctl, onnx, peer; got {args.servers}")
    if "onnx" in args.servers and not args.onnx:
        args.servers.remove("onnx")
    return args


def free_port() -> int:
    """A port the kernel hands out for port 0 on loopback (free now; the server binds it next)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    """The process's resident memory (VmRSS) in MB, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A server in a child process on HOST:port; `url`, `pid`, `ready_seconds` once /health says ok."""

    def __init__(self, name: str, cmd: list[str], port: int, proc: subprocess.Popen, log: Path):
        self.name, self.cmd, self.port, self.proc, self.log = name, cmd, port, proc, log
        self.url = f"http://{HOST}:{port}"
        self.pid = proc.pid
        self.ready_seconds = 0.0

    def wait_ready(self, limit: float) -> None:
        import httpx

        start = time.perf_counter()
        with httpx.Client(base_url=self.url, timeout=5, trust_env=False) as client:
            while time.perf_counter() - start < limit:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before it was ready; "
                                       f"last lines of {self.log}:\n{tail(self.log)}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/health").status_code == 200:
                        self.ready_seconds = time.perf_counter() - start
                        return
                time.sleep(0.25)
        raise RuntimeError(f"{self.name} was not ready after {limit:.0f}s; last lines of {self.log}:\n{tail(self.log)}")


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def serving(name: str, cmd: list[str], port: int, env: dict, work: Path, cwd: Path, ready: float) -> Iterator[Server]:
    """Start `cmd` (a server on `port`), wait for /health, yield it; terminate and wait for it whatever happens."""
    log = work / f"server-{name.replace(' ', '-')}.log"
    print(f"[{name}] $ {' '.join(cmd)}", file=sys.stderr, flush=True)
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=str(cwd), stdout=out, stderr=subprocess.STDOUT)
        server = Server(name, cmd, port, proc, log)
        try:
            server.wait_ready(ready)
            print(f"[{name}] ready after {server.ready_seconds:.1f}s (pid {proc.pid})", file=sys.stderr, flush=True)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print(f"[{name}] did not stop 20s after SIGTERM; killed", file=sys.stderr, flush=True)
                proc.kill()
                proc.wait()


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 100)) - 1))]


class RequestFailed(Exception):
    """A request that got no HTTP answer other than by timing out (refused, reset, ...); args[0] names why."""


@contextlib.asynccontextmanager
async def http_client(kind: str, url: str, connections: int, timeout: float):
    """An async `post(body)` to url/predict -> (status, whether a Retry-After header came, JSON of a 200 or text).

    Raises TimeoutError past `timeout` seconds and RequestFailed when no answer came. `kind`: aiohttp
    or httpx; aiohttp by default because httpx's pool costs this process 5 ms of CPU a request at
    32 connections here (aiohttp 0.3 ms), a core's worth taken from the server it measures.
    """
    if kind == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async def post(body: dict):
                try:
                    async with session.post("/predict", json=body) as r:
                        payload = await (r.json(content_type=None) if r.status == 200 else r.text())
                        return r.status, "Retry-After" in r.headers, payload
                except aiohttp.ClientError as exc:
                    raise RequestFailed(type(exc).__name__) from exc

            yield post
    else:
        import httpx

        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout, trust_env=False) as client:
            async def post(body: dict):
                try:
                    r = await client.post("/predict", json=body)
                except httpx.TimeoutException as exc:
                    raise TimeoutError() from exc
                except httpx.HTTPError as exc:
                    raise RequestFailed(type(exc).__name__) from exc
                return r.status_code, "retry-after" in r.headers, r.json() if r.status_code == 200 else r.text

            yield post


async def drive(server: Server, texts: list[str], clients: int, requests: int, max_seconds: float,
                timeout: float, kind: str = "aiohttp") -> dict:
    """`requests` POST /predict of one sentence each (texts in turn) from `clients` concurrent clients.

    No client starts a request after `max_seconds`; each request may take `timeout` seconds. Counts
    statuses, timeouts and connection errors; latencies and answers of the 200s; the server's RSS
    every 0.25 s and its CPU seconds; this process's CPU seconds (the client's share of the cores).
    """
    statuses: Counter = Counter()
    errors: Counter = Counter()
    latencies: list[float] = []
    answers: dict[int, dict] = {}
    no_retry_after = 0
    rss: list[float] = []
    issued = 0

    async def client_loop(post, deadline: float) -> None:
        nonlocal issued, no_retry_after
        while issued < requests and time.perf_counter() < deadline:
            i = issued
            issued += 1
            body = {"inputs": [{"sentence": texts[i % len(texts)]}]}
            sent = time.perf_counter()
            try:
                status, retry_after, payload = await asyncio.wait_for(post(body), timeout)
            except (asyncio.TimeoutError, TimeoutError):
                errors["timeout"] += 1
                continue
            except RequestFailed as exc:
                errors[str(exc)] += 1
                continue
            took = time.perf_counter() - sent
            statuses[status] += 1
            if status == 200:
                latencies.append(took)
                answers[i] = payload["predictions"][0]
            elif status == 503 and not retry_after:
                no_retry_after += 1
            elif status != 503 and statuses[status] == 1:
                print(f"[{server.name}] HTTP {status}: {str(payload)[:300]}", file=sys.stderr, flush=True)

    async def sample_rss() -> None:
        while True:
            value = rss_mb(server.pid)
            if value is not None:
                rss.append(value)
            await asyncio.sleep(0.25)

    load = os.getloadavg()[0]
    server_cpu, own_cpu = cpu_seconds(server.pid), time.process_time()
    async with http_client(kind, server.url, clients, timeout) as post:
        sampler = asyncio.create_task(sample_rss())
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(post, start + max_seconds) for _ in range(clients)))
        wall = time.perf_counter() - start
        sampler.cancel()
    ok = statuses.get(200, 0)
    return {
        "clients": clients, "requests": issued, "wall_seconds": wall, "ok": ok,
        "requests_per_second": ok / wall if wall else 0.0,
        "p50_ms": ms(percentile(latencies, 50)), "p90_ms": ms(percentile(latencies, 90)),
        "p99_ms": ms(percentile(latencies, 99)),
        "statuses": {str(k): v for k, v in sorted(statuses.items())}, "errors": dict(errors),
        "503_without_retry_after": no_retry_after,
        "rss_mb_max": max(rss) if rss else None, "load_before": round(load, 2),
        "server_cpu_seconds": cpu_seconds(server.pid) - server_cpu, "client_cpu_seconds": time.process_time() - own_cpu,
        "answers": answers,
    }


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def agreement(answers: dict[int, dict], reference: list[dict]) -> dict:
    """How many answers carry `reference`'s label (lmctl predict's records) for the same sentence, and
    the largest difference in the label's score."""
    same = sum(a.get("label") == reference[i % len(reference)]["label"] for i, a in answers.items())
    diff = max((abs(a["score"] - reference[i % len(reference)]["score"]) for i, a in answers.items()
                if a.get("label") == reference[i % len(reference)]["label"] and "score" in a), default=None)
    return {"answers": len(answers), "same_label": same, "max_score_difference": diff}


def get_json(server: Server, path: str):
    import httpx

    r = httpx.get(server.url + path, timeout=10, trust_env=False)
    return r.status_code, (r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text)


def measure(server: Server, args: argparse.Namespace, texts: list[str], reference: list[dict] | None) -> list[dict]:
    """Warm `server` up, then one load level per --clients value; the levels, answers checked against `reference`."""
    if args.warmup:
        asyncio.run(drive(server, texts, min(8, args.warmup), args.warmup, args.level_seconds, args.timeout,
                          args.client))
    levels = []
    for clients in args.clients:
        n = min(args.single_requests, args.requests) if clients == 1 else args.requests
        level = asyncio.run(drive(server, texts, clients, n, args.level_seconds, args.timeout, args.client))
        answers = level.pop("answers")
        if reference is not None:
            level["agreement"] = agreement(answers, reference)
        level["server"] = server.name
        print(f"[{server.name}] {clients} clients: {level['ok']}/{level['requests']} ok in "
              f"{level['wall_seconds']:.1f}s, {level['requests_per_second']:.1f} req/s, "
              f"p50 {fmt(level['p50_ms'])} p99 {fmt(level['p99_ms'])} ms, statuses {level['statuses']} "
              f"errors {level['errors']}", file=sys.stderr, flush=True)
        levels.append(level)
    return levels


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def overload(server: Server, args: argparse.Namespace, texts: list[str], reference: list[dict] | None) -> dict:
    """--overload-clients clients against a server with a short queue; then one ordinary request."""
    asyncio.run(drive(server, texts, min(8, max(1, args.warmup)), max(1, args.warmup), args.level_seconds, args.timeout,
                      args.client))
    before = rss_mb(server.pid)
    result = asyncio.run(drive(server, texts, args.overload_clients, args.overload_requests, args.overload_seconds,
                               args.overload_timeout, args.client))
    result.pop("answers")
    time.sleep(1.0)  # let what the server still holds drain before "after"
    after = rss_mb(server.pid)
    probe = asyncio.run(drive(server, texts, 1, 1, args.timeout, args.timeout, args.client))
    answer = probe.pop("answers").get(0)
    result.update(rss_mb_before=before, rss_mb_after=after, queue=args.overload_queue,
                  after_request={"statuses": probe["statuses"], "errors": probe["errors"], "latency_ms": probe["p50_ms"],
                                 "label_matches_predict": None if reference is None else
                                 bool(answer) and answer.get("label") == reference[0]["label"]})
    print(f"[overload] {result['statuses']} errors {result['errors']} in {result['wall_seconds']:.1f}s; "
          f"RSS {fmt(before)} / {fmt(result['rss_mb_max'])} / {fmt(after)} MB; after: {result['after_request']}",
          file=sys.stderr, flush=True)
    return result


def read_records(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def main() -> None:
    args = parse_args()
    data = Path(args.data).resolve()
    if not (data / "train.tsv").is_file():
        sys.exit(f"error: --data {data}: no train.tsv there (SST-2's layout: columns sentence, label)")
    models = {"lmctl": Path(args.model).resolve(), "onnx": Path(args.onnx).resolve() if args.onnx else None}
    if not (models["lmctl"] / "config.json").is_file():
        sys.exit(f"error: --model {args.model}: not a trained model directory (no config.json)")
    if models["onnx"] is not None and not (models["onnx"] / "onnx.json").is_file():
        sys.exit(f"error: --onnx {args.onnx}: not an ONNX export (no onnx.json); `lmctl export --quantize int8` first")
    env = common.child_env(args.threads)
    info = common.environment(args.threads)
    common.print_environment(info)
    lmctl = [sys.executable, "-m", "lmctl"]
    names = {"lmctl": "lmctl serve (PyTorch)", "onnx": "lmctl serve (int8 ONNX)", "peer": "peer (pipeline per request)"}

    levels: list[dict] = []
    servers: dict[str, dict] = {}
    predict: dict[str, dict] = {}
    overload_result = None
    with common.work_folder("lmctl-bench-serve-", args.keep) as work:
        texts = common.read_sentences(data, args.requests)
        sentences = common.write_sentences(work / "sentences.tsv", texts)
        one_row = common.write_sentences(work / "one-row.tsv", texts[:1])
        # lmctl predict of the same sentences: the rows/s to compare with, and the labels every server should give.
        measured = [] if args.no_predict else ["lmctl"] + [k for k in ("onnx",) if k in args.servers]
        for key in measured:
            wall, preds = common.run_predict(f"{key} rows", models[key], sentences, work, env)
            start_up, _ = common.run_predict(f"{key} 1 row", models[key], one_row, work, env)
            predict[key] = {"wall_seconds": wall, "one_row_seconds": start_up, "rows": len(texts),
                            "rows_per_second_whole": len(texts) / wall,
                            "rows_per_second_steady": (len(texts) - 1) / max(wall - start_up, 1e-9),
                            "records": read_records(preds)}
        for key in args.servers:
            port = free_port()
            if key == "peer":
                cmd = [sys.executable, "-m", "scripts.bench.peer_server", "--model", str(models["lmctl"]),
                       "--host", HOST, "--port", str(port), "--threads", str(args.threads)]
                cwd, reference = common.REPO, predict.get("lmctl", {}).get("records")
            else:
                cmd = lmctl + ["serve", "--model", str(models[key]), "--host", HOST, "--port", str(port),
                               "--threads", str(args.threads), *shlex.split(args.serve_args)]
                cwd, reference = work, predict.get(key, {}).get("records")
            with serving(names[key], cmd, port, env, work, cwd, args.ready_seconds) as server:
                servers[key] = {"command": " ".join(cmd), "ready_seconds": server.ready_seconds,
                                "rss_mb_loaded": rss_mb(server.pid)}
                if key != "peer":
                    servers[key]["info"] = get_json(server, "/info")
                for level in measure(server, args, texts, reference):
                    levels.append({"key": key, **level})
                if key != "peer":
                    servers[key]["metrics_status"], metrics = get_json(server, "/metrics")
                    (work / f"metrics-{key}.txt").write_text(str(metrics), encoding="utf-8")
                    servers[key]["metrics"] = str(metrics)
                servers[key]["rss_mb_end"] = rss_mb(server.pid)
        if args.overload_clients and "lmctl" in args.servers:
            port = free_port()
            cmd = lmctl + ["serve", "--model", str(models["lmctl"]), "--host", HOST, "--port", str(port),
                           "--threads", str(args.threads), "--max-queue", str(args.overload_queue),
                           *shlex.split(args.serve_args)]
            with serving("overload", cmd, port, env, work, work, args.ready_seconds) as server:
                overload_result = overload(server, args, texts, predict.get("lmctl", {}).get("records"))
                overload_result["command"] = " ".join(cmd)

    report(args, info, texts, levels, servers, predict, overload_result, names)


def report(args, info, texts, levels, servers, predict, overload_result, names) -> None:
    print(f"\n== load test: one sentence a request, the first {len(texts)} rows of train.tsv, "
          f"{args.threads} threads per server, client in this process ({args.client}); CPU: milliseconds a request")
    widths = (28, 7, 9, 8, 8, 8, 8, 8, 8, 12, 11)
    print(common.fmt_row(("server", "clients", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "non-200", "agree",
                          "server CPU", "client CPU"), widths))
    for lv in levels:
        bad = lv["requests"] - lv["ok"]
        agree = lv.get("agreement")
        share = f"{100 * agree['same_label'] / agree['answers']:.1f}%" if agree and agree["answers"] else "-"
        per = max(lv["requests"], 1)  # CPU milliseconds a request, of the server process and of this one
        print(common.fmt_row((names[lv["key"]], lv["clients"], lv["requests"], fmt(lv["requests_per_second"]),
                              fmt(lv["p50_ms"]), fmt(lv["p90_ms"]), fmt(lv["p99_ms"]), bad, share,
                              f"{1000 * lv['server_cpu_seconds'] / per:.1f} ms", f"{1000 * lv['client_cpu_seconds'] / per:.2f} ms"),
                             widths))
    for key, s in servers.items():
        print(f"{names[key]}: ready after {s['ready_seconds']:.1f}s, RSS {fmt(s['rss_mb_loaded'], 0)} MB loaded, "
              f"{fmt(s['rss_mb_end'], 0)} MB at the end")

    by = {(lv["key"], lv["clients"]): lv for lv in levels}
    top, one = max(args.clients), min(args.clients)
    ratios: dict[str, float] = {}
    for key in ("lmctl", "onnx"):
        mine, peer = by.get((key, top)), by.get(("peer", top))
        if mine and peer and peer["requests_per_second"]:
            ratios[f"{key} / peer req/s at {top} clients"] = mine["requests_per_second"] / peer["requests_per_second"]
        if mine and peer and mine["p99_ms"] and peer["p99_ms"]:
            ratios[f"{key} / peer p99 at {top} clients"] = mine["p99_ms"] / peer["p99_ms"]
        mine, peer = by.get((key, one)), by.get(("peer", one))
        if mine and peer and mine["p50_ms"] and peer["p50_ms"]:
            ratios[f"{key} / peer p50 at {one} client(s)"] = mine["p50_ms"] / peer["p50_ms"]
        if key in predict and (key, top) in by:
            p = predict[key]
            ratios[f"{key} server rows/s at {top} clients / predict steady rows/s"] = (
                by[(key, top)]["requests_per_second"] / p["rows_per_second_steady"])
            ratios[f"{key} server rows/s at {top} clients / predict whole-run rows/s"] = (
                by[(key, top)]["requests_per_second"] / p["rows_per_second_whole"])
    if predict:
        print(f"\n== lmctl predict on the same {len(texts)} rows (whole process; steady = rows after the first / "
              "(wall - a 1-row run's wall))")
        for key, p in predict.items():
            print(f"{key}: {p['wall_seconds']:.1f}s ({p['one_row_seconds']:.1f}s for 1 row): "
                  f"{p['rows_per_second_whole']:.0f} rows/s whole, {p['rows_per_second_steady']:.0f} steady")
    print("\n== ratios (targets: req/s >= 3x the peer's and p99 <= its at the most clients; p50 <= 1.10x its "
          "at 1 client; server rows/s >= 0.8x predict's)")
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}")
    if overload_result:
        o = overload_result
        print(f"\n== overload: lmctl serve --max-queue {o['queue']}, {o['clients']} clients, {o['requests']} requests "
              f"in {o['wall_seconds']:.1f}s (timeout {args.overload_timeout:.0f}s a request)")
        print(f"statuses {o['statuses']}, timeouts/errors {o['errors'] or 0}, 503s without Retry-After "
              f"{o['503_without_retry_after']}; p50 {fmt(o['p50_ms'])} p99 {fmt(o['p99_ms'])} ms of the 200s")
        print(f"server RSS: {fmt(o['rss_mb_before'], 0)} MB before, {fmt(o['rss_mb_max'], 0)} MB at most during, "
              f"{fmt(o['rss_mb_after'], 0)} MB after; a request afterwards: {o['after_request']}")
    for p in predict.values():
        p.pop("records")
    common.write_results(args.output, {"environment": info, "setup": vars(args), "levels": levels, "servers": servers,
                                       "predict": predict, "ratios": ratios, "overload": overload_result})


if __name__ == "__main__":
    main()
