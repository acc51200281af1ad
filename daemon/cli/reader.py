"""What the commands share: the one-line error, and the store opened for reading.

A reading command (``status``, ``people``, ``export``, ``review``) must never create a
store: without one it says which config it looked for.
"""

from __future__ import annotations

from daemon.config import Config


class UserError(Exception):
    """A failure to report as one line, without a traceback."""


def config_note(cfg: Config) -> str:
    """Which config file is in force, or where none was found."""
    from daemon.config import searched_paths

    if cfg.config_path is not None:
        return f"config {cfg.config_path}"
    looked = " and ".join(str(p) for p in searched_paths())
    return f"no config file (looked for {looked}; using the defaults)"


def reader(cfg: Config):  # noqa: ANN201 - a Pipeline, imported lazily
    """The pipeline for a reading command, which must never create a store.

    It describes the store as it is: the engine is the one the store was indexed with
    (a model file that appeared since changes the engine only at the next start).
    """
    from daemon.stages.pipeline import Pipeline, _has_traces
    from daemon.store.db import DB_NAME

    db = cfg.state_dir / DB_NAME
    # A deleted store (albums left behind) is the Pipeline's to report: "rebuild".
    if not db.exists() and not _has_traces(cfg):
        raise UserError(
            f"no photos indexed yet: there is no store at {db} ({config_note(cfg)}); "
            "start the service (`make run`) or run `facecluster scan`"
        )
    return Pipeline(cfg, as_indexed=True, report_labels=False)
