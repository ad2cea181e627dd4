# The two commands of the README:  make demo  and  make test.
# Each creates .venv with Python 3.10 when it is absent and installs neuroprune into it.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint format venv benchmarks clean

$(STAMP): pyproject.toml
	@PY310=$$(scripts/python310.sh) || exit 1; \
	  if [ ! -x $(PY) ]; then echo "creating $(VENV) with $$PY310"; $$PY310 -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## demo: train, prune, quantize, export, simulate on Lava and report, on the bundled digits data
demo: $(STAMP)
	$(VENV)/bin/neuroprune fit --chip loihi --cores 1 --hidden 512,256 --out runs --name demo

## test: lint, the import contracts, types of the torch-free core, and the whole test suite
test: lint
	$(PY) -m pytest -q -n 2 --dist loadfile

## test-fast: the same checks and the suite without the tests marked slow (under a minute)
test-fast: lint
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow"

## lint: style, the layer contracts of pyproject.toml, mypy on the torch-free packages
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf runs .pytest_cache .mypy_cache .import_linter_cache
