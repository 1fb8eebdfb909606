"""The serving benchmark's peer: the inference server a user writes first.

FastAPI with a sync route that calls `transformers.pipeline("text-classification")` once per
request. FastAPI runs sync routes in a thread pool, so requests overlap but never share a forward
pass. It speaks lmctl serve's protocol (`POST /predict` with `{"inputs": [row, ...]}`, a row a
`{"sentence": ...}` object or a plain string; `GET /health`), so one load generator drives both.
Run from the repository root (scripts/bench/serve.py starts it):

    .venv/bin/python -m scripts.bench.peer_server --model runs/minilm-sst2 --port 8001 --threads 2
"""

from __future__ import annotations

import argparse


def make_app(model: str, max_length: int):
    from fastapi import FastAPI
    from transformers import pipeline

    clf = pipeline("text-classification", model=model, device=-1)
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: dict) -> dict:
        texts = [row["sentence"] if isinstance(row, dict) else row for row in body["inputs"]]
        out = clf(texts, truncation=True, max_length=max_length)
        return {"predictions": [{"sentence": t, **o} for t, o in zip(texts, out)]}

    return app


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model directory (a run directory holds one)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--max-length", type=int, default=128, help="truncation, as lmctl's configs")
    args = p.parse_args()
    import torch
    import uvicorn

    if args.threads:
        torch.set_num_threads(args.threads)
    uvicorn.run(make_app(args.model, args.max_length), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
