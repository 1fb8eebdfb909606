# lmctl developer entry points. Everything runs inside .venv; torch is pinned to the
# CPU build before the package installs, so no dependency can pull a CUDA wheel.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
DATA ?= ../shared/data
export HF_HUB_OFFLINE ?= 1

.PHONY: install test test-fast demo bench pretrain-demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# lint-imports checks the floors and rules of docs/architecture.md (contracts in .importlinter).
test: install
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

test-fast: install
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "not slow"

demo: install
	PY=$(PY) bash scripts/demo.sh

bench: install
	$(PY) -m scripts.bench.finetune --data $(DATA)/sst2

clean:
	rm -rf runs demo .pytest_cache

pretrain-demo: install
	$(PY) -m scripts.pretrain_gain --data $(DATA)/sst2 --out runs/pretrain-gain --size tiny --override activation_function=gelu --pretrain-lr 2e-3 --pooling mean --lrs 1e-4,3e-4,1e-3,3e-3 --seeds 1,2,3,4
