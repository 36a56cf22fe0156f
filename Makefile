# The two commands of the README:
#   make demo   set up .venv, install the engine, run it end to end on the bundled synthetic city
#   make test   set up .venv with the dev extra, run the test suite on every core
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install only when the package definition changes (editable: code edits need no reinstall).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/recsys demo

# One worker process per core (pytest-xdist), whole files per worker: tests/conftest.py says why.
test: $(VENV)/.installed
	$(BIN)/python -m pytest -n auto --dist loadfile

clean:
	rm -rf $(VENV) out build *.egg-info
