# Everything runs inside a project-local virtual environment, created on demand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test venv bench clean docs docs-build

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

venv: $(PY)
	$(PY) -m pip install --quiet -e '.[test]'

# The main job: Amp's tutorial (EMT data, training, held-out RMSEs, MD with
# the reloaded model); outputs in out/tutorial/.
demo: $(PY)
	$(PY) -m pip install --quiet -e .
	$(PY) -W default::DeprecationWarning -W default::FutureWarning examples/tutorial.py out/tutorial

# Install what the tests need (pip packages from pyproject, system packages by
# scripts/setup_test_system.sh), then run the whole suite. pytest's exit code 5
# (no tests collected) is reported and not treated as a failure.
test: venv
	bash scripts/setup_test_system.sh
	$(PY) -m pytest -q -ra tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

# The API reference of the public modules (scripts/public_modules.txt),
# built by pdoc from the numpydoc docstrings into out/api/; warnings fail.
APIDIR ?= out/api
docs: venv docs-build

docs-build:
	$(PY) -W error -m pdoc -d numpy -o $(APIDIR) $$(grep -v '^#' scripts/public_modules.txt)

bench: venv
	for b in bench/*.py; do $(PY) $$b; done

clean:
	rm -rf $(VENV) build *.egg-info
