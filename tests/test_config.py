"""Config loading: defaults, path resolution and refusals that name the key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from daemon.cli.commands import main
from daemon.config import ConfigError, from_dict, load_config


def _cfg(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_repository_config_is_valid_and_matches_defaults(tmp_path: Path) -> None:
    repo_cfg = Path(__file__).resolve().parent.parent / "config.toml"
    shipped = load_config(repo_cfg)
    defaults = load_config(_cfg(tmp_path, ""))
    # The shipped file documents the defaults: same values, paths beside the file.
    assert shipped.album_mode == defaults.album_mode == "symlink"
    assert shipped.no_face == "skip"
    assert shipped.detection == defaults.detection
    assert shipped.daemon == defaults.daemon
    assert shipped.albums_dir == repo_cfg.parent / "albums"


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path, 'watch = ["a", "/abs/b"]\nstate_dir = "s"\n'))
    assert cfg.watch == (tmp_path / "a", Path("/abs/b"))
    assert cfg.state_dir == tmp_path / "s"
    assert cfg.engine.models_dir == tmp_path / "models"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('album_mod = "copy"\n', "album_mod"),
        ('album_mode = "teleport"\n', "album_mode"),
        ('no_face = "maybe"\n', "no_face"),
        ("[detection]\nmin_score = 2.0\n", "detection.min_score"),
        ('[detection]\nmin_face_px = "big"\n', "detection.min_face_px"),
        ("[daemon]\npolling = 1\n", "daemon.polling"),
        ("[engine]\nembedder = \"facenet\"\n", "engine.embedder"),
        ("[engine]\nturbo = true\n", "engine.turbo"),
        ("workers = -1\n", "workers"),
        ("engine = 3\n", "engine"),
        ('watch = []\n', "watch"),
    ],
)
def test_wrong_key_or_value_is_refused_by_name(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(_cfg(tmp_path, text))


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 2"):
        load_config(_cfg(tmp_path, 'workers = 1\nalbum_mode = "copy\n'))


def test_watched_folder_inside_albums_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="watch"):
        load_config(_cfg(tmp_path, 'albums_dir = "x"\nwatch = ["x/photos"]\n'))


def test_missing_named_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_cli_reports_bad_config_in_one_line(tmp_path: Path, capsys) -> None:
    cfg = _cfg(tmp_path, 'album_mode = "teleport"\n')
    assert main(["--config", str(cfg), "status"]) == 2
    err = capsys.readouterr().err.strip()
    assert "album_mode" in err and "teleport" in err and "\n" not in err
    assert "Traceback" not in err


def test_local_config_overrides_key_by_key_and_searched_paths_named(tmp_path, monkeypatch) -> None:
    """Issue 21 item 15: one rule, config.local.toml over config.toml, for every reader."""
    from daemon.config import searched_paths

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACECLUSTER_CONFIG", raising=False)
    assert load_config().config_path is None  # nothing there: defaults, and it says so
    assert [p.name for p in searched_paths()] == ["config.toml", "config.local.toml"]
    (tmp_path / "config.toml").write_text(
        'albums_dir = "shared-albums"\nworkers = 3\n[web]\nport = 9000\nlisten = "0.0.0.0"\n'
    )
    assert load_config().albums_dir == tmp_path / "shared-albums"
    (tmp_path / "config.local.toml").write_text('albums_dir = "my-albums"\n[web]\nport = 9001\n')
    for cfg in (load_config(), load_config("config.toml"), load_config("config.local.toml")):
        assert cfg.albums_dir == tmp_path / "my-albums"
        assert cfg.workers == 3  # not in the local file: config.toml's
        assert (cfg.web.port, cfg.web.listen) == (9001, "0.0.0.0")  # tables merge
        assert cfg.config_path == tmp_path / "config.local.toml"
        assert cfg.config_files == (tmp_path / "config.toml", tmp_path / "config.local.toml")


def test_a_bad_local_key_names_the_local_file(tmp_path: Path) -> None:
    path = _cfg(tmp_path, "workers = 1\n")
    (tmp_path / "config.local.toml").write_text("wokers = 2\n")
    with pytest.raises(ConfigError, match="config.local.toml.*wokers"):
        load_config(path)


def test_reload_reads_a_local_file_that_appeared(tmp_path: Path) -> None:
    from daemon.config import reload_config

    cfg = load_config(_cfg(tmp_path, "workers = 1\n"))
    (tmp_path / "config.local.toml").write_text("workers = 2\n")
    assert reload_config(cfg).workers == 2


def test_makefile_passes_the_main_file_so_the_local_one_applies_over_it() -> None:
    """`make run` used to pass config.local.toml alone, or config.toml alone."""
    repo = Path(__file__).resolve().parent.parent
    shown = subprocess.run(["make", "-n", "run"], cwd=repo, capture_output=True, text=True,
                           check=True).stdout
    assert "--config config.toml run" in shown


def test_config_watch_notices_edits_and_replacements(tmp_path) -> None:
    import os

    from daemon.service.filewatch import FileWatch

    f = tmp_path / "config.toml"
    f.write_text("workers = 1\n")
    watch = FileWatch(f)
    assert not watch.changed()
    f.write_text("workers = 22\n")  # in place (size changes)
    assert watch.changed() and not watch.changed()
    new = tmp_path / "new.toml"
    new.write_text("workers = 33\n")
    os.replace(new, f)  # an editor saving by rename: same size, new inode
    assert watch.changed()
    f.unlink()
    assert watch.changed()
    assert not FileWatch(None).changed()


def test_workers_zero_means_every_core_in_the_foreground_and_one_free_for_the_service(
    tmp_path,
) -> None:
    import os

    cfg = from_dict({"workers": 0}, tmp_path)
    cores = os.cpu_count() or 1
    assert cfg.worker_count == max(1, cores - 1)
    assert cfg.in_foreground().worker_count == cores
    fixed = from_dict({"workers": 3}, tmp_path)
    assert fixed.in_foreground().worker_count == 3
