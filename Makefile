# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create the virtual environment and install the project on first use, with the versions in
# constraints.txt (known to work together), so a release upstream cannot break them.
VENV ?= .venv
PYTHON ?= python3
# A CPU build of torch; override for CUDA, e.g. `make test TORCH_SPEC="torch --index-url ..."`.
TORCH_SPEC ?= torch==2.13.0
CONSTRAINTS ?= constraints.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LINTED := textgym agents examples benchmarks tests docs

.PHONY: demo test test-quick lint docs bench browser test-latest test-compat constraints clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev,plots]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/textgym demo --out reports/demo

test: $(STAMP)
	$(PY) -m pytest -q --durations=15

test-quick: $(STAMP)  ## everything but the tests marked slow (learning to a bar, several processes)
	$(PY) -m pytest -q -m "not slow" --durations=15

lint: $(STAMP)  ## ruff over the code and tests; mypy over the packages (its settings in pyproject.toml)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/mypy

docs: $(STAMP)  ## the docs site into site/, every warning an error (the benchmarks page is built from benchmarks/results)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(PY) benchmarks/rollout.py

browser:  ## Debian's Chromium and ChromeDriver for the labelling page's browser test (needs root; skipped if absent)
	command -v chromedriver >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

# Drift on purpose (not CI): the newest release of every dependency, in .venv-latest.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip
	.venv-latest/bin/python -m pip install --quiet $(TORCH_SPEC)
	.venv-latest/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[dev,plots]"
	.venv-latest/bin/python -m pip list --format=freeze | grep -iE "^(transformers|trl|peft|accelerate|gymnasium|datasets)=="
	.venv-latest/bin/python -m pytest -q

# The other side of transformers' renamed cache keyword (past_key_values before 5.24, cache after).
test-compat:
	rm -rf .venv-compat
	$(PYTHON) -m venv .venv-compat
	.venv-compat/bin/python -m pip install --quiet --upgrade pip
	.venv-compat/bin/python -m pip install --quiet $(TORCH_SPEC)
	grep -v "^transformers==" $(CONSTRAINTS) > .venv-compat/constraints.txt
	echo "transformers==5.23.0" >> .venv-compat/constraints.txt
	.venv-compat/bin/python -m pip install --quiet -c .venv-compat/constraints.txt -e ".[dev,plots]"
	.venv-compat/bin/python -m pytest -q -m "not slow" tests/models tests/envs tests/agents/test_lm_agents.py tests/test_devices.py

# Refresh constraints.txt from the working environment (after `make test-latest` passes, say).
constraints: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -viE "^(torch|nvidia|triton|py-spy)([-=])" > $(CONSTRAINTS)

clean:
	rm -rf $(VENV) .venv-latest .venv-compat build site *.egg-info
