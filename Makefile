# Hydra overrides can be given straight to make: `make train data=tiny model.depth=4`.
# Make reverses command-line variables in MAKEOVERRIDES; `reverse` restores the order you typed.
reverse = $(if $(1),$(call reverse,$(wordlist 2,$(words $(1)),$(1))) $(firstword $(1)))
OVERRIDES := $(filter-out DIR=% PYTHON=% WORKERS=%,$(call reverse,$(MAKEOVERRIDES))) $(ARGS)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DIR ?= outputs

.PHONY: help install lint doctor train eval sweep compare test test-slow test-slurm slurm-local bench bench-fastnet peer94 peer94muon peerhiverge mutation mlflow tensorboard clean
.DEFAULT_GOAL := help

help:  ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install:  ## create .venv and install cnnlab (editable) with pinned dependencies
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e .

lint:  ## ruff: lint and format check (one line length, 120)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

doctor:  ## this machine: torch, CPU and flags, what auto picks and why, oneDNN's NHWC bug, a training step (subprocesses)
	$(BIN)/cnnlab-doctor $(OVERRIDES)

train:  ## train once: make train data=tiny model.depth=4
	$(BIN)/cnnlab-train $(OVERRIDES)

sweep:  ## multirun: make sweep experiment=depth_pool_aug data=tiny
	$(BIN)/cnnlab-train -m $(OVERRIDES)

eval:  ## evaluate a checkpoint: make eval ckpt_path=outputs/.../checkpoints/best.ckpt
	$(BIN)/cnnlab-eval $(OVERRIDES)

compare:  ## comparison report of a sweep: make compare DIR=multirun/...
	$(BIN)/cnnlab-compare $(DIR)

# One pytest worker per logical core (tests/conftest.py gives each its share of the torch threads): most of the suite
# is single-threaded Python (imports, Hydra, console scripts), so 2 workers on 2 cores took 160 s against 241 s
# serially. worksteal: an idle worker takes tests queued for the other (187 s against 199 s with xdist's default
# `load`, one run each, AMD EPYC Zen 3: within the ~10 s run-to-run spread). WORKERS=0 runs it in one process.
WORKERS ?= logical
test:  ## fast suite (CI): smoke trainings on tiny synthetic data (WORKERS=0: in one process)
	$(BIN)/python -m pytest -q -n $(WORKERS) $(if $(filter 0,$(WORKERS)),,--dist worksteal)

test-slow:  ## longer checks, including real-data tests when CIFAR-10 is present
	$(BIN)/python -m pytest -q -m "slow or real_data"

test-slurm:  ## a real 2-job submitit_slurm sweep (needs a cluster: make slurm-local starts one on this host)
	$(BIN)/python -m pytest -q -m slurm -s tests/test_slurm.py

slurm-local:  ## install and start a single-node SLURM cluster on this host (root; idempotent)
	scripts/slurm_local.sh

# mutmut (pinned in pyproject's `mutation` extra) forks the warmed test process per mutant and runs only the tests
# that reached the mutated function. PYTHONPATH makes the console scripts that tests start in a subprocess
# import the mutated copy too. One worker: the trainings in the tests already use every core.
# src/ is never touched. mutants/<group>/ (scripts/mutation.py) keeps the copy and the test map; each run
# re-checks its mutants from scratch.
# OMP_NUM_THREADS=1: a forked child's first multi-threaded tensor op hung on the OpenMP pool it inherited, so 89 of
# the first 213 mutants of augment/data "timed out" that fail in 0.5 s when run alone (docs/testing.md).
GROUP ?= models
mutation:  ## mutmut on GROUP=models|report|data|runs against its own tests (1-22 min each), or GROUP=all (hours); ARGS= mutant globs
	$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/pip install -q -e '.[mutation]'
	$(BIN)/python scripts/mutation.py $(GROUP) $(ARGS)

bench:  ## throughput benchmarks; results go to docs/benchmarks.md by hand
	$(BIN)/python scripts/bench.py

bench-fastnet:  ## FastNet's bare training step (what bounds cpu94/fast94 on a CPU); ARGS=--speedrun: image sizes, compile, profile
	$(BIN)/python scripts/bench_fastnet.py $(ARGS)

DATA ?= data
peer94:  ## cpu94's peer: airbench94 in plain PyTorch on this CPU, e.g. make peer94 DATA=../shared/data SEED=0 (~17 min)
	/usr/bin/time -f "%e s for the whole process" $(BIN)/python scripts/peer_airbench94.py --data-dir $(DATA) --seed $(or $(SEED),0)

peer94muon:  ## cpu94's second peer: airbench94_muon in plain PyTorch, e.g. make peer94muon DATA=../shared/data SEED=0
	/usr/bin/time -f "%e s for the whole process" $(BIN)/python scripts/peer_airbench94_muon.py --data-dir $(DATA) --seed $(or $(SEED),0)

peerhiverge:  ## cpu94's third peer: hiverge's cifar10-speedrun (the GPU record) in plain PyTorch, e.g. make peerhiverge DATA=../shared/data SEED=0
	/usr/bin/time -f "%e s for the whole process" $(BIN)/python scripts/peer_hiverge.py --data-dir $(DATA) --seed $(or $(SEED),0)

# The GPU check (scripts/gpu_check.py): gpu-pack here, then gpu-check on a CUDA machine, whose python3 holds torch
# (cnnlab is read from this checkout's src/, the packages that python lacks installed from gpu_data/wheels).
.PHONY: gpu-pack gpu-check
GPU_PYTHON = $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-pack:  ## CIFAR-10 and the wheels a GPU machine lacks, as chunks in gpu_data/: make gpu-pack DATA=../shared/data
	$(BIN)/python scripts/gpu_check.py --pack $(DATA) --wheels

gpu-check:  ## GPU tests, then fast94 vs airbench94 on the card (≤7.5 min): make gpu-check DATA=data; skips without a GPU
	$(GPU_PYTHON) scripts/gpu_check.py --data $(DATA)

mlflow:  ## MLflow's UI over outputs/mlflow.db (runs with logger=mlflow; needs: .venv/bin/pip install -e '.[mlflow]')
	$(BIN)/mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db

tensorboard:  ## make tensorboard DIR=multirun/2026-01-01/12-00-00
	$(BIN)/tensorboard --logdir $(DIR)

clean:  ## remove outputs, multirun, caches and build folders
	rm -rf outputs multirun lightning_logs .pytest_cache build dist mutants
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
