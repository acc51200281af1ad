"""The container tests run only from ``make test-container`` (FACECLUSTER_CONTAINER_TESTS=1):
they build images for minutes, so plain ``make test`` leaves them out instead of running
them twice in CI. Where podman cannot run, they skip, saying why."""

from __future__ import annotations

import os

import pytest
from podman import base_image, build_image, why_not

if os.environ.get("FACECLUSTER_CONTAINER_TESTS") != "1":
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def podman_ready() -> None:
    reason = why_not()
    if reason:
        pytest.skip(f"containers cannot run here: {reason}")


@pytest.fixture(scope="session")
def image(podman_ready: None) -> str:
    """The project's image, built on the local Debian base."""
    return build_image(base_image())
