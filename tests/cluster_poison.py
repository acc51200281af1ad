"""A Dask worker preload for tests: a photo named ``poison*`` kills the worker process.

It stands in for a photo that crashes a native decoder (which we cannot make on demand):
test_cluster_index.py starts ``facecluster worker`` with
``DASK_DISTRIBUTED__WORKER__PRELOAD`` naming this file. Never used by the product.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def dask_setup(worker) -> None:  # noqa: ANN001 - distributed.Worker
    import daemon.remote.task as task

    real = task.index_one

    def index_one(path: Path, engine, detection):  # noqa: ANN001, ANN202
        if Path(path).name.startswith("poison"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, engine, detection)

    task.index_one = index_one
