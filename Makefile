# tagseg: `make demo` (main job on the built-in phantom) and `make test` do all the set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TAGSEG := $(VENV)/bin/tagseg
STAMP := $(VENV)/.install-stamp
# torch is pinned here, outside the hashed lock: the CPU wheel (+cpu, from a CPU index) and PyPI's CUDA wheel of the
# same version are different files with different hashes, so no one hash list fits every machine
TORCH := 2.13.0
# the throwaway venv holding the resolver that writes requirements.lock (never the project's .venv)
LOCK_VENV := .lock-venv
UV_VERSION := 0.13.9
LINT_PATHS := tagseg tests bench
export WANDB_MODE ?= offline
# where the CPU torch wheel comes from when the lock is made (`make lock TORCH_CPU_INDEX=` with PIP_FIND_LINKS holding it)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install lock demo test test-all bench lint clean help

help:
	@echo "make install   create .venv: the hashed lock (requirements.lock), then torch 2.13.0 (CPU or GPU wheel)"
	@echo "make lock      regenerate requirements.lock from pyproject.toml (uv, hashes; all extras)"
	@echo "make demo      prepare the phantom, train ResNetVAE on it, print the test Dice/HD95"
	@echo "make test      fast tests (< 10 min on 2 cores)"
	@echo "make test-all  every test, slow ones included (DDP, sweeps, launchers)"
	@echo "make bench     run the benchmarks in bench/ (JSON on stdout)"
	@echo "make lint      ruff check + ruff format --check on tagseg/ tests/ bench/"

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install --quiet torch==$(TORCH)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	touch $(STAMP)

# torch's own dependencies are resolved from its CPU wheel (find-links/index of the machine: PIP_FIND_LINKS or
# TORCH_CPU_INDEX), so the lock carries no CUDA packages; a GPU machine's `pip install torch` adds those
lock:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	echo "torch==$(TORCH)+cpu" > $(LOCK_VENV)/torch-cpu.txt
	$(LOCK_VENV)/bin/uv pip compile pyproject.toml --extra dev --extra export --extra dicom \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes \
	  $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS)) $(if $(TORCH_CPU_INDEX),--extra-index-url $(TORCH_CPU_INDEX)) \
	  --index-strategy unsafe-best-match -c $(LOCK_VENV)/torch-cpu.txt --no-emit-package torch \
	  --custom-compile-command "make lock" -o requirements.lock

# train on the phantom, then tables and figures (per frame, per group, Q1/median/Q3 examples) of that run
demo: install
	$(TAGSEG) train experiment=demo
	$(TAGSEG) report path="$$(ls -td logs/demo/runs/*/ | head -n 1)"

test: install
	WANDB_MODE=disabled $(PY) -m pytest -q

test-all: install
	WANDB_MODE=disabled $(PY) -m pytest -q -m "slow or not slow"

lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) $(LOCK_VENV) logs multirun outputs .pytest_cache
