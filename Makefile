# tagseg: `make demo` (main job on the built-in phantom) and `make test` do all the set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TAGSEG := $(VENV)/bin/tagseg
STAMP := $(VENV)/.install-stamp
LINT_PATHS := tagseg tests bench
export WANDB_MODE ?= offline

.PHONY: install demo test test-all bench lint clean help

help:
	@echo "make install   create .venv with pinned packages (torch CPU/GPU wheel 2.13.0 first)"
	@echo "make demo      prepare the phantom, train ResNetVAE on it, print the test Dice/HD95"
	@echo "make test      fast tests (< 10 min on 2 cores)"
	@echo "make test-all  every test, slow ones included (DDP, sweeps, launchers)"
	@echo "make bench     run the benchmarks in bench/ (JSON on stdout)"
	@echo "make lint      ruff check + ruff format --check on tagseg/ tests/ bench/"

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

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
	rm -rf $(VENV) logs multirun outputs .pytest_cache
