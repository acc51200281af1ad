"""Indexing photos in worker processes, each holding one loaded engine.

Workers are started with ``spawn`` (never ``fork`` from a process that has threads) and
inherit ``OMP_NUM_THREADS=1`` and friends through their environment, so numpy, dlib and
OpenCV see it before they first load; OpenCV's own pool is set to one thread as well.
Parallelism comes from the processes, and N workers never fight over N x cores threads.

Each worker holds at most one photo at a time and the input is pulled lazily, so a burst
of 100k paths never sits in memory here. Because the pool knows which photo each worker
holds, a worker that dies (a segfault in a native library) or hangs costs exactly that
photo: it is reported as a :class:`PhotoError` and the worker is replaced.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from daemon.config import Config, DetectionConfig, EngineConfig
from daemon.indexer.types import EngineError, IndexedPhoto, PhotoError
from daemon.log import current as current_logging
from daemon.log import leave_now

if TYPE_CHECKING:
    from daemon.indexer.engine import Engine

log = structlog.get_logger(__name__)

THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OPENCV_FOR_THREADS_NUM",
)
_env_lock = threading.Lock()

Result = tuple[Path, IndexedPhoto | PhotoError]


def index_one(path: Path, engine: Engine, detection: DetectionConfig) -> IndexedPhoto | PhotoError:
    """:func:`index_photo` with every failure turned into a :class:`PhotoError` value."""
    from daemon.indexer.engine import index_photo

    try:
        return index_photo(path, engine, detection)
    except PhotoError as e:
        return e
    except Exception as e:  # a bug or a native error must cost one photo, not the service
        log.exception("index_unexpected_error", path=str(path))
        return PhotoError(f"unexpected error while indexing: {type(e).__name__}: {e}")


def _worker_main(
    conn: Connection,
    engine_cfg: EngineConfig,
    detection: DetectionConfig,
    log_level: str,
    log_json: bool | None = None,
) -> None:
    """Worker loop: load the engine once, then answer (path) with (result) until None."""
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import cv2

    from daemon.indexer.engine import open_engine
    from daemon.log import configure

    cv2.setNumThreads(1)

    configure(log_level, json=log_json)
    try:
        engine = open_engine(engine_cfg)
    except Exception as e:
        conn.send(("error", str(e)))
        return
    conn.send(("ready", engine.id))
    while True:
        try:
            path = conn.recv()
        except (EOFError, OSError):
            break
        if path is None:
            break
        conn.send(index_one(path, engine, detection))
    leave_now()  # results went out through the pipe: no teardown needed


@dataclass
class _Worker:
    process: Any  # multiprocessing SpawnProcess
    conn: Connection
    started: float
    ready: bool = False
    path: Path | None = None
    since: float = 0.0


@contextlib.contextmanager
def _single_thread_env() -> Iterator[None]:
    """Set the thread-count variables while a child is spawned (it copies the environment)."""
    with _env_lock:
        saved = {k: os.environ.get(k) for k in THREAD_ENV}
        os.environ.update({k: "1" for k in THREAD_ENV})
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class IndexPool:
    """Index photos with ``cfg.worker_count`` processes (in-process when it is 1).

    Use as a context manager; raises :class:`EngineError` on entry when the engine cannot
    be loaded. Entering waits only for the first worker to load the models: the others
    take photos as soon as they are ready, and :meth:`start` (before entering) lets the
    caller do its own start-up while they load. ``task_timeout`` seconds after a worker
    took a photo it is killed and the photo reported failed. Not for use from several
    threads at once.
    """

    def __init__(self, cfg: Config, *, task_timeout: float = 600.0, start_timeout: float = 300.0):
        self.cfg = cfg
        self.workers = cfg.worker_count
        self.task_timeout = task_timeout
        self.start_timeout = start_timeout
        self.engine_id: str | None = None
        self._engine: Engine | None = None
        self._pool: list[_Worker] = []
        self._ctx = multiprocessing.get_context("spawn")

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> IndexPool:
        """Start the worker processes without waiting for them to load (idempotent)."""
        if self.workers > 1 and not self._pool:
            self._pool = [self._spawn() for _ in range(self.workers)]
        return self

    def __enter__(self) -> IndexPool:
        if self.workers == 1:
            if self._engine is None:
                from daemon.indexer.engine import open_engine

                self._engine = open_engine(self.cfg.engine)
                self.engine_id = self._engine.id
            return self
        try:
            self.start()
            while not any(w.ready for w in self._pool):
                self._wait_starting()
        except BaseException:
            for w in self._pool:
                self._stop(w, grace=0)
            self._pool.clear()
            raise
        log.info("index_pool_started", workers=self.workers, engine=self.engine_id)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_loaded(self) -> None:
        """Wait until every worker has loaded the models (to time the steady state)."""
        while not all(w.ready for w in self._pool):
            self._wait_starting()

    def close(self) -> None:
        """Stop the workers (each finishes nothing new; a stuck one is killed)."""
        for w in self._pool:
            with contextlib.suppress(OSError, ValueError):
                w.conn.send(None)
        for w in self._pool:
            self._stop(w, grace=5.0 if w.ready else 0)  # one still loading has nothing to lose
        self._pool.clear()
        self._engine = None

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        # The parent's logging, not the config's: a command printing warnings only must
        # not get every worker's info lines (engine_chosen) on its terminal or pipe.
        level, json = current_logging() or (self.cfg.log_level, None)
        args = (child, self.cfg.engine, self.cfg.detection, level, json)
        process = self._ctx.Process(target=_worker_main, args=args, daemon=True)
        with _single_thread_env():
            process.start()
        child.close()
        return _Worker(process, parent, started=time.monotonic())

    def _wait_starting(self) -> None:
        """Wait (up to the start deadline) until a loading worker reports or dies."""
        starting = [w for w in self._pool if not w.ready]
        deadline = min(w.started for w in starting) + self.start_timeout
        wait([w.conn for w in starting] + [w.process.sentinel for w in starting],
             max(0.0, deadline - time.monotonic()))
        for w in starting:
            self._check_started(w)

    def _check_started(self, w: _Worker) -> None:
        """Mark ``w`` ready if it reported so; raise :class:`EngineError` if it cannot be."""
        if w.conn.poll(0):
            try:
                kind, value = w.conn.recv()
            except (EOFError, OSError) as e:
                raise EngineError(
                    f"index worker died on start (exit code {w.process.exitcode})") from e
            if kind == "error":
                raise EngineError(value)
            w.ready, self.engine_id = True, value
        elif not w.process.is_alive():
            raise EngineError(f"index worker died on start (exit code {w.process.exitcode})")
        elif time.monotonic() > w.started + self.start_timeout:
            raise EngineError(f"index worker did not start within {self.start_timeout:.0f} s")

    @staticmethod
    def _stop(w: _Worker, grace: float) -> None:
        w.process.join(grace)
        if w.process.is_alive():
            w.process.kill()
            w.process.join(5.0)
        w.conn.close()

    def _replace(self, w: _Worker, why: str) -> None:
        """Kill ``w`` (if still alive) and start a fresh worker in its slot; it takes photos
        once it has loaded."""
        log.warning("index_worker_replaced", why=why, exitcode=w.process.exitcode)
        self._stop(w, grace=0)
        self._pool[self._pool.index(w)] = self._spawn()

    # -- work -----------------------------------------------------------------------------

    def describe(self) -> dict:
        """For ``status``: photos are indexed here."""
        return {"mode": "local", "workers": self.workers}

    def imap(self, paths: Iterable[Path], digests: Mapping[Path, str] | None = None
             ) -> Iterator[Result]:
        """Yield ``(path, IndexedPhoto | PhotoError)`` for every path, in completion order.

        ``path`` is the very object given; ``digests`` is not needed here (the workers
        read the very files). Paths are pulled from ``paths`` only as workers
        free up. Abandoning the iterator early waits for the photos already in flight.
        """
        if self._engine is not None:
            for path in paths:
                yield path, index_one(path, self._engine, self.cfg.detection)
            return
        if not self._pool:
            raise RuntimeError("IndexPool used outside its with-block")
        source = iter(paths)
        more = True
        try:
            while True:
                for w in self._pool:
                    if more and w.ready and w.path is None:
                        more = self._give(w, source)
                busy = [w for w in self._pool if w.path is not None]
                if not busy:
                    if not more:
                        return
                    self._wait_starting()  # every worker is (re)loading
                    continue
                yield from self._collect(busy)
        finally:
            self._drain()

    def _give(self, w: _Worker, source: Iterator[Path]) -> bool:
        """Hand ``w`` the next path; False once the input is exhausted."""
        try:
            path = next(source)
        except StopIteration:
            return False
        try:
            w.conn.send(path)
        except (OSError, ValueError):
            # Gone while idle: the path goes to whichever worker is ready first.
            self._replace(w, "worker gone while idle")
            w = self._wait_for_idle()
            w.conn.send(path)
        w.path, w.since = path, time.monotonic()
        return True

    def _wait_for_idle(self) -> _Worker:
        while True:
            idle = [w for w in self._pool if w.ready and w.path is None]
            if idle:
                return idle[0]
            self._wait_starting()

    def _collect(self, busy: list[_Worker]) -> Iterator[Result]:
        """Wait until a busy worker answers, dies or times out, or a loading one is ready;
        yield results."""
        starting = [w for w in self._pool if not w.ready]
        deadline = min([w.since + self.task_timeout for w in busy]
                       + [w.started + self.start_timeout for w in starting])
        handles = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        handles += [w.conn for w in starting] + [w.process.sentinel for w in starting]
        ready = set(wait(handles, max(0.0, deadline - time.monotonic())))
        for w in starting:
            self._check_started(w)
        now = time.monotonic()
        for w in busy:
            path = w.path
            assert path is not None
            if w.conn in ready:
                try:
                    result = w.conn.recv()
                except (EOFError, OSError):
                    result = None
                if result is not None:
                    w.path = None
                    yield path, result
                    continue
            elif w.process.sentinel not in ready and now - w.since < self.task_timeout:
                continue
            if w.process.is_alive() and now - w.since >= self.task_timeout:
                reason = f"indexing took over {self.task_timeout:.0f} s; worker stopped"
            else:
                w.process.join(1.0)
                reason = f"index worker crashed on this photo (exit code {w.process.exitcode})"
            log.error("index_worker_lost", path=str(path), reason=reason)
            w.path = None
            self._replace(w, reason)
            yield path, PhotoError(reason)

    def _drain(self) -> None:
        """Wait out photos still in flight after the caller stopped iterating."""
        for w in list(self._pool):
            if w.path is None:
                continue
            if not w.conn.poll(self.task_timeout):
                self._replace(w, "abandoned photo did not finish")
                continue
            with contextlib.suppress(EOFError, OSError):
                w.conn.recv()
            w.path = None
