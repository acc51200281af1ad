# The two commands a user needs:  `make run`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# config.toml is the project's documented defaults; your own settings go in
# config.local.toml beside it (ignored by git, so `git pull` never collides with them),
# which overrides it key by key: the command line and the running service read both,
# and the service notices either changing (or appearing). Or: make run CONFIG=x.toml
# (then x.local.toml is the file over it).
CONFIG ?= config.toml

.PHONY: run test install lint bench clean status people lock test-latest test-container \
	install-service

# Installs are pinned: requirements-dev.lock holds every package (the application's,
# the optional Dask extra's and the tests') at one exact version with its hashes, so a
# release made today cannot change what `make test` or a user's `make run` gets.
# pyproject.toml keeps the ranges the code supports; `make lock` turns them into pins.
LOCK ?= requirements-dev.lock

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
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

# The container image and the systemd unit, each tested as installed (tests/container):
# builds a local Debian base with mmdebstrap (no registry is reachable from CI), the
# project's image on it, and runs them with podman. Skips, saying why, without podman.
test-container: install
	FACECLUSTER_CONTAINER_TESTS=1 $(PY) -m pytest -q -s -p no:cacheprovider tests/container

# The systemd service as documented (README "Install: systemd"): the facecluster user,
# its folders, /opt/facecluster with its venv, and the unit. Run as root.
install-service:
	sh systemd/install.sh

# The newest release of every dependency, in a venv of its own, so a breaking release
# shows up here before users meet it. Not part of CI, which stays on the lock files.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip setuptools
	.venv-latest/bin/python -m pip install --quiet --upgrade -e '.[test,cluster]'
	.venv-latest/bin/python -m pytest -q -p no:cacheprovider

# Re-pin after changing pyproject.toml: requirements.lock is what the container image
# installs, requirements-dev.lock what `make install` does. uv resolves for every
# platform and Python the project supports (--universal), with hashes for each wheel.
lock: install
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra cluster --universal --python-version 3.10 \
		--generate-hashes --quiet -o requirements.lock
	printf 'setuptools>=77\n' | $(VENV)/bin/uv pip compile pyproject.toml - --extra cluster \
		--extra test --universal --python-version 3.10 --generate-hashes --quiet \
		-o requirements-dev.lock

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .venv-latest .pytest_cache .ruff_cache *.egg-info
