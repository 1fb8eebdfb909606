# lmctl serve in a container: one replica of a stateless server; run as many as the load needs
# behind a load balancer (docs/guide.md#serving-lmctl-serve).
#
#   docker build -t lmctl-serve .
#   docker run --rm -p 8000:8000 -v "$PWD/runs/minilm-sst2-int8:/model:ro" lmctl-serve
#   curl -s localhost:8000/predict -H 'Content-Type: application/json' -d '{"inputs": ["a witty film"]}'
#
# Options after the image name replace the defaults below (e.g. --workers 2 --api-key ...);
# set the cores a replica may use with `docker run --cpus` and, to match, --threads.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1
WORKDIR /opt/lmctl
# The CPU build of the pinned torch first, so that no dependency pulls a CUDA wheel.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY lmctl ./lmctl
RUN pip install ".[serve,onnx]"

# A user without a home or a shell to own nothing: the model is mounted read-only at /model.
RUN useradd --system --no-create-home lmctl
USER lmctl
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
ENTRYPOINT ["lmctl", "serve", "--model", "/model", "--host", "0.0.0.0", "--port", "8000"]
