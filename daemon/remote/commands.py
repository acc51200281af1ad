"""The command line of the cluster: ``facecluster worker`` and ``facecluster cluster certs``.

Kept here so ``daemon/cli.py`` only registers them; Dask is imported when they run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from daemon.config import Config

EXTRA_HINT = ("the cluster extra is not installed: "
              "pip install 'facecluster[cluster]' (or .[cluster])")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``worker`` and ``cluster`` on the main parser."""
    wo = sub.add_parser("worker", help="lend this machine's cores to a service (Dask)")
    wo.add_argument("scheduler", help="the service's scheduler: tcp://127.0.0.1:8786, tls://nas:8786")
    wo.add_argument("--processes", type=int, default=0, metavar="N",
                    help="index worker processes (default: every core)")
    wo.add_argument("--map", action="append", default=[], metavar="THEIRS=MINE",
                    help="the service's photo folder = the same folder here (repeatable)")
    wo.add_argument("--listen", metavar="HOST", help="address to listen on (default: the "
                    "interface facing the scheduler)")
    for name in ("ca", "cert", "key"):
        wo.add_argument(f"--tls-{name}", metavar="FILE", help=f"TLS {name} file")
    cl = sub.add_parser("cluster", help="cluster helpers (certificates)")
    csub = cl.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    ce = csub.add_parser("certs", help="make a CA and certificates for the service and workers")
    ce.add_argument("dir", type=Path, help="folder to write them to")
    ce.add_argument("--worker", action="append", default=[], metavar="NAME",
                    help="a worker to make a certificate for (repeatable; default: worker-1)")
    ce.add_argument("--days", type=int, default=3650, help="validity (default: 3650)")


def _path_map(cfg: Config, pairs: list[str]) -> dict[str, str]:
    out = dict(cfg.cluster.path_map)
    for pair in pairs:
        theirs, sep, mine = pair.partition("=")
        if not sep or not Path(theirs).is_absolute() or not Path(mine).is_absolute():
            raise ValueError(f"--map {pair!r}: expected /their/folder=/my/folder")
        out[theirs] = mine
    return out


def _tls(cfg: Config, args: argparse.Namespace) -> tuple[str, str, str] | None:
    files = [args.tls_ca or cfg.cluster.tls_ca, args.tls_cert or cfg.cluster.tls_cert,
             args.tls_key or cfg.cluster.tls_key]
    if not any(files):
        return None
    if not all(files):
        raise ValueError("--tls-ca, --tls-cert and --tls-key go together")
    for f in files:
        if not Path(f).is_file():
            raise ValueError(f"{f} is not a file")
    return (str(Path(files[0]).resolve()), str(Path(files[1]).resolve()),
            str(Path(files[2]).resolve()))


def cmd_worker(cfg: Config, args: argparse.Namespace) -> int:
    """``facecluster worker SCHEDULER``: index for a service until stopped."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        print(f"facecluster: error: {EXTRA_HINT}", file=sys.stderr)
        return 1
    from daemon.remote.worker import WorkerPlan, WorkerRefused, run

    try:
        plan = WorkerPlan(args.scheduler, cfg.engine, path_map=_path_map(cfg, args.map),
                          tls=_tls(cfg, args), host=args.listen,
                          processes=args.processes or os.cpu_count() or 1)
        run(plan)
    except (ValueError, WorkerRefused) as e:
        print(f"facecluster: error: worker refused: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_cluster(cfg: Config, args: argparse.Namespace) -> int:
    """``facecluster cluster certs DIR``."""
    try:
        from daemon.remote.certs import make_certs
    except ImportError:
        print(f"facecluster: error: {EXTRA_HINT}", file=sys.stderr)
        return 1
    try:
        written = make_certs(args.dir, ["service", *(args.worker or ["worker-1"])],
                             days=args.days)
    except ValueError as e:
        print(f"facecluster: error: {e}", file=sys.stderr)
        return 2
    for p in written:
        print(p)
    print(f"\nOn the service: [cluster] tls_ca = \"{args.dir / 'ca.pem'}\", tls_cert = "
          f"\"{args.dir / 'service.pem'}\", tls_key = \"{args.dir / 'service.key'}\".\n"
          "Copy ca.pem and a worker's NAME.pem and NAME.key to that machine only; "
          "ca.key stays here (it can sign new members).")
    return 0
