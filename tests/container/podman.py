"""Podman for the container tests: whether it can run here, the local base images, the
project's image, and waiting for things to happen.

No registry is reachable from CI, so the official python image cannot be pulled: the
base is a minimal Debian made by ``container/base.sh`` (mmdebstrap) and kept between
runs under a tag that names the script's hash, so it is rebuilt only when the recipe
changes. Podman's own layer cache makes an unchanged project image quick to rebuild.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONF = Path(__file__).with_name("containers.conf")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def environment() -> dict[str, str]:
    """The environment for podman: runc and explicit ulimits (CONTAINERS_CONF)."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONF))
    return env


def podman(*args: str, check: bool = True, timeout: float = 600,
           capture: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS``; raises with its output when it fails and ``check`` is set."""
    done = subprocess.run(["podman", *args], env=environment(), text=True, timeout=timeout,
                          capture_output=capture)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}):\n"
                             f"{done.stdout}\n{done.stderr}")
    return done


def why_not() -> str | None:
    """Why the container tests cannot run on this machine, or None when they can."""
    for tool in ("podman", "mmdebstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install podman mmdebstrap runc)"
    if os.geteuid() != 0:
        return "the container tests need root (rootful podman, mmdebstrap)"
    try:
        info = podman("info", check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"podman does not answer: {e}"
    if info.returncode != 0:
        return f"podman cannot run here: {info.stderr.strip()[:300]}"
    return None


def base_image(flavour: str = "") -> str:
    """The local Debian base image (``flavour`` "systemd" adds systemd), built if missing."""
    recipe = (REPO / "container" / "base.sh").read_bytes() + flavour.encode()
    tag = f"localhost/facecluster-base{'-' + flavour if flavour else ''}:" + \
        hashlib.sha256(recipe).hexdigest()[:12]
    if podman("image", "exists", tag, check=False).returncode != 0:
        done = subprocess.run(["sh", str(REPO / "container" / "base.sh"), tag, flavour],
                              env=environment(), text=True, capture_output=True, timeout=1200)
        if done.returncode != 0:
            raise AssertionError(f"container/base.sh failed:\n{done.stdout}\n{done.stderr}")
    return tag


def build_args() -> list[str]:
    """What a build needs to reach the package index the host reaches."""
    args = ["--network=host"]
    if HOST_CA.is_file():
        args += ["-v", f"{HOST_CA}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]
    if os.environ.get("PIP_INDEX_URL"):
        args += ["--build-arg", f"PIP_INDEX_URL={os.environ['PIP_INDEX_URL']}"]
    return args


def build_image(base: str, tag: str = "localhost/facecluster:test") -> str:
    """Build the project's Containerfile on ``base``; docker format keeps the HEALTHCHECK.

    The image this replaces is removed, so repeated CI runs on one machine do not pile
    up images (the build cache is kept).
    """
    before = podman("image", "inspect", "--format", "{{.Id}}", tag, check=False).stdout.strip()
    podman("build", "--format", "docker", *build_args(), "--build-arg", f"BASE={base}",
           "-t", tag, "-f", str(REPO / "Containerfile"), str(REPO), timeout=1800)
    after = podman("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    if before and before != after:
        podman("rmi", before, check=False)
    return tag


def image_size(tag: str) -> int:
    """The image's size in bytes, as podman reports it (uncompressed layers)."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())


def free_port() -> int:
    """A loopback port nobody listens on now (the containers share the host's network)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], object], timeout: float = 180,
             every: float = 2.0) -> object:
    """Poll ``check`` until it returns something true; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
