# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create the virtual environment and install the project on first use.
VENV ?= .venv
PYTHON ?= python3
# A CPU build of torch; override for CUDA, e.g. `make test TORCH_SPEC="torch --index-url ..."`.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev,plots]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/textgym demo --out reports/demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check textgym agents examples benchmarks

bench: $(STAMP)
	$(PY) benchmarks/rollout.py

clean:
	rm -rf $(VENV) build *.egg-info
