"""The shipped service files name what an install really makes: the launchd plist
parses and runs a command line the CLI accepts, the systemd unit and its install script
agree on paths, and the container config is valid."""

from __future__ import annotations

import configparser
import plistlib
from pathlib import Path

import pytest
import tomllib

from daemon.cli.parser import build_parser
from daemon.config import load_config

REPO = Path(__file__).resolve().parent.parent
PLIST = REPO / "launchd" / "org.facecluster.daemon.plist"
UNIT = REPO / "systemd" / "facecluster.service"


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit


def test_launchd_plist_parses_and_runs_a_command_the_cli_accepts():
    plist = plistlib.loads(PLIST.read_bytes())
    assert plist["Label"] == PLIST.stem
    program, *args = plist["ProgramArguments"]
    # The venv `make install` makes, at the documented prefix.
    assert program.endswith("/.venv/bin/facecluster")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "facecluster" in scripts  # what pip installs into .venv/bin
    parsed = build_parser().parse_args(args)
    assert parsed.command == "run" and str(parsed.config).endswith("config.toml")
    log_dir = Path(plist["StandardOutPath"]).parent
    assert log_dir.parts[-2:] == ("Library", "Logs")
    assert plist["KeepAlive"] == {"SuccessfulExit": False}  # a clean stop stays stopped
    assert 0 < plist["ExitTimeOut"] <= 30


def test_systemd_unit_can_serve_the_page_and_write_labels():
    service = _unit()["Service"]
    families = service["RestrictAddressFamilies"].split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
    assert service["IPAddressAllow"] == "localhost"
    writable = [Path(p) for p in service["ReadWritePaths"].split()]
    cfg = load_config(REPO / "systemd" / "config.toml")
    for path in (cfg.state_dir, cfg.albums_dir, cfg.labels_file.parent):
        assert any(path == w or path.is_relative_to(w) for w in writable), path
    assert cfg.web.enabled and cfg.web.listen == "127.0.0.1"
    assert service["ExecStart"].split()[0] == "/opt/facecluster/.venv/bin/facecluster"
    install = (REPO / "systemd" / "install.sh").read_text()
    assert '"$PREFIX/.venv"' in install and "PREFIX=${PREFIX:-/opt/facecluster}" in install
    assert str(cfg.engine.models_dir) == "/opt/facecluster/models"


@pytest.mark.parametrize("path", ["container/config.toml", "systemd/config.toml"])
def test_shipped_configs_are_valid(path: str):
    cfg = load_config(REPO / path)
    assert cfg.web.enabled
    if cfg.web.listen == "0.0.0.0":  # reachable from outside: the password is required
        assert cfg.web.password_file is not None


def test_compose_file_mounts_what_the_image_config_expects_and_holds_no_password():
    yaml = pytest.importorskip("yaml")  # PyYAML comes with the cluster extra (Dask)
    text = (REPO / "compose.yaml").read_text()
    service = yaml.safe_load(text)["services"]["facecluster"]
    mounts = {v.split(":")[1]: v for v in service["volumes"]}
    cfg = load_config(REPO / "container" / "config.toml")
    assert mounts[str(cfg.watch[0])].endswith(":ro")  # originals are only read
    for path in (cfg.albums_dir, cfg.state_dir, cfg.labels_file.parent):
        assert not mounts[str(path)].endswith(":ro"), path
    assert {"PUID", "PGID"} <= set(service["environment"])
    secret = service["secrets"][0]
    assert cfg.web.password_file == Path("/run/secrets") / secret
    assert "password" not in " ".join(str(v) for v in service["environment"].values())
    port = str(cfg.web.port)
    assert any(p.endswith(f":{port}") for p in service["ports"])
    assert service["stop_grace_period"] == "10s"
