# The two commands a user needs:  `make run`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= config.toml

.PHONY: run test install lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Set up, fetch the SFace/YuNet models if the network allows (else the offline dlib
# engine is used), then run the service in the foreground on the default config.
run: install
	-$(PY) -m daemon --config $(CONFIG) models fetch
	$(PY) -m daemon --config $(CONFIG) run

# Set up and run the whole test suite. Real-photo tests find ../shared through
# FACECLUSTER_TESTDATA and skip, saying why, when it is absent.
test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
