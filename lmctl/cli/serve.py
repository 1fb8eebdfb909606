"""`lmctl serve`: a model behind HTTP (FastAPI + uvicorn), requests batched together."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from lmctl.cli.common import MinLabelsOpt, ModelConfigOpt, SetOpt, TaskOpt, guarded, with_min_labels


@guarded
def serve(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory, model directory, ONNX export or hub id.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 opens it to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port (0: a free one).")] = 8000,
    config: ModelConfigOpt = None,
    set_: SetOpt = None,
    task: TaskOpt = None,
    mode: Annotated[Optional[str], typer.Option(
        "--mode", help="classify | generate | score | fill-mask (default: the task's first).")] = None,
    max_batch_size: Annotated[int, typer.Option(
        "--max-batch-size", min=1, help="Rows run together, from however many requests.")] = 32,
    max_tokens: Annotated[int, typer.Option(
        "--max-tokens", min=1, help="Token budget per forward pass besides --max-batch-size (as predict's): a "
                                    "batch of mixed lengths runs as passes of like lengths, not all padded to "
                                    "its longest row. 256 was fastest on 2 CPU cores; raise it on a GPU.")] = 256,
    max_wait_ms: Annotated[float, typer.Option(
        "--max-wait-ms", min=0, help="How long a batch that is not full waits for more rows, under concurrent "
                                     "load only (a lone client is never kept waiting).")] = 2.0,
    max_queue: Annotated[int, typer.Option(
        "--max-queue", min=1, help="Requests waiting at most; past it, 503 with Retry-After at once.")] = 256,
    max_rows_per_request: Annotated[int, typer.Option(
        "--max-rows-per-request", min=1, help="Rows one request may send (more: 413).")] = 64,
    max_body_bytes: Annotated[int, typer.Option(
        "--max-body-bytes", min=1, help="Largest request body (more: 413).")] = 1 << 20,
    api_key: Annotated[Optional[str], typer.Option(
        "--api-key", envvar="LMCTL_API_KEY", show_envvar=True,
        help="Require 'Authorization: Bearer KEY' on every route but /health and the page.")] = None,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=1, help="Inference threads per worker (default: all cores, split between workers).")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Server processes sharing the port, each with its own copy of the model.")] = 1,
    explain_steps: Annotated[int, typer.Option(
        "--explain-steps", min=2, help="Integrated Gradients steps for POST /predict?explain=true.")] = 20,
    log_format: Annotated[str, typer.Option("--log-format", help="text | json: one line per batch at most.")] = "text",
    min_labels: MinLabelsOpt = None,
) -> None:
    """Serve MODEL over HTTP: POST /predict, GET /health, /info, /metrics, /docs and a page at /."""
    from lmctl.serve import ServeOptions
    from lmctl.serve import serve as run_server

    run_server(ServeOptions(
        model=model, host=host, port=port, config=config, overrides=with_min_labels(set_, min_labels), task=task,
        mode=mode,
        max_batch_size=max_batch_size, max_tokens=max_tokens, max_wait_ms=max_wait_ms, max_queue=max_queue,
        max_rows_per_request=max_rows_per_request, max_body_bytes=max_body_bytes,
        api_key=api_key or None, threads=threads, workers=workers,
        explain_steps=explain_steps, log_format=log_format))
