"""The naming commands and the reading commands' honesty (issue 10, bugs 3-9).

One small real library (obama, biden, kit, one unreadable photo) is scanned once with
YuNet + dlib; each test works on its own copy of the state, album tree and labels.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from daemon.cli.commands import main
from daemon.people.labels import LAST_GOOD_NAME

REPO = Path(__file__).resolve().parent.parent


# -- without any data ---------------------------------------------------------------------


@pytest.mark.parametrize("command", [["status"], ["people"], ["export", "x", "--zip", "x.zip"],
                                     ["name", "person-0001", "Ann"]])
def test_reading_commands_never_create_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, command
) -> None:
    """Bug 8: in a folder without a config nothing is created and the message says so."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACECLUSTER_CONFIG", raising=False)
    assert main(command) == 1
    err = capsys.readouterr().err
    assert "no photos indexed yet" in err
    assert str(tmp_path / "config.local.toml") in err and str(tmp_path / "config.toml") in err
    assert list(tmp_path.iterdir()) == []


def test_first_run_creates_the_photo_folder_and_says_so_once(tmp_path: Path) -> None:
    from daemon.cli import firstrun
    from daemon.config import from_dict

    cfg = from_dict({"watch": ["photos"], "albums_dir": "albums"}, tmp_path)
    message = firstrun.prepare(cfg)
    assert (tmp_path / "photos").is_dir() and message is not None
    assert str(tmp_path / "photos") in message and str(tmp_path / "albums") in message
    assert firstrun.prepare(cfg) is None  # once


# -- on a scanned library -----------------------------------------------------------------

PEOPLE = {
    "obama": ("obama", ["obama.jpg", "obama2.jpg", "obama-480p.jpg"]),
    "biden": ("biden", ["biden.jpg", "biden2.jpg"]),
    "kit": ("kit_harington", ["john1.jpeg", "john2.jpeg"]),
}


def _config(root: Path, models_dir: Path, photos: Path, extra: str = "") -> Path:
    cfg = root / "config.toml"
    cfg.write_text(
        f'watch = ["{photos}"]\nalbums_dir = "albums"\nstate_dir = "state"\n'
        f'labels_file = "labels.toml"\nworkers = 1\n{extra}'
        f'[engine]\nmodels_dir = "{models_dir}"\n'
    )
    return cfg


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory, shared_photos: Path, yunet_file: Path):
    root = tmp_path_factory.mktemp("scanned")
    photos = root / "photos"
    for folder, (src, names) in PEOPLE.items():
        (photos / folder).mkdir(parents=True)
        for n in names:
            shutil.copy(shared_photos / "known" / src / n, photos / folder / n)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    models = root / "models"
    models.mkdir()
    shutil.copy(yunet_file, models / yunet_file.name)
    cfg = _config(root, models, photos)
    assert main(["--config", str(cfg), "scan"]) == 0
    return root, photos, models


@pytest.fixture()
def lib(scanned, tmp_path: Path):
    """A private copy of the scanned state and albums; returns (config, photos, root)."""
    root, photos, models = scanned
    for name in ("state", "albums"):
        shutil.copytree(root / name, tmp_path / name, symlinks=True)
    return _config(tmp_path, models, photos), photos, tmp_path


def _people(cfg: Path, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["--config", str(cfg), "people", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _who(rows: list[dict], photo: str) -> dict:
    return next(r for r in rows if r["sample"] and Path(r["sample"]).parent.name == photo)


def test_name_merge_hide_and_not_edit_labels_and_albums(lib, capsys) -> None:
    cfg, photos, root = lib
    labels = root / "labels.toml"
    labels.write_text("# my people\n[people]  # keep\n")
    rows = _people(cfg, capsys)
    obama, biden, kit = (_who(rows, p) for p in ("obama", "biden", "kit"))
    assert obama["sample_face"].startswith("face-")  # bug 6: face ids in people --json

    assert main(["--config", str(cfg), "name", obama["key"], "Barack"]) == 0
    assert main(["--config", str(cfg), "merge", biden["key"], kit["key"], "--name", "Friends"]) == 0
    text = labels.read_text()
    assert text.startswith("# my people\n[people]  # keep\n")
    assert main(["--config", str(cfg), "scan"]) == 0
    albums = {p.name for p in (root / "albums").iterdir() if not p.name.startswith(".")}
    assert {"Barack", "Friends"} <= albums

    rows = _people(cfg, capsys)
    by_key = {r["key"]: r for r in rows}
    # Bug 9: the sample of each member of a merged album shows that member.
    assert Path(by_key[biden["key"]]["sample"]).parent.name == "biden"
    assert Path(by_key[kit["key"]]["sample"]).parent.name == "kit"

    # `not` by photo (relative to the watched folder) and by name; counts follow (bug 9).
    before = by_key[obama["key"]]
    assert main(["--config", str(cfg), "not", "Barack", str(photos / "obama" / "obama2.jpg")]) == 0
    assert '"obama/obama2.jpg"' in labels.read_text()
    after = {r["key"]: r for r in _people(cfg, capsys)}[obama["key"]]
    assert after["photos"] == before["photos"] - 1 and after["faces"] == before["faces"] - 1

    # `people PERSON --faces --json`: ids, photos and boxes; then exclude one face.
    capsys.readouterr()
    assert main(["--config", str(cfg), "people", "Friends", "--faces", "--json"]) == 0
    faces = json.loads(capsys.readouterr().out)
    assert {Path(f["photo"]).parent.name for f in faces} == {"biden", "kit"}
    assert all(f["face"].startswith("face-") and len(f["box"]) == 4 for f in faces)
    one = next(f for f in faces if Path(f["photo"]).name == "john2.jpeg")
    assert main(["--config", str(cfg), "not", "Friends", one["face"]]) == 0
    assert f'"{one["face"]}"' in labels.read_text()

    # hide: "(hidden)", and people.toml never says "e.g. None".
    assert main(["--config", str(cfg), "hide", "Barack"]) == 0
    assert main(["--config", str(cfg), "scan"]) == 0
    capsys.readouterr()
    assert main(["--config", str(cfg), "people"]) == 0
    out = capsys.readouterr().out
    assert "(hidden)" in out and out.count("(hidden)") == 1
    assert "None" not in (root / "state" / "people.toml").read_text()

    # Unknown person and bad name: a clear error, labels untouched.
    text = labels.read_text()
    assert main(["--config", str(cfg), "name", "person-0999", "X"]) == 1
    assert main(["--config", str(cfg), "name", "Friends", "person-0003"]) == 1
    assert "person-0999" in capsys.readouterr().err
    assert labels.read_text() == text


def test_broken_labels_people_uses_the_last_good(lib, capsys) -> None:
    """Bug 4: while labels.toml is broken, `people` shows what the service uses."""
    cfg, photos, root = lib
    rows = _people(cfg, capsys)
    obama = _who(rows, "obama")
    (root / "labels.toml").write_text(f'[people]\n{obama["key"]} = "Barack"\n')
    assert main(["--config", str(cfg), "scan"]) == 0
    assert (root / "state" / LAST_GOOD_NAME).exists()
    (root / "labels.toml").write_text("[people\nbroken = \n")
    rows = _people(cfg, capsys)
    row = next(r for r in rows if r["key"] == obama["key"])
    assert row["name"] == "Barack" and row["album"].endswith("/Barack")
    assert Path(row["album"]).is_dir()


def test_status_reports_every_labels_problem_failed_photos_and_engine(lib, capsys) -> None:
    cfg, photos, root = lib
    (root / "labels.toml").write_text(
        "[people]\nperson-0001 = 'a'\nperson-0002 = 3\nperson-0999 = 'typo'\nbob = 1\n"
    )
    capsys.readouterr()
    assert main(["--config", str(cfg), "status", "--failed"]) == 0
    out = capsys.readouterr().out
    # Bug 5: every broken line at once.
    assert "line 3" in out and "line 5" in out
    # Bug 7: the failed photo and its reason.
    assert "broken.jpg" in out and "failed photos (1)" in out
    (root / "labels.toml").write_text("[people]\nperson-0999 = 'typo'\n")
    assert main(["--config", str(cfg), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert any("person-0999 is not a known person" in p for p in status["labels_problems"])
    assert status["failed_photos"][0]["path"].endswith("broken.jpg")
    assert status["failed_photos"][0]["reason"]


def test_a_model_change_before_reload_keeps_status_and_people_honest(lib, capsys) -> None:
    """Bug 3: the models change but nothing re-indexed yet: describe the store as it is."""
    cfg, photos, root = lib
    empty = root / "no-models"
    empty.mkdir()
    cfg.write_text(cfg.read_text().replace(str(photos.parent / "models"), str(empty)))
    capsys.readouterr()
    assert main(["--config", str(cfg), "status"]) == 0
    out = capsys.readouterr().out
    assert "engine:          yunet-2023mar+dlib-resnet-v1" in out
    assert "dlib-hog+dlib-resnet-v1: the model files changed" in out
    rows = _people(cfg, capsys)
    assert rows and all(r["album"] and not r["hidden"] for r in rows)


def test_commands_print_no_json_log_lines_into_a_pipe(lib) -> None:
    """Bug 9: `facecluster status | ...` gets the status, not the log."""
    cfg, photos, root = lib
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for command in (["status"], ["people"]):
        res = subprocess.run(
            [sys.executable, "-m", "daemon", "--config", str(cfg), *command],
            capture_output=True, text=True, env=env, timeout=120,
        )
        assert res.returncode == 0, res.stderr
        assert '"event"' not in res.stdout + res.stderr
        assert "engine_chosen" not in res.stdout + res.stderr


def test_people_file_never_says_none_for_a_hidden_person(lib, capsys) -> None:
    """Bug 9: an unnamed person the user hid has no album; people.toml must not list
    them as "e.g. None" (they are dealt with), while the others keep a real sample."""
    cfg, photos, root = lib
    kit = _who(_people(cfg, capsys), "kit")
    assert main(["--config", str(cfg), "hide", kit["key"]]) == 0
    assert main(["--config", str(cfg), "scan"]) == 0
    text = (root / "state" / "people.toml").read_text()
    assert "None" not in text and kit["key"] not in text
    assert "e.g. " in text  # the other unnamed people are still listed, with a photo
    row = next(r for r in _people(cfg, capsys) if r["key"] == kit["key"])
    assert row["hidden"] and row["album"] is None and row["sample"]


def test_naming_with_a_taken_name_says_it_merges(lib, capsys) -> None:
    cfg, photos, root = lib
    rows = _people(cfg, capsys)
    obama, biden = _who(rows, "obama"), _who(rows, "biden")
    assert main(["--config", str(cfg), "name", obama["key"], "Joe"]) == 0
    capsys.readouterr()
    assert main(["--config", str(cfg), "name", biden["key"], " Joe "]) == 0
    out = capsys.readouterr().out
    assert f"{obama['key']} is also called 'Joe'" in out


def test_last_scan_while_the_service_indexes() -> None:
    """Bug 9: `status` said "last scan: never" while the service was busy indexing."""
    from daemon.cli.status import _last_scan
    from daemon.service.status import ServiceStatus

    def svc(phase: str, message: str) -> ServiceStatus:
        return ServiceStatus(1, "t", "t", phase, message, 0, None, None, "e")

    assert _last_scan({"last_scan": None}, svc("indexing", "indexing 40/900")) == (
        "in progress (indexing 40/900)"
    )
    assert _last_scan({"last_scan": "2026-01-01T00:00:00+00:00"}, svc("idle", "idle")) == (
        "2026-01-01T00:00:00+00:00"
    )
    assert _last_scan({"last_scan": None}, None) == "never"


def test_export_into_a_folder_or_a_missing_one(lib, capsys) -> None:
    """Issue 21 items 13 and 24: `--zip dir/` writes dir/<album>.zip; a missing folder
    is named, not a bare ENOENT on a temporary file."""
    cfg, photos, root = lib
    obama = _who(_people(cfg, capsys), "obama")
    out = root / "out"
    out.mkdir()
    capsys.readouterr()
    assert main(["--config", str(cfg), "export", obama["key"], "--zip", f"{out}/"]) == 0
    assert os.listdir(out) == [f"{obama['key']}.zip"]
    assert main(["--config", str(cfg), "export", obama["key"], "--zip", str(out)]) == 0
    assert os.listdir(out) == [f"{obama['key']}.zip"]
    capsys.readouterr()
    missing = root / "nodir" / "b.zip"
    assert main(["--config", str(cfg), "export", obama["key"], "--zip", str(missing)]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "nodir" in err and ".facecluster-tmp" not in err
    assert not (root / "nodir").exists()


def test_export_reads_the_store_once(lib, capsys, monkeypatch) -> None:
    """The album is found and its photos known from one read of the store's faces."""
    from daemon.stages.reflect import Reflect

    cfg, photos, root = lib
    obama = _who(_people(cfg, capsys), "obama")
    reads = []
    real = Reflect._read_faces
    monkeypatch.setattr(Reflect, "_read_faces", lambda self: reads.append(1) or real(self))
    capsys.readouterr()
    assert main(["--config", str(cfg), "export", obama["key"], "--zip", str(root / "o.zip")]) == 0
    assert len(reads) == 1
    assert f"of {Path(obama['album']).name} to" in capsys.readouterr().out
    assert zipfile.is_zipfile(root / "o.zip")


def test_config_after_the_command_and_hints_that_can_be_pasted(lib, capsys) -> None:
    """Issue 21 items 16 and 17."""
    cfg, photos, root = lib
    obama = _who(_people(cfg, capsys), "obama")
    assert main(["name", obama["key"], "Joe Biden", "--config", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["status", "--config", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"] == str(cfg)
    assert main(["--config", str(cfg), "not", "Joe Biden", "face-999999"]) == 1
    assert "`facecluster people 'Joe Biden' --faces`" in capsys.readouterr().err


def _run(cfg: Path, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "daemon", "--config", str(cfg), *command],
        capture_output=True, text=True, env=env, timeout=120,
    )


def test_every_labels_problem_is_reported_once(lib, capsys) -> None:
    """Issue 21 item 20: a `hidden = true` typo and an unknown id, both, each once."""
    cfg, photos, root = lib
    obama = _who(_people(cfg, capsys), "obama")
    (root / "labels.toml").write_text(
        f"[people]\n{obama['key']} = {{ name = 'Barack', hidden = true }}\n"
        "person-0099 = 'Typo'\n"
    )
    status = _run(cfg, "status")
    assert status.returncode == 0, status.stderr
    both = status.stdout + status.stderr
    assert both.count("unknown option 'hidden'") == 1, both
    assert both.count("person-0099 is not a known person") == 1, both
    assert "labels_invalid" not in both and status.stderr == ""
    people = _run(cfg, "people")
    assert people.returncode == 0, people.stderr
    assert (people.stdout + people.stderr).count("unknown option 'hidden'") == 1


def test_people_shows_the_sample_column(lib, capsys) -> None:
    """Issue 21 item 19: the README promises a sample photo and its face-N per person."""
    cfg, photos, root = lib
    rows = _people(cfg, capsys)
    assert main(["--config", str(cfg), "people"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "sample" in out[0].split()
    for r in rows:
        line = next(x for x in out if x.startswith(r["key"] + " "))
        rel = Path(r["sample"]).relative_to(photos).as_posix()
        assert f"{rel} ({r['sample_face']})" in line


def test_log_lines_never_leak_into_command_output(lib, tmp_path: Path) -> None:
    """Issue 21 item 18: on a terminal `scan` printed the workers' engine_chosen lines
    glued onto the progress bar; piped, `rebuild` printed raw JSON log lines."""
    import pty

    cfg, photos, root = lib
    extra = root / "more-photos"  # photos to index and failures to log while the bar is drawn
    extra.mkdir()
    for i in range(6):
        shutil.copy(photos / "obama" / "obama.jpg", extra / f"o{i}.jpg")
        (extra / f"broken{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    # Two index workers: their own logging is what leaked.
    text = cfg.read_text().replace("workers = 1", "workers = 2")
    cfg.write_text(text.replace(f'watch = ["{photos}"]', f'watch = ["{photos}", "{extra}"]'))
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "--config", str(cfg), "scan"],
            stdin=secondary, stdout=secondary, stderr=secondary, env=env,
        )
        os.close(secondary)
        out = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=120) == 0, out
    finally:
        os.close(primary)
    text = out.decode("utf-8", "replace")
    assert "engine_chosen" not in text
    failures = [x for x in re.split(r"[\r\n]", text) if "photo_failed" in x]
    assert failures, text  # warnings are still shown
    assert not [x for x in failures if "photos/s" in x or "[#" in x or "[-" in x], text

    piped = _run(cfg, "rebuild")
    assert piped.returncode == 0, piped.stderr
    lines = (piped.stdout + piped.stderr).splitlines()
    assert not [x for x in lines if x.lstrip().startswith("{")], lines
    assert "engine_chosen" not in piped.stdout + piped.stderr

