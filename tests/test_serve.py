"""`lmctl serve`: a real uvicorn on a free loopback port, answering with `lmctl predict`'s records.

Most tests run the server in this process (uvicorn on a thread, models loaded once per session);
the lifecycle tests (signals, start-up failures, workers) run `lmctl serve` as a process.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from helpers import cli, explain, sentiment_rows, set_args, write_config, write_rows
from task_runs import FINETUNED, PRETRAINED, read_jsonl

LIMIT_S = 120  # every wait of these tests is bounded


@pytest.fixture(scope="module")
def runs(task_runs, one_thread):
    return task_runs


class Served:
    """`lmctl serve` in this process: uvicorn on a thread, on 127.0.0.1 and a free port."""

    def __init__(self, model, **options):
        from lmctl.serve import ServeOptions, make_server

        self.http, self.sock, self.server = make_server(ServeOptions(model=str(model), port=0, **options))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.headers = {"Authorization": f"Bearer {options['api_key']}"} if options.get("api_key") else {}

    def __enter__(self) -> "Served":
        self.thread = threading.Thread(target=self.http.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        wait_ready(self.url)
        return self

    def __exit__(self, *exc) -> None:
        self.http.should_exit = True
        self.thread.join(LIMIT_S)
        assert not self.thread.is_alive(), "the server did not stop"

    def post(self, body, **kwargs) -> httpx.Response:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return httpx.post(f"{self.url}/predict", content=data, timeout=LIMIT_S,
                          headers={"Content-Type": "application/json", **self.headers}, **kwargs)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=LIMIT_S, **{"headers": self.headers, **kwargs})


def wait_ready(url: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}: {process.stderr.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} was not ready within {LIMIT_S} s")


def _cases():
    for name, (*_, modes) in FINETUNED.items():
        for mode in modes:
            yield name, mode
    for name, modes in PRETRAINED.items():
        for mode in modes:
            yield name, mode


# ---- agreement with predict, for every task ----------------------------------------------------
@pytest.mark.parametrize("name,mode", list(_cases()))
def test_the_server_answers_with_the_records_of_predict(runs, name, mode, tmp_path):
    run, dev, _ = runs[name]
    output = tmp_path / "predict.jsonl"
    cli("predict", "--model", run, "--input", dev, "--output", output, "--mode", mode)
    expected = read_jsonl(output)
    rows = read_jsonl(dev)  # with their label columns, as predict read them: the server takes what it needs
    with Served(run, mode=mode) as served:
        response = served.post({"inputs": rows})
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == expected
        info = served.get("/info").json()
        assert info["mode"] == mode and info["backend"] == "pytorch" and info["max_batch_size"] == 32


def test_rows_of_concurrent_requests_are_batched_and_routed_back(runs):
    """32 clients, one row each: fewer forward passes than requests, and each client its own record."""
    run, dev, _ = runs["classification"]
    texts = [r["sentence"] for r in sentiment_rows(64, 7)]
    with Served(run, max_wait_ms=20) as served:
        alone = {t: served.post({"inputs": [t]}).json()["predictions"][0] for t in texts[:4]}

        async def clients():
            async with httpx.AsyncClient(base_url=served.url, timeout=LIMIT_S) as client:
                async def one(text):
                    response = await client.post("/predict", json={"inputs": [text]})
                    return response.json()["predictions"][0]
                return await asyncio.gather(*(one(t) for t in texts))

        records = asyncio.run(clients())
        batches = _metric(served.get("/metrics").text, "lmctl_batch_rows_count")
    assert [r["sentence"] for r in records] == texts
    for r in records[:4]:  # a row batched with others gets the label (and, to rounding, the score) it gets alone
        assert r["label"] == alone[r["sentence"]]["label"]
        assert r["score"] == pytest.approx(alone[r["sentence"]]["score"], abs=1e-5)
    assert batches < 4 + len(texts), "no two requests shared a batch"


def _metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


def test_an_onnx_export_and_a_lora_run_are_served(runs, tiny_models, tmp_path):
    run, dev, _ = runs["classification"]
    export = tmp_path / "onnx"
    cli("export", "--model", run, "--output", export, "--format", "onnx")
    output = tmp_path / "predict.jsonl"
    cli("predict", "--model", export, "--input", dev, "--output", output)
    with Served(export) as served:
        assert served.post({"inputs": read_jsonl(dev)}).json()["predictions"] == read_jsonl(output)
        assert served.get("/info").json()["backend"] == "onnx"
        refused = served.post({"inputs": ["a fine day"]}, params={"explain": "true"})
        assert refused.status_code == 422 and "PyTorch" in refused.json()["error"]
    # As a process, a server of an export loads no torch (tokenizers, numpy and ONNX Runtime do the work).
    process = _start("--model", export)
    try:
        url = Stderr(process).url()
        assert httpx.post(f"{url}/predict", json={"inputs": ["a fine day"]}, timeout=LIMIT_S).status_code == 200
        libraries = Path(f"/proc/{process.pid}/maps").read_text()
        assert "libtorch" not in libraries and "onnxruntime" in libraries
    finally:
        process.terminate()
        process.wait(LIMIT_S)
    lora = _lora_run(tiny_models, tmp_path)
    cli("predict", "--model", lora, "--input", dev, "--output", output)
    with Served(lora) as served:
        assert served.post({"inputs": read_jsonl(dev)}).json()["predictions"] == read_jsonl(output)


def _lora_run(tiny_models, tmp_path: Path) -> Path:
    train = write_rows(tmp_path / "train.jsonl", sentiment_rows(24, 1))
    dev = write_rows(tmp_path / "dev.jsonl", sentiment_rows(8, 2))
    config = write_config(tmp_path / "lora.yaml", tiny_models["bert"], train, dev, tmp_path / "lora")
    cli("finetune", config, *set_args(["training.max_steps=3", "training.eval_strategy=no", "model.peft.r=4",
                                       "model.peft.alpha=8"]))
    return tmp_path / "lora"


def test_explanations_come_from_the_same_route(runs):
    run, _, _ = runs["classification"]
    with Served(run, explain_steps=4) as served:
        assert served.get("/info").json()["explains"] is True
        record = served.post({"inputs": ["a fine and happy day"]}, params={"explain": "true"}).json()["predictions"][0]
    assert [w for w, _ in record["attributions"]] == ["a", "fine", "and", "happy", "day"]
    assert record["label"] in ("positive", "negative")


# ---- bad requests --------------------------------------------------------------------------------
BAD = [  # body, status, field, words of the error
    (b'{"inputs": [', 400, "body", "not JSON"),
    ({"rows": ["a fine day"]}, 422, "inputs", "no 'inputs'"),
    ({"inputs": "a fine day"}, 422, "inputs", "not a list"),
    ({"inputs": []}, 422, "inputs", "empty"),
    ({"inputs": ["a fine day"] * 9}, 413, "inputs", "at most 8"),
    ({"inputs": ["x" * 5000]}, 413, "body", "--max-body-bytes"),
    ({"inputs": [{"text": "a fine day"}]}, 422, "inputs[0].sentence", "row 1: no 'sentence'"),
    ({"inputs": ["a fine day", {"sentence": 7}]}, 422, "inputs[1].sentence", "row 2: column 'sentence' holds 7, not text"),
    ({"inputs": ["a fine day", "   "]}, 422, "inputs[1].sentence", "row 2: empty text in column 'sentence'"),
    ({"inputs": [["a", "list"]]}, 422, "inputs[0]", "row 1: expected a dict of sentence, got list"),
]


def test_bad_requests_get_a_json_error_naming_the_field_and_the_server_goes_on(runs, tmp_path):
    run, _, _ = runs["classification"]
    with Served(run, max_rows_per_request=8, max_body_bytes=4096) as served:
        for body, status, field, words in BAD:
            response = served.post(body)
            assert response.status_code == status, (body, response.text)
            assert response.json()["field"] == field and words in response.json()["error"], response.json()
            good = served.post({"inputs": ["a fine day"]})
            assert good.status_code == 200 and good.json()["predictions"][0]["sentence"] == "a fine day"
        missing = served.get("/nowhere")
        assert missing.status_code == 404 and "error" in missing.json()
        rejected = _metric(served.get("/metrics").text, "lmctl_rejected_total", '{reason="bad_request"}')
    assert rejected == len(BAD)
    # The words are predict's: the same empty row in a file gets the same message from the command.
    bad_file = write_rows(tmp_path / "bad.jsonl", [{"sentence": "a fine day"}, {"sentence": "   "}])
    result = cli("predict", "--model", run, "--input", bad_file, code=2)
    assert "row 2: empty text in column 'sentence'; fill or remove that row" in result.stderr


def test_a_full_queue_answers_503_at_once_and_the_server_recovers(runs):
    run, _, _ = runs["classification"]
    with Served(run, max_queue=4, max_batch_size=1) as served:
        predict = served.server.batcher.predict
        served.server.batcher.predict = lambda rows: (time.sleep(0.2), predict(rows))[1]  # a slow model

        async def flood():
            async with httpx.AsyncClient(base_url=served.url, timeout=LIMIT_S,
                                         limits=httpx.Limits(max_connections=40)) as client:
                async def one(i):
                    start = time.perf_counter()
                    response = await client.post("/predict", json={"inputs": [f"day {i} was fine"]})
                    return response, time.perf_counter() - start
                return await asyncio.gather(*(one(i) for i in range(30)))

        answers = asyncio.run(flood())
        statuses = [r.status_code for r, _ in answers]
        assert set(statuses) <= {200, 503} and statuses.count(503) >= 20, statuses
        for response, seconds in answers:
            if response.status_code == 503:
                assert response.headers["retry-after"] == "1" and "busy" in response.json()["error"]
                assert seconds < 2  # refused at once, not after waiting its turn
        served.server.batcher.predict = predict
        assert served.post({"inputs": ["a fine day"]}).status_code == 200
        text = served.get("/metrics").text
        assert _metric(text, "lmctl_rejected_total", '{reason="overloaded"}') == statuses.count(503)
        assert _metric(text, "lmctl_queue_depth") == 0


def test_an_api_key_guards_every_route_but_health_and_the_page(runs):
    run, _, _ = runs["classification"]
    with Served(run, api_key="s3cret") as served:
        for path in ("/info", "/metrics", "/docs", "/openapi.json"):
            assert httpx.get(served.url + path).status_code == 401, path
            assert served.get(path).status_code == 200, path
        assert httpx.get(served.url + "/health").status_code == 200
        assert httpx.get(served.url + "/").status_code == 200  # static: it asks for the key
        wrong = httpx.post(served.url + "/predict", json={"inputs": ["x"]}, headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 401 and wrong.json()["field"] == "Authorization"
        assert served.post({"inputs": ["a fine day"]}).status_code == 200


def test_metrics_and_the_openapi_page(runs):
    run, _, _ = runs["classification"]
    with Served(run) as served:
        for _ in range(3):
            served.post({"inputs": ["a fine day", "a bad day"]})
        text = served.get("/metrics").text
        schema = served.get("/openapi.json").json()
    assert _metric(text, "lmctl_requests_total", '{route="/predict",status="200"}') == 3
    assert _metric(text, "lmctl_rows_total") == 6
    assert _metric(text, "lmctl_batch_rows_sum") == 6
    assert _metric(text, "lmctl_request_seconds_count", '{route="/predict"}') == 3
    assert "lmctl_rows_per_second" in text and "lmctl_queue_depth" in text
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "inputs" in body["properties"]


# ---- the process: signals, start-up failures, workers ----------------------------------------------
def _start(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lmctl", "serve", "--port", "0", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


class Stderr:
    """A server process's stderr lines, read on a thread: a blocking readline() would let a server that
    hangs without a word hang the test past every deadline."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(process.stderr,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)  # end of file: the server closed stderr (exited)

    def next(self, deadline: float) -> str | None:
        """The next line, or None once the server has exited; fails at the deadline."""
        try:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"the server wrote no line in time: {''.join(self.lines)}") from None
        if line is not None:
            self.lines.append(line)
        return line

    def url(self) -> str:
        """The URL of the first 'serving' line."""
        deadline = time.monotonic() + LIMIT_S
        while (line := self.next(deadline)) is not None:
            if found := re.search(r"serving.*?(http://127\.0\.0\.1:\d+)", line):
                return found.group(1)
        raise AssertionError(f"the server exited: {''.join(self.lines)}")

    def rest(self) -> list[str]:
        """Every line up to the end (call once the process has exited)."""
        deadline = time.monotonic() + LIMIT_S
        while self.next(deadline) is not None:
            pass
        return self.lines


def test_sigterm_answers_the_queued_requests_then_exits_0(runs):
    run, _, _ = runs["classification"]
    process = _start("--model", run, "--log-format", "json", "--max-batch-size", "8")
    stderr = Stderr(process)
    try:
        url = stderr.url()
        rows = [r["sentence"] for r in sentiment_rows(64, 3)]

        async def send_then_stop():
            async with httpx.AsyncClient(base_url=url, timeout=LIMIT_S) as client:
                sent = [asyncio.create_task(client.post("/predict", json={"inputs": rows})) for _ in range(6)]
                await asyncio.sleep(0.3)  # the requests are in: some run, the rest wait in the queue
                process.send_signal(signal.SIGTERM)
                return await asyncio.gather(*sent)

        answers = asyncio.run(send_then_stop())
        assert process.wait(LIMIT_S) == 0
    finally:
        process.kill()
    assert [a.status_code for a in answers] == [200] * 6
    assert all(len(a.json()["predictions"]) == 64 for a in answers)
    lines = stderr.rest()
    events = [json.loads(line) for line in lines]  # --log-format json: every line is one JSON object
    assert events[0]["event"] == "serving" and events[-1]["event"] == "stopped"
    batches = [e for e in events if e["event"] == "batch"]
    assert sum(e["rows"] for e in batches) == 6 * 64
    assert len(lines) <= 2 + len(batches)  # one line per batch at most, none per request


def test_start_up_failures_are_one_line_and_exit_2(runs, tmp_path):
    run, _, _ = runs["classification"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli("serve", "--model", run, "--port", port, code=2)
        assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in result.stderr
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    (damaged / "model.safetensors").write_bytes(b"not a model")
    process = _start("--model", damaged)
    _, err = process.communicate(timeout=LIMIT_S)
    assert process.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert "model.safetensors" in err or str(damaged) in err
    missing = cli("serve", "--model", tmp_path / "nowhere", code=2)
    assert "--model" in missing.stderr


def test_each_log_line_is_one_write(monkeypatch):
    # Workers share stderr: a line written in pieces interleaves with another worker's (seen with
    # --workers 2 on a busy core), so each line, newline included, must reach the pipe in one write.
    from lmctl.serve import Log

    writes: list[str] = []

    class Recorder:
        def write(self, text):
            writes.append(text)

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stderr", Recorder())
    for fmt in ("text", "json"):
        Log(fmt)("serving", "http://127.0.0.1:1", pid=7)
    assert len(writes) == 2 and all(w.endswith("\n") and w.count("\n") == 1 for w in writes), writes
    assert writes[0] == "serving http://127.0.0.1:1 pid=7\n" and json.loads(writes[1])["pid"] == 7


def test_workers_share_the_port(runs):
    run, _, _ = runs["classification"]
    process = _start("--model", run, "--workers", "2")
    stderr = Stderr(process)
    lines = stderr.lines
    try:
        url = stderr.url()  # the supervisor's line ("starting"), then each worker's
        # Each worker loads its own model: until both say "serving", the other answers 503 (loading).
        deadline = time.monotonic() + LIMIT_S
        while len([line for line in lines if line.startswith("serving")]) < 2:
            assert stderr.next(deadline) is not None, f"the server exited: {''.join(lines)}"
        answers = [httpx.post(f"{url}/predict", json={"inputs": ["a fine day"]}, timeout=LIMIT_S) for _ in range(8)]
        assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
        process.send_signal(signal.SIGTERM)
        assert process.wait(LIMIT_S) == 0
    finally:
        process.kill()
    pids = {re.search(r"pid=(\d+)", line).group(1) for line in lines if line.startswith("serving")}
    assert len(pids) == 2, lines


def test_serve_help_lists_every_option_with_its_default():
    result = cli("serve", "--help")
    text = " ".join(result.output.split())  # help wraps lines where the terminal width says
    for option, default in (("--host", "127.0.0.1"), ("--port", "8000"), ("--max-batch-size", "32"),
                            ("--max-wait-ms", "2.0"), ("--max-queue", "256"), ("--max-rows-per-request", "64"),
                            ("--max-body-bytes", "1048576"), ("--workers", "1"), ("--log-format", "text")):
        assert re.search(rf"{option}\b[^\[]*\[default: {re.escape(default)}\b", text), option
    assert "LMCTL_API_KEY" in result.output, explain(result)
