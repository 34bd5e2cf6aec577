# Hydra overrides can be given straight to make: `make train data=tiny model.depth=4`.
# Make reverses command-line variables in MAKEOVERRIDES; `reverse` restores the order you typed.
reverse = $(if $(1),$(call reverse,$(wordlist 2,$(words $(1)),$(1))) $(firstword $(1)))
OVERRIDES := $(filter-out DIR=% PYTHON=%,$(call reverse,$(MAKEOVERRIDES))) $(ARGS)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DIR ?= outputs

.PHONY: install train eval sweep compare test test-slow test-real bench tensorboard mutation clean

install:  ## create .venv and install cnnlab (editable) with pinned dependencies
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e .

train:  ## train once: make train data=tiny model.depth=4
	$(BIN)/cnnlab-train $(OVERRIDES)

sweep:  ## multirun: make sweep experiment=depth_pool_aug data=tiny
	$(BIN)/cnnlab-train -m $(OVERRIDES)

eval:  ## evaluate a checkpoint: make eval ckpt_path=outputs/.../checkpoints/best.ckpt
	$(BIN)/cnnlab-eval $(OVERRIDES)

compare:  ## comparison report of a sweep: make compare DIR=multirun/...
	$(BIN)/cnnlab-compare $(DIR)

test:  ## fast suite (CI): smoke trainings on tiny synthetic data
	$(BIN)/python -m pytest -q

test-slow:  ## longer checks, including real-data tests when CIFAR-10 is present
	$(BIN)/python -m pytest -q -m "slow or real_data"

# cosmic-ray gets its own venv: it needs SQLAlchemy 2, while the Optuna sweeper pins 1.4. The tests run in .venv.
mutation:  ## mutation testing of the module named in mutation.toml (cosmic-ray; minutes per module, not for CI)
	test -x .mutation/venv/bin/cosmic-ray || ($(PYTHON) -m venv .mutation/venv && .mutation/venv/bin/pip install -q "cosmic-ray==8.7.0")
	rm -f .mutation/session.sqlite
	.mutation/venv/bin/cosmic-ray init mutation.toml .mutation/session.sqlite
	PATH=$(CURDIR)/$(BIN):$$PATH .mutation/venv/bin/cosmic-ray exec mutation.toml .mutation/session.sqlite
	@git diff --quiet -- src || echo "WARNING: src/ differs from git; an interrupted run can leave a mutant in place (git diff src)"
	.mutation/venv/bin/cr-report .mutation/session.sqlite

bench:  ## throughput benchmarks; results go to docs/benchmarks.md by hand
	$(BIN)/python scripts/bench.py

tensorboard:  ## make tensorboard DIR=multirun/2026-01-01/12-00-00
	$(BIN)/tensorboard --logdir $(DIR)

clean:
	rm -rf outputs multirun lightning_logs .pytest_cache build dist .mutation
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
