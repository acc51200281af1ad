# The two commands a user needs:  `make run`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Your own settings go in config.local.toml (ignored by git, so `git pull` never collides
# with them); config.toml is the project's documented defaults. Or: make run CONFIG=x.toml
CONFIG ?= $(if $(wildcard config.local.toml),config.local.toml,config.toml)

.PHONY: run test install lint bench clean status people

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Set up, create the photo folder if missing (saying once where photos and albums go),
# then run the service in the foreground. Nothing is downloaded: YuNet ships in models/
# and the dlib models come with their Python package, so this works offline.
run: install
	$(PY) -m daemon --config $(CONFIG) run --create-folders

# What the service is doing, and who it found (any other command: .venv/bin/facecluster).
status: install
	$(VENV)/bin/facecluster --config $(CONFIG) status

people: install
	$(VENV)/bin/facecluster --config $(CONFIG) people

# Set up and run the whole test suite. Real-photo tests find ../shared through
# FACECLUSTER_TESTDATA and skip, saying why, when it is absent.
test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
