# Two commands (see README "Quick start"):
#   make demo   set everything up, then run the main job
#   make test        set everything up, then run the whole test suite (two pytest-xdist workers)
#   make test-quick  the quick tier (tests not marked slow): 3-6 minutes on 2 cores
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-quick setup data lint fields bench docs notebooks

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[experiments,test]"
	touch $@

setup: $(VENV)/.installed

# Fashion-MNIST from Debian's dataset-fashion-mnist package, where apt is available.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	  sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist; \
	else echo "note: no apt; put the Fashion-MNIST IDX files in a folder and pass --data_dir"; fi

# The main job: the paper's CNN on the full Fashion-MNIST, offline, comparing baseline, BN,
# LN, DN and DN* (about 10 minutes on 2 CPU cores); writes runs/cnn_compare/.
demo: setup data
	$(PY) -m experiments.main compare

# What each normalization field does to real photographs (seconds).
fields: setup
	$(PY) examples/fields_demo.py

bench: setup
	$(PY) -m benchmarks

# The documentation site, offline, warnings as errors: docs/_build/html/index.html.
docs: setup
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

# Re-execute the notebooks (notebooks/NN_*.py) and write them with outputs (NN_*.ipynb).
notebooks: setup
	$(PY) notebooks/run.py

# data: notebooks 3, 4 and 6, which the suite executes, read Fashion-MNIST.
# Two worker processes (pytest-xdist) use both cores; `-n 0` in PYTEST_ARGS runs in one process.
# worksteal: a worker that runs out of tests takes some of the other's queue, so the slow tests
# at the end of one worker's share do not leave a core idle (results/SUITE.md).
PYTEST_ARGS ?= -n 2 --dist worksteal
test: setup data
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The quick tier: the core contract, the modules' equality with flax, one real step of each
# experiment and the command lines' errors; the rest is marked `slow`.
test-quick: setup data
	$(PY) -m pytest -q $(PYTEST_ARGS) -m "not slow"

lint: setup
	$(VENV)/bin/ruff check divnorm experiments benchmarks tests examples
