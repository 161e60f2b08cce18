"""Stages of ``seldepth predict`` that run side by side: reading and writing on threads, inference on the caller's.

Image decoding, PNG encoding (zlib), file writes and ONNX Runtime or torch all release the GIL, so a reader
thread, writer threads and the inference loop keep several cores busy. Every stage is bounded (at most
``depth`` jobs wait in it) and hands its results back in the order the jobs were submitted, so outputs
come out in input order whatever thread finished first. With ``workers=0`` each job runs at once on the
calling thread and hands its result back at once: the same code, one step after another (the sequential
path, for comparison and debugging).

Example:
    >>> times = StageTimes()
    >>> with OrderedStage("write", workers=2, depth=8, times=times) as writer:
    ...     for item in items:
    ...         for paths in writer.submit(write_outputs, item):   # results of finished jobs, oldest first
    ...             written += paths
    ...     for paths in writer.drain():
    ...         written += paths
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator


class StageTimes:
    """Seconds spent in each stage, summed over the threads that ran it (thread-safe), and the jobs counted."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.jobs: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float, jobs: int = 1) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
            self.jobs[stage] = self.jobs.get(stage, 0) + jobs

    @contextmanager
    def timed(self, stage: str):
        """Time the ``with`` block as one job of ``stage``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)


class OrderedStage:
    """Jobs run on ``workers`` threads (0: on the caller's, at once); results come back in submission order.

    Args:
        name: the stage's name in :class:`StageTimes` and in its threads' names.
        workers: threads of the stage; 0 runs every job when it is submitted.
        depth: jobs that may be pending before :meth:`submit` waits for the oldest (the bound of the queue).
        times: where the time spent in the jobs is added (None: not timed).
    """

    def __init__(self, name: str, workers: int, depth: int, times: StageTimes | None = None):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.name = name
        self.depth = depth
        self.times = times
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"seldepth-{name}") if workers > 0 else None
        self._pending: deque[Future] = deque()

    def _job(self, fn: Callable, args: tuple, kwargs: dict):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if self.times is not None:
                self.times.add(self.name, time.perf_counter() - start)

    def submit(self, fn: Callable, *args, **kwargs) -> list:
        """Queue ``fn(*args, **kwargs)``; return the results of the oldest jobs while more than ``depth`` are pending.

        A job's exception is raised here (or by :meth:`drain`) when its turn comes, in order.
        """
        if self._pool is not None:
            self._pending.append(self._pool.submit(self._job, fn, args, kwargs))
        else:
            future: Future = Future()
            try:
                future.set_result(self._job(fn, args, kwargs))
            except Exception as exc:  # kept for its turn, as a thread's would be; KeyboardInterrupt goes up now
                future.set_exception(exc)
            self._pending.append(future)
        done = []
        bound = self.depth if self._pool is not None else 0  # on the calling thread: each result at once
        while len(self._pending) > bound:
            done.append(self._pending.popleft().result())
        return done

    def drain(self) -> list:
        """Wait for every pending job; their results in submission order."""
        done = []
        while self._pending:
            done.append(self._pending.popleft().result())
        return done

    def close(self) -> None:
        """Cancel the jobs that have not started and wait for the running ones (which finish their files)."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "OrderedStage":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def prefetched(fn: Callable, items, stage: OrderedStage) -> Iterator:
    """``fn(item)`` for each item, computed up to ``stage.depth`` items ahead on ``stage``'s threads, in order."""
    for item in items:
        yield from stage.submit(fn, item)
    yield from stage.drain()
