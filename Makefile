# `make demo` and `make test` each do the whole set-up on a fresh machine: a virtual environment in .venv,
# the package and every extra the tests need, then the job itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint docs bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[all]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m experiments.demo

lint: $(STAMP)
	$(BIN)/ruff check .

# One BLAS/OpenMP thread per test worker: two workers on two cores, no oversubscription.
test: lint
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -n 2

test-fast: lint
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -m "not slow"

docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info docs/_build docs/api/generated
