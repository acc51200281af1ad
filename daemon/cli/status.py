"""``facecluster status``: the library, the engine, labels.toml's problems and the
running service, as aligned lines or ``--json``."""

from __future__ import annotations

import argparse
import json

from daemon.cli.reader import reader
from daemon.config import Config


def _engine_lines(cfg: Config, store_engine: str, svc) -> list[tuple[str, str]]:  # noqa: ANN001
    from daemon.indexer import EngineError, engine_id_for
    from daemon.indexer.engine import unmeasured_note

    current = svc.engine if svc is not None and svc.engine else store_engine
    lines = [("engine", current)]
    try:
        upcoming = engine_id_for(cfg.engine)
    except EngineError as e:
        lines.append(("engine (next)", f"ERROR {e}"))
        upcoming = current
    if upcoming != current:
        when = "reload (SIGHUP) or restart" if svc is not None else "start"
        lines.append(("engine (next)", f"{upcoming}: the model files changed; the next "
                      f"{when} uses it and re-embeds every photo"))
    note = unmeasured_note(upcoming) or unmeasured_note(current)
    if note:
        lines.append(("engine note", note))
    return lines


def _failed_photos(pipeline) -> list[dict]:  # noqa: ANN001
    from daemon.stages.sync import given_up

    return [
        {"path": str(r.path), "reason": r.error or "unknown", "will_retry": not given_up(r)}
        for r in pipeline.store.iter_photos()
        if r.status == "failed"
    ]


def _last_scan(status: dict, svc) -> str:  # noqa: ANN001
    if svc is not None and svc.phase in ("starting", "reconciling", "indexing"):
        return f"in progress ({svc.message})"
    return status["last_scan"] or "never"


def cmd_status(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.service.status import read_service_status

    with reader(cfg) as pipeline:
        status = pipeline.status().as_dict()
        problems = pipeline.labels_problems()
        broken = pipeline.labels_error is not None
        failed = _failed_photos(pipeline) if args.failed or args.json else []
    svc = read_service_status(cfg.state_dir)
    status["service"] = svc.as_dict() if svc is not None else None
    status["labels_problems"] = problems
    status["config"] = str(cfg.config_path) if cfg.config_path else None
    engine_lines = _engine_lines(cfg, status["engine"], svc)
    status["engine_notes"] = {k: v for k, v in engine_lines[1:]}
    if args.json:
        status["failed_photos"] = failed
        print(json.dumps(status, indent=2, default=str))
        return 0
    photos = ", ".join(f"{n} {k}" for k, n in sorted(status["photos"].items())) or "none"
    lines = [
        *engine_lines,
        ("photos", photos),
        ("faces", status["faces"]),
        ("people", status["people"]),
        ("last scan", _last_scan(status, svc)),
        ("last clustering", status["last_recluster"] or "never"),
    ]
    lines += _labels_lines(problems, broken)
    for c in status.get("identity_conflicts") or []:  # see daemon.people.identity.conflict
        lines.append(("CONFLICT", c["message"]))
    if svc is None:
        lines.append(("service", "not running"))
    else:
        lines.append(("service", f"pid {svc.pid}, {svc.phase}, queue {svc.queue_length}"))
        lines += _indexing_lines(svc.indexing)
    for key, value in lines:
        print(f"{key + ':':<17}{value}")
    if args.failed:
        print(f"\nfailed photos ({len(failed)}):" if failed else "\nno failed photos")
        for f in failed:
            retry = "will retry" if f["will_retry"] else "until the file changes"
            print(f"  {f['path']}\n      {f['reason']} ({retry})")
    elif status["photos"].get("failed"):
        print("(`facecluster status --failed` lists the failed photos and why)")
    return 0


def _indexing_lines(indexing: dict) -> list[tuple[str, str]]:
    """The cluster's part of ``status``: its workers, or why the local pool stands in."""
    if indexing.get("lost"):
        return [("cluster", f"LOST, indexing on this machine: {indexing['lost']}")]
    if indexing.get("mode") != "cluster":
        return []
    workers = indexing.get("workers", [])
    out = [("cluster", f"{indexing.get('scheduler', '?')}, {len(workers)} worker(s)")]
    out += [("  worker", f"{w['name']}: {w['photos_per_s']} photos/s") for w in workers]
    out += [("  refused", f"{a}: {why}") for a, why in indexing.get("refused", {}).items()]
    return out


def _labels_lines(problems: list[str], broken: bool) -> list[tuple[str, str]]:
    """labels.toml's problems as status rows: one row, each problem on a line of its own."""
    if not problems:
        return []
    note = " (the last good labels stay in force until it is fixed)" if broken else ""
    if len(problems) == 1:
        return [("labels.toml", f"ERROR {problems[0]}{note}")]
    indent = "\n" + " " * 19
    return [("labels.toml", f"ERROR {len(problems)} problems{note}:"
             + "".join(indent + p for p in problems))]


