"""Run a per-file analysis over many files on every core, yielding results as batches finish.

Used by the code and secrets scanners. Workers come from a ``forkserver`` context: forking a
process that already runs other scanners in threads can deadlock, and the fork server is
started once per process and then forks cheaply for every later scan.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

# (key, file name, content): the key names the result, the file name is for the analyser.
Job = tuple[str, str, bytes]
R = TypeVar("R")

_BATCH_BYTES = 512 * 1024
_BATCH_FILES = 64


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def _batches(jobs: Sequence[Job], workers: int) -> list[list[Job]]:
    # Small batches keep every core busy to the end; a cap on files keeps each result prompt.
    target = max(1, min(_BATCH_BYTES, sum(len(j[2]) for j in jobs) // (workers * 4) + 1))
    batches: list[list[Job]] = []
    current: list[Job] = []
    size = 0
    for job in sorted(jobs, key=lambda j: -len(j[2])):
        current.append(job)
        size += len(job[2])
        if size >= target or len(current) >= _BATCH_FILES:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches


def _inline(
    jobs: Sequence[Job],
    analyse_batch: Callable[[list[Job]], list[R]],
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
    cancelled: threading.Event,
) -> Iterator[tuple[str, R]]:
    initializer(*initargs)
    for job in jobs:
        if cancelled.is_set():
            return
        yield job[0], analyse_batch([job])[0]


def analyse(
    jobs: Sequence[Job],
    analyse_batch: Callable[[list[Job]], list[R]],
    *,
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
    cancelled: threading.Event,
    crashed: Callable[[str], R],
) -> Iterator[tuple[str, R]]:
    """(name, result) for every job, in completion order; stops early when ``cancelled`` is set.

    ``analyse_batch`` returns one result per job, in order. If a worker process dies, every
    job of the lost batches gets ``crashed(reason)`` instead of a result; if no worker ever
    delivered anything (they cannot start), the jobs are analysed in this process instead.
    """
    if not jobs:
        return
    if workers <= 1 or len(jobs) == 1:
        yield from _inline(jobs, analyse_batch, initializer, initargs, cancelled)
        return
    batches = _batches(jobs, workers)
    context = multiprocessing.get_context("forkserver")
    # The fork server imports the analysers once; every worker forked from it starts warm.
    # (Only the first call in a process starts the server, so later lists add nothing.)
    context.set_forkserver_preload(["scanners.code", "scanners.secrets"])
    executor = ProcessPoolExecutor(
        max_workers=min(workers, len(batches)), mp_context=context, initializer=initializer, initargs=initargs
    )
    pending: dict[Future[list[R]], list[Job]] = {}
    delivered = 0
    not_started: list[Job] = []
    try:
        for batch in batches:
            pending[executor.submit(analyse_batch, batch)] = batch
        while pending:
            if cancelled.is_set():
                return
            done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                batch = pending.pop(future)
                try:
                    results = future.result()
                except BrokenProcessPool:
                    if delivered == 0:
                        # Workers that die before any result could not start at all (for
                        # example a main module without a __main__ guard): work here instead.
                        not_started = [job for lost in (batch, *pending.values()) for job in lost]
                        pending.clear()
                        break
                    results = [crashed("the analysis process died (out of memory or killed)")] * len(batch)
                delivered += 1
                yield from zip((job[0] for job in batch), results, strict=True)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    yield from _inline(not_started, analyse_batch, initializer, initargs, cancelled)
