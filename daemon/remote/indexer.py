"""The service side: the pool's interface (:class:`daemon.indexer.types.Indexer`) over Dask.

Photos go out as tasks, a bounded number at a time; faces come back and are yielded to
the one writer (sync), each path exactly once whatever Dask retried. A worker killed
mid-photo costs nothing: Dask runs the task again elsewhere. A photo that kills workers
``allowed-failures`` times ends as a :class:`PhotoError` saying so (Dask's
``KilledWorker``), never retried for ever; but only once it did so alone. Dask blames
every task a dying worker held, so a photo queued beside a poison one is first a
suspect, tried again with nothing else out, and judged by that. When the scheduler is
gone the remaining and in-flight photos go to a local :class:`IndexPool`, and
:meth:`describe` says so for ``status``; a later round tries the scheduler again.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.config import Config
from daemon.indexer.models import sha256_file
from daemon.indexer.pool import THREAD_ENV, IndexPool, Result
from daemon.indexer.types import PhotoError
from daemon.remote.fingerprint import fingerprint
from daemon.remote.rates import WorkerRates
from daemon.remote.settings import NO_DASHBOARD, listen_address

log = structlog.get_logger(__name__)

LOST_AFTER = 20.0
"""Seconds without a scheduler (or without any worker) before photos go to the local pool."""
RETRY_EVERY = 60.0
"""Seconds between attempts to reach a lost scheduler again (at the start of a round)."""
MAX_RESENDS = 3
"""A photo handed back (bytes needed, a refused worker) is sent again at most this often."""
BATCH = 4
"""Photos per task until the workers' speed is known. Dask's own cost (~8 ms of the
service's CPU per task, from the FIW runs of bench/cluster_index.py) is shared by a
task's photos.
A batch that kills workers has each of its photos tried alone before any is judged."""
MAX_BATCH = 16
TASK_SECONDS = 1.0
"""A task's photos take about this much of a worker's CPU: Dask's cost per task (CPU on
the service's core, ~8 ms) stays ~1 % of the work, and a killed worker or the end of a round
costs little. Small photos (~15 ms each) go 16 a task; 12 MP ones (~90 ms) about 11."""
RATE_WINDOW = 60.0
"""Seconds over which each worker's photos/s is measured."""


def security(cfg: Config):  # noqa: ANN201 - distributed.Security, imported lazily
    """Dask's TLS settings for this service, or None on plain loopback TCP."""
    c = cfg.cluster
    if not c.tls_ca:
        return None
    from distributed.security import Security

    return Security(tls_ca_file=c.tls_ca, tls_client_cert=c.tls_cert, tls_client_key=c.tls_key,
                    tls_scheduler_cert=c.tls_cert, tls_scheduler_key=c.tls_key,
                    tls_worker_cert=c.tls_cert, tls_worker_key=c.tls_key,
                    require_encryption=True)


@dataclass
class _Sent:
    path: Path
    digest: str
    resends: int = 0
    alone: bool = False
    """Sent with nothing else in flight: a killed worker can only be its doing."""


class ClusterIndexer:
    """Index photos on the Dask cluster ``cfg.cluster`` names (or serves); see the module.

    Use as a context manager, like :class:`IndexPool`. Not for use from several threads.
    """

    def __init__(self, cfg: Config, *, connect_timeout: float = 30.0,
                 lost_after: float = LOST_AFTER, task_timeout: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.connect_timeout = connect_timeout
        self.lost_after = lost_after
        self.task_timeout = task_timeout
        """Seconds a task may be out (queued or running) before its worker is restarted
        and its photos are done one by one, or failed (a hung native call)."""
        self.engine_id: str | None = None
        self._clock = clock
        self._fp = None
        self._client = None
        self._cluster = None
        self._local: IndexPool | None = None
        self.lost: str | None = None
        """Why photos go to the local pool now (None while the cluster works)."""
        self._lost_at = float("-inf")
        self._rates = WorkerRates(RATE_WINDOW)
        self._speed = TaskSpeed()
        self._refused: dict[str, str] = {}
        self._done_queue = None
        self._since: dict = {}
        self._suspects: list[_Sent] = []
        """Photos whose task killed workers while others were out: each is tried again
        alone before it is judged (see the module)."""

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> ClusterIndexer:
        """Connect now (serving the scheduler, for workers to join) rather than at the
        first photo; sync enters it again, which is then free."""
        return self.__enter__()

    def __enter__(self) -> ClusterIndexer:
        if self._fp is None:
            self._fp = fingerprint(self.cfg.engine)  # EngineError here, like the pool
            self.engine_id = self._fp.engine
            self._connect_or_fall_back()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect (and stop a served scheduler and this machine's workers)."""
        self._drop_cluster()
        if self._local is not None:
            self._local.close()
            self._local = None
        self._fp = None

    def _connect_or_fall_back(self) -> None:
        try:
            self._connect()
            self.lost = None
        except Exception as e:  # noqa: BLE001 - any failure to reach it means: index here
            self._fall_back(f"cannot reach the scheduler: {type(e).__name__}: {e}")

    def _connect(self) -> None:
        from distributed import Client

        from daemon.remote.task import quiet_dask

        quiet_dask()
        c, sec = self.cfg.cluster, security(self.cfg)
        if c.scheduler == "serve":
            self._cluster = self._serve(sec)
            self._client = Client(self._cluster, security=sec, timeout=self.connect_timeout)
        else:
            self._client = Client(c.scheduler, security=sec, timeout=self.connect_timeout)
        assert self._fp is not None
        self._client.set_metadata(_expected_key(), self._fp.as_dict())
        log.info("cluster_connected", scheduler=self._client.scheduler.address,
                 engine=self._fp.as_text(), workers=len(self._workers()))
        self._refuse_strangers()

    def _serve(self, sec):  # noqa: ANN001, ANN202 - distributed types, imported lazily
        """A scheduler of our own, with this machine's workers in it (``index_here``)."""
        from distributed import Nanny, Scheduler, SpecCluster

        from daemon.remote.task import EnginePlugin

        c = self.cfg.cluster
        where = listen_address(c)
        n = self.cfg.worker_count if c.index_here else 0
        protocol = f"{where.scheme}://"
        scheduler = {"cls": Scheduler, "options": {
            "host": where.host, "port": where.port, "protocol": protocol, "security": sec,
            **NO_DASHBOARD}}
        # This machine's workers talk to the scheduler and this client only: loopback.
        worker = {"cls": Nanny, "options": {
            "host": "127.0.0.1", "protocol": protocol, "security": sec, "nthreads": 1,
            "plugins": {EnginePlugin(self.cfg.engine, same_files=True)},
            "env": {k: "1" for k in THREAD_ENV},
            **NO_DASHBOARD}}
        cluster = SpecCluster(scheduler=scheduler, workers=dict.fromkeys(range(n), worker),
                              security=sec, name="facecluster")
        log.info("cluster_serving", address=cluster.scheduler_address, own_workers=n)
        return cluster

    def _fall_back(self, why: str) -> None:
        if self.lost is None:
            log.error("cluster_lost", reason=why, hint="indexing on this machine meanwhile")
        self.lost, self._lost_at = why, self._clock()
        self._drop_cluster()  # a served scheduler that failed too: the next try serves afresh

    def _drop_cluster(self) -> None:
        parts, self._client, self._cluster = (self._client, self._cluster), None, None
        for part in parts:
            if part is not None:
                try:
                    part.close()
                except Exception as e:  # noqa: BLE001 - closing a broken link is best effort
                    log.debug("cluster_close_failed", error=f"{type(e).__name__}: {e}")

    def _local_pool(self) -> IndexPool:
        if self._local is None:
            self._local = IndexPool(self.cfg).__enter__()
        return self._local

    # -- workers --------------------------------------------------------------------------

    def _workers(self) -> dict[str, dict]:
        assert self._client is not None
        return dict(self._client.scheduler_info(n_workers=-1).get("workers", {}))

    def _refuse_strangers(self) -> None:
        """Close workers that joined before the service said which engine it uses."""
        from daemon.remote.task import worker_fingerprint

        assert self._client is not None and self._fp is not None
        theirs = self._client.run(worker_fingerprint, on_error="return")
        for address, data in theirs.items():
            self._check_worker(address, data)

    def _check_worker(self, address: str, data: object) -> None:
        from daemon.remote.fingerprint import Fingerprint
        from daemon.remote.task import refusal

        assert self._fp is not None and self._client is not None
        if isinstance(data, Exception):  # it could not answer; the task checks again
            log.warning("cluster_worker_unchecked", worker=address, error=str(data))
            return
        mine = Fingerprint.from_dict(data)
        why = "it has no facecluster engine" if mine is None else refusal(self._fp, mine)
        if why:
            self._refuse(address, why)

    def _refuse(self, address: str, why: str) -> None:
        assert self._client is not None
        log.error("cluster_worker_refused", worker=address, reason=why)
        self._refused[address] = why
        try:
            self._client.retire_workers([address], close_workers=True, remove=True)
        except Exception as e:  # noqa: BLE001 - it may be gone already
            log.debug("cluster_retire_failed", worker=address, error=str(e))

    def describe(self) -> dict:
        """For ``status``: mode, scheduler, and each worker with its photos/s."""
        now = self._clock()
        out: dict = {"mode": "local" if self.lost else "cluster", "lost": self.lost,
                     "refused": dict(self._refused)}
        if self._client is not None:
            try:
                out["scheduler"] = self._client.scheduler.address
                workers = self._workers()
            except Exception as e:  # noqa: BLE001 - status must not fail the round
                workers, out["error"] = {}, f"{type(e).__name__}: {e}"
            out["workers"] = [
                {"address": a, "name": str(w.get("name", a)),
                 "photos_per_s": round(self._rates.rate(a, now), 2),
                 "photos": self._rates.total(a)}
                for a, w in sorted(workers.items())
            ]
        return out

    # -- work -------------------------------------------------------------------------------

    def imap(self, paths: Iterable[Path], digests: Mapping[Path, str] | None = None
             ) -> Iterator[Result]:
        """Yield ``(path, IndexedPhoto | PhotoError)`` for every path, in completion order
        (see :meth:`IndexPool.imap`). ``digests``: content hashes sync already took."""
        if self._client is None and self._clock() - self._lost_at >= RETRY_EVERY:
            self._connect_or_fall_back()
        if self._client is None:
            yield from self._local_pool().imap(paths)
            return
        left = len(paths) if isinstance(paths, Sized) else None
        source = iter(paths)
        sent: dict = {}
        self._suspects = []
        try:
            yield from self._run(source, sent, digests or {}, left)
        except _Lost as e:
            if e.keep:  # no workers yet: this round goes local, the scheduler stays up
                log.warning("cluster_idle", reason=str(e), hint="indexing here this round")
                self.lost = str(e)
            else:
                self._fall_back(str(e))
            rest = [s.path for batch in sent.values() for s in batch]
            rest += [s.path for s in self._suspects]
            sent.clear()
            self._suspects = []
            yield from self._local_pool().imap([*rest, *source])
        finally:
            for future in sent:
                with contextlib.suppress(Exception):  # a placeholder, or a closed client
                    future.cancel()

    def _run(self, source: Iterator[Path], sent: dict, digests: Mapping[Path, str],
             left: int | None) -> Iterator[Result]:
        from distributed import as_completed

        # Results are fetched in the client's own thread as tasks finish; this thread only
        # takes them off a thread-safe queue: one wake-up per task, no round trips.
        self._done_queue = as_completed(with_results=True, raise_errors=False)
        more, quiet_since = True, self._clock()
        threads, sized_at = self._threads(), self._clock()
        while True:
            if self._clock() - sized_at > 5.0:  # workers join and leave
                threads, sized_at = self._threads(), self._clock()
            full = self._speed.batch()
            if self._suspects and not sent:  # no new work until each is tried alone
                item = self._suspects.pop(0)
                item.alone = True
                self._send(sent, [item])
            held = self._suspects or any(b[0].alone for b in sent.values())
            while (more and not held
                   and sum(len(b) for b in sent.values()) < window(threads, full)):
                batch: list[_Sent] = []
                size = batch_size(left, threads, full)
                while len(batch) < size:
                    path = next(source, None)
                    if path is None:
                        more = False
                        break
                    left = None if left is None else left - 1
                    digest = digests.get(path) or _hash(path)
                    if isinstance(digest, PhotoError):
                        yield path, digest
                    else:
                        batch.append(_Sent(path, digest))
                if batch:
                    self._send(sent, batch)
            if not sent:
                return
            yield from self._overdue(sent)
            try:
                future, value = self._done_queue.queue.get(timeout=1.0)
            except queue.Empty:
                if self._clock() - quiet_since > self.lost_after:
                    self._check_alive()
                    quiet_since = self._clock()
                continue
            quiet_since = self._clock()
            batch = sent.pop(future, None)
            self._since.pop(future, None)
            if batch is not None:
                yield from self._settle(future, value, batch, sent)

    def _threads(self) -> int:
        """Photos the cluster's workers index at once."""
        try:
            return max(1, sum(int(w.get("nthreads", 1)) for w in self._workers().values()))
        except Exception:  # noqa: BLE001 - the next wait notices a lost scheduler
            return 1

    def _check_alive(self) -> None:
        """After a long quiet spell: is there still a scheduler, with workers?"""
        assert self._client is not None
        if self._client.status != "running":
            raise _Lost(f"the scheduler is gone (client {self._client.status})")
        try:
            workers = self._workers()
        except Exception as e:  # noqa: BLE001
            raise _Lost(f"the scheduler does not answer: {type(e).__name__}: {e}") from e
        if not workers:
            raise _Lost("the cluster has no workers", keep=True)

    def _send(self, sent: dict, batch: list[_Sent], data: bytes | None = None) -> None:
        from daemon.remote.task import index_task

        assert self._client is not None and self._fp is not None
        photos = [(str(s.path), s.digest, data) for s in batch]
        try:
            future = self._client.submit(index_task, photos, self.cfg.detection,
                                         self._fp.as_dict(), pure=False)
        except Exception as e:  # noqa: BLE001 - a closed client: the local pool takes it
            sent[object()] = batch
            raise _Lost(f"cannot hand out work: {type(e).__name__}: {e}") from e
        sent[future] = batch
        self._since[future] = self._clock()
        self._done_queue.add(future)

    def _overdue(self, sent: dict) -> Iterator[Result]:
        """Tasks out longer than ``task_timeout``: restart the worker holding each (Dask
        cannot stop a thread), then do a batch's photos one by one; a lone photo fails."""
        now = self._clock()
        late = [f for f, t in self._since.items() if now - t > self.task_timeout]
        if not late:
            return
        assert self._client is not None
        holders = {k: w for w, keys in self._client.processing().items() for k in keys}
        for future in late:
            batch = sent.pop(future)
            del self._since[future]
            future.cancel()
            worker = holders.get(future.key)
            log.error("cluster_task_timeout", photos=[str(s.path) for s in batch],
                      worker=worker, seconds=self.task_timeout)
            if worker is not None:
                self._client.restart_workers([worker], raise_for_error=False)
            if len(batch) > 1:
                for item in batch:
                    self._send(sent, [item])
                continue
            yield batch[0].path, PhotoError(
                f"indexing took over {self.task_timeout:.0f} s on a cluster worker; "
                "the worker was restarted")

    def _settle(self, future, value: object, batch: list[_Sent], sent: dict  # noqa: ANN001
                ) -> Iterator[Result]:
        if future.status == "cancelled":
            sent[future] = batch  # still to do: the local pool takes it
            raise _Lost("the scheduler cancelled the work (it restarted or is gone)")
        if future.status != "finished":
            exc = future.exception()
            if _killed_workers(exc) and not batch[0].alone:  # each tried alone, then judged
                log.info("cluster_photo_suspect", paths=[str(s.path) for s in batch],
                         hint="their task killed workers; each is tried again alone")
                self._suspects.extend(batch)
                return
            if len(batch) > 1:  # find out which photo it was: each on its own
                for item in batch:
                    self._send(sent, [item])
                return
            yield batch[0].path, _task_error(exc)
            return
        address, results, seconds = value
        self._speed.add(seconds, len(batch))
        ended = 0
        for item, result in zip(batch, results, strict=True):
            if self._ended(result):
                ended += 1
                yield item.path, result
            else:
                yield from self._resend(item, result, sent)
        self._rates.record(address, ended, self._clock())
        self.lost = None  # it works (again)

    @staticmethod
    def _ended(value: object) -> bool:
        """Faces or a failure: the photo is done (not handed back to be sent again)."""
        from daemon.remote.task import NeedBytes, Refused

        return not isinstance(value, (NeedBytes, Refused))

    def _resend(self, item: _Sent, value: object, sent: dict) -> Iterator[Result]:
        """Send a handed-back photo again (with its bytes if the worker could not see
        it), a bounded number of times."""
        from daemon.remote.task import NeedBytes, Refused

        if isinstance(value, Refused) and value.worker not in self._refused:
            self._refuse(value.worker, value.why)
        if item.resends >= MAX_RESENDS:
            yield item.path, PhotoError(f"no cluster worker could index it: {value}")
            return
        data = _read(item.path) if isinstance(value, NeedBytes) else None
        if isinstance(data, PhotoError):
            yield item.path, data
            return
        item.resends += 1
        self._send(sent, [item], data)


@dataclass
class TaskSpeed:
    """CPU seconds a photo takes on the workers (a moving average over tasks), and the
    batch that makes a task cost about :data:`TASK_SECONDS`."""

    per_photo: float | None = None

    def add(self, seconds: float, photos: int) -> None:
        if photos <= 0 or seconds <= 0:
            return  # a refused batch did no work: nothing learned
        now = seconds / photos
        self.per_photo = now if self.per_photo is None else 0.7 * self.per_photo + 0.3 * now

    def batch(self) -> int:
        if self.per_photo is None:
            return BATCH
        return max(1, min(MAX_BATCH, round(TASK_SECONDS / self.per_photo)))


def window(threads: int, full: int = BATCH) -> int:
    """Photos in flight: enough that each worker has its next batch queued."""
    return full * max(4, 3 * threads)


def batch_size(left: int | None, threads: int, full: int = BATCH) -> int:
    """Photos for the next task: ``full``, fewer as the last photos of a round go out,
    so no worker sits idle while another finishes a full batch at the end (every chunk
    sync hands over ends so). ``left``: photos not yet taken, None if unknown."""
    if left is None:
        return full
    return max(1, min(full, left // (2 * threads)))


class _Lost(Exception):
    """The cluster cannot take photos now; ``keep``: but stay connected (no workers)."""

    def __init__(self, why: str, *, keep: bool = False) -> None:
        super().__init__(why)
        self.keep = keep


def _expected_key() -> str:
    from daemon.remote.task import EXPECTED_KEY

    return EXPECTED_KEY


def _killed_workers(exc: BaseException | None) -> bool:
    from distributed.scheduler import KilledWorker

    return isinstance(exc, KilledWorker)


def _task_error(exc: BaseException | None) -> PhotoError:
    if _killed_workers(exc):
        return PhotoError(
            f"indexing it killed {exc.allowed_failures + 1} index workers "
            "(cluster allowed-failures reached); not tried again until the file changes")
    return PhotoError(f"cluster task failed: {type(exc).__name__}: {exc}")


def _hash(path: Path) -> str | PhotoError:
    try:
        return sha256_file(path)
    except OSError as e:
        return PhotoError(f"cannot read: {e.strerror or e}", transient=True)


def _read(path: Path) -> bytes | PhotoError:
    try:
        return path.read_bytes()
    except OSError as e:
        return PhotoError(f"cannot read: {e.strerror or e}", transient=True)


