# The two commands: `make figures` and `make test`. Both set themselves up on a fresh
# machine (Python 3.11 + pip): create .venv if missing, install the package with its
# dependencies from pyproject.toml, then run.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Small LAPACK calls (the 90×90 tridiagonal eigh of a Lanczos run) are pathologically slow
# with multi-threaded OpenBLAS on a busy machine (116 ms against 0.5 ms single-threaded);
# XLA's own matmuls do not use OpenBLAS, so one thread costs nothing else.
OPENBLAS_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS

.PHONY: figures test lint bench venv clean-results

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## Regenerate every figure and results/CLAIMS.md (ARGS="--quick", "--force", "--only NAME").
figures: $(STAMP)
	$(PY) -m experiments $(ARGS)

## The whole test suite, lint included; one pytest worker per core (JOBS=1 for serial).
JOBS ?= auto
test: $(STAMP) lint
	$(PY) -m pytest -n $(JOBS) $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## Benchmarks: print ratios, write results/bench_*.json.
bench: $(STAMP)
	$(PY) scripts/bench_integrate.py
	$(PY) scripts/bench_depth.py
	$(PY) scripts/bench_deq.py
	$(PY) scripts/bench_walk.py
	$(PY) scripts/bench_landscape.py

clean-results:
	rm -rf results/*.json results/*.npz results/CLAIMS.md figures/*.png
