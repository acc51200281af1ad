"""``facecluster worker SCHEDULER``: this machine's cores index photos for a service.

Each worker process sits under a Dask nanny, which restarts it when a photo (or anything)
kills it; the engine is loaded once per process by :class:`EnginePlugin`. Listening is
refused anywhere but loopback unless the cluster uses TLS (:func:`require_safe`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field

import structlog

from daemon.config import EngineConfig
from daemon.indexer.pool import THREAD_ENV
from daemon.remote.settings import NO_DASHBOARD, is_loopback, parse_address, require_safe

log = structlog.get_logger(__name__)


class WorkerRefused(Exception):
    """This worker may not join: its engine differs, or the address is unsafe."""


@dataclass(frozen=True)
class WorkerPlan:
    """What ``facecluster worker`` was asked to do."""

    scheduler: str
    engine: EngineConfig
    processes: int = 1
    path_map: dict[str, str] = field(default_factory=dict)
    tls: tuple[str, str, str] | None = None
    """(ca, cert, key) files."""
    host: str | None = None
    """Where to listen for the scheduler and peers; None: the interface facing the scheduler
    (loopback for a loopback scheduler)."""


def _security(tls: tuple[str, str, str] | None):  # noqa: ANN202 - distributed.Security
    if tls is None:
        return None
    from distributed.security import Security

    ca, cert, key = tls
    return Security(tls_ca_file=ca, tls_worker_cert=cert, tls_worker_key=key,
                    tls_client_cert=cert, tls_client_key=key, require_encryption=True)


def check(plan: WorkerPlan) -> str:
    """The scheduler's address, after refusing an unsafe one (raises WorkerRefused)."""
    try:
        address = parse_address(plan.scheduler, default_scheme="tls" if plan.tls else "tcp")
        require_safe(address, tls=plan.tls is not None, what="scheduler")
        if plan.host is not None and not is_loopback(plan.host):
            require_safe(parse_address(f"{address.scheme}://{plan.host}:0"),
                         tls=plan.tls is not None, what="--listen")
    except ValueError as e:
        raise WorkerRefused(str(e)) from None
    return str(address)


async def _precheck(plan: WorkerPlan, address: str) -> None:
    """Refuse before starting anything when the service's engine (published on the
    scheduler) is not this machine's; the plugin checks again in each process."""
    from distributed.core import rpc

    from daemon.remote.fingerprint import Fingerprint, fingerprint
    from daemon.remote.task import EXPECTED_KEY, refusal

    sec = _security(plan.tls)
    args = sec.get_connection_args("client") if sec else {}
    mine = await asyncio.to_thread(fingerprint, plan.engine)
    async with rpc(address, connection_args=args, timeout=30) as scheduler:
        published = await scheduler.get_metadata(keys=[EXPECTED_KEY], default=None)
    expected = Fingerprint.from_dict(published)
    why = refusal(expected, mine) if expected is not None else None
    if why:
        log.error("cluster_worker_refused", scheduler=address, reason=why)
        raise WorkerRefused(why)


async def _serve(plan: WorkerPlan, address: str) -> None:
    from distributed import Nanny

    from daemon.remote.task import EnginePlugin, quiet_dask

    quiet_dask()
    await _precheck(plan, address)
    host = plan.host or ("127.0.0.1" if is_loopback(parse_address(address).host) else None)
    nannies = [
        Nanny(address, nthreads=1, security=_security(plan.tls), host=host,
              plugins={EnginePlugin(plan.engine, plan.path_map)},
              env={k: "1" for k in THREAD_ENV}, **NO_DASHBOARD)
        for _ in range(plan.processes)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.gather(*(n.start() for n in nannies))
    except Exception as e:
        raise WorkerRefused(f"the worker did not start: {e}") from e
    log.info("cluster_worker_joined", scheduler=address, processes=plan.processes)
    finished = [asyncio.ensure_future(n.finished()) for n in nannies]
    await asyncio.wait([asyncio.ensure_future(stop.wait()), *finished],
                       return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*(n.close(reason="facecluster worker stopping") for n in nannies),
                         return_exceptions=True)
    if not stop.is_set():
        raise _Gone("the scheduler closed this worker or went away")


class _Gone(Exception):
    """The scheduler let this worker go; try to join again."""


def run(plan: WorkerPlan, *, retry_every: float = 10.0) -> None:
    """Join the scheduler and index until stopped; raises WorkerRefused (loudly logged).

    A scheduler that is not there (yet, or any more: the service restarts) is waited for.
    """
    address = check(plan)
    os.environ.update({k: "1" for k in THREAD_ENV})
    while True:
        try:
            asyncio.run(_serve(plan, address))
            return
        except (OSError, _Gone) as e:
            log.warning("cluster_scheduler_unreachable", scheduler=address, error=str(e),
                        retry_in=retry_every)
        time.sleep(retry_every)
