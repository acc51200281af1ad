"""Naming and identity together: people.toml and ``status`` carry both features' lines.

The identity anchors report a conflict (two named people in one cluster) in people.toml
and in ``facecluster status``; the naming work keeps hidden people out of people.toml,
counts each person's own faces and names labels.toml ids the store never had. Neither
may push the other's lines out.
"""

from __future__ import annotations

from pathlib import Path

from daemon.cli.commands import main
from daemon.config import load_config
from daemon.stages.pipeline import Pipeline
from tests.test_identity import _add, _build, _person_of


def _write_config(root: Path, eps: float = 0.0) -> Path:
    (root / "photos").mkdir(exist_ok=True)
    path = root / "config.toml"
    extra = f"[clustering]\neps = {eps}\n" if eps else ""
    path.write_text(f'watch = ["photos"]\nworkers = 1\n{extra}')
    return path


def test_conflict_hidden_person_and_unknown_id_all_reported(tmp_path: Path, capsys) -> None:
    cfg = load_config(_write_config(tmp_path))
    with Pipeline(cfg, create=True) as p:
        _add(p, "a3", [0])  # Ann has more faces than Bob
        _build(p)
        ids = _person_of(p)
        a, b, c = ids[("a0", 0)], ids[("b0", 0)], ids[("c0", 0)]
        cfg.labels_file.write_text(
            f'[people]\nperson-{a:04d} = "Ann"\nperson-{b:04d} = "Bob"\n'
            f"person-{c:04d} = {{ hide = true }}\nperson-0099 = \"Zed\"\n"
        )
        assert p.reload_labels() is None
        assert p.unknown_labelled() == [
            "line 5: person-0099 is not a known person (a typo? see `facecluster people`)"
        ]
        p.write_albums()
        # Their photo together would keep Ann and Bob apart at any eps (two faces of one
        # photo are two people, issue 11), and this test needs them glued together.
        p.remove([cfg.watch[0] / "ab"])
    # A much looser eps makes one cluster of everybody: a conflict for the anchors.
    loose = load_config(_write_config(tmp_path, eps=1.99))
    with Pipeline(loose) as p:
        p.recluster()
        p.write_albums()
        rows = {r.key: r for r in p.people()}
        owned = sum(1 for f in p.store.faces() if f.person_id is not None)
        conflicts = p.status().identity_conflicts
    assert len(conflicts) == 1 and conflicts[0]["names"][:2] == ["Ann", "Bob"]
    hidden = rows[f"person-{c:04d}"]
    assert hidden.hidden and hidden.album is None and hidden.faces == 2
    assert sum(r.faces for r in rows.values()) == owned  # nothing excluded: every face counts

    people_file = (tmp_path / "state" / "people.toml").read_text()
    assert f"# CONFLICT: person-{a:04d} (Ann) and person-{b:04d} (Bob)" in people_file
    assert f"person-{c:04d} = " not in people_file  # hidden on purpose: nothing to do

    assert main(["--config", str(tmp_path / "config.toml"), "status"]) == 0
    out = capsys.readouterr().out
    assert f"CONFLICT:        person-{a:04d} (Ann) and person-{b:04d} (Bob)" in out
    assert "person-0099 is not a known person" in out

