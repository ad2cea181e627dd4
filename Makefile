# The two commands of the README:  make demo  and  make test.
# Each creates .venv (Python 3.12 if present, else 3.13 or 3.11: scripts/python.sh) when it is
# absent or older than 3.11, installs neuroprune into it, then the environments it needs:
# the Python 3.10 backend environment for Lava (`neuroprune backends install lava`) and, for
# the tests, the Sinabs and NeuroBench test environments (README, "Backend environments").
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NP := $(VENV)/bin/neuroprune

.PHONY: demo test test-fast lint format venv backends test-envs benchmarks clean

$(STAMP): pyproject.toml
	@TOOLPY=$$(scripts/python.sh) || exit 1; \
	  if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	    echo "$(VENV) holds Python $$($(PY) -V 2>&1 | cut -d' ' -f2); neuroprune needs 3.11+: recreating it"; \
	    rm -rf $(VENV); fi; \
	  if [ ! -x $(PY) ]; then echo "creating $(VENV) with $$TOOLPY"; $$TOOLPY -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## backends: the Python 3.10 environment that runs the Lava worker and the NeuroBench
## environment whose metrics every report carries (each skipped when ready)
backends: $(STAMP)
	$(NP) backends install lava neurobench

## test-envs: the backend environments (Lava with lava-dl, XyloSim and Rockpool; PyNN with NEST) and the Sinabs, NeuroBench and Rockpool test environments
test-envs: $(STAMP)
	$(NP) backends install lava pynn sinabs neurobench rockpool

## demo: train, prune, quantize, export, simulate on Lava and report, on the bundled digits data
demo: backends
	$(VENV)/bin/neuroprune fit --chip loihi --cores 1 --hidden 512,256 --out runs --name demo

## test: lint, the import contracts, types of the torch-free core, and the whole test suite
test: lint test-envs
	$(PY) -m pytest -q -n 2 --dist loadfile

## test-fast: the same checks and the suite without the tests marked slow (under a minute)
test-fast: lint test-envs
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
