"""Worker processes fed one task at a time, so that a worker that dies costs only its own task.

`concurrent.futures.ProcessPoolExecutor` marks the whole pool broken when one
worker dies (a decoder's native abort, the out-of-memory killer) and cannot say
which task it held. Here each worker has its own pipe and gets its next task
only when it has returned the last, so the parent always knows what a dead
worker was doing, reports it, starts a replacement and goes on.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from ._threads import limit_threads

__all__ = ["WorkerPool", "WorkerDied"]

_READY = "ready"
# Seconds a worker gets to finish and exit after the last task, before it is terminated.
_EXIT_GRACE_S = 5.0
# Workers that die one after the other before ever becoming ready: the environment is broken, not a task.
_MOST_START_FAILURES = 3


@dataclass(frozen=True)
class WorkerDied:
    """The outcome of a task whose worker process ended without answering."""

    pid: int
    exitcode: int | None

    def __str__(self) -> str:
        code = self.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "unknown signal"
            return f"worker process {self.pid} died: signal {-code} ({name})"
        return f"worker process {self.pid} died: exit code {code}"


def _context(warm: tuple[str, ...]) -> Any:  # a SpawnContext or ForkServerContext (the latter POSIX only)
    """Where workers come from: a fork server that imported `warm` once, or fresh interpreters.

    Not plain fork: the parent may run threads (tqdm's monitor, a dask client)
    that fork would copy mid-lock. The fork server is single-threaded and lives
    as long as this process, so later pools start in milliseconds, imports done.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():  # Windows
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(warm))
    return context


@dataclass
class _Worker:
    process: BaseProcess
    connection: Connection
    task: Any = None
    busy: bool = False
    ready: bool = False


def _exit_on_terminate(signum: int, frame: Any) -> None:
    # an exception, not the default instant death: temporary outputs are removed by their `finally`
    raise SystemExit(128 + signum)


def _worker_main(connection: Connection, function: Callable[[Any], Any], threads: int, warm: tuple[str, ...]) -> None:
    # Ctrl-C reaches the whole process group: the parent decides what stops, and records what finished
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_terminate)
    limit_threads(threads)
    for module in warm:  # already loaded when forked from the fork server; imported here under spawn
        importlib.import_module(module)
    connection.send(_READY)
    while True:
        try:
            task = connection.recv()
        except EOFError:  # the parent is gone
            return
        if task is None:
            os._exit(0)  # nothing left to flush (outputs are closed and renamed): skip the interpreter's teardown
        connection.send(function(task))


class WorkerPool:
    """`workers` processes that run ``function(task)``, in the order submitted.

    Creating the pool starts the fork server, which imports `warm` while the
    caller goes on (e.g. scans headers); the workers, forked from it at the
    first `submit`, start warm in milliseconds. Each worker limits its
    `ctexplore._threads.in_threads` calls to its share of the cores. `results` yields ``(task, outcome)`` in completion
    order, where `outcome` is what `function` returned or a `WorkerDied`;
    tasks may be submitted while iterating. `function` must catch its own
    errors: one that raises kills its worker and is reported as `WorkerDied`.
    """

    def __init__(self, function: Callable[[Any], Any], workers: int, *, warm: Iterable[str] = ()) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._function = function
        self._threads = max(1, (os.cpu_count() or 1) // workers)
        self._warm = tuple(warm)
        self._context = _context(self._warm)
        self._queue: deque[Any] = deque()
        self._start_failures = 0
        self._size = workers
        self._workers: list[_Worker] = []
        if self._context.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()  # returns at once; the server imports `warm` while the caller goes on

    def _start(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(child, self._function, self._threads, self._warm),
            name="ctexplore-worker",
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def submit(self, tasks: Iterable[Any], *, first: bool = False) -> None:
        """Queue tasks (at the front with `first`, e.g. a retry the caller is waiting for)."""
        while len(self._workers) < self._size:
            self._workers.append(self._start())
        if first:
            self._queue.extendleft(reversed(list(tasks)))
        else:
            self._queue.extend(tasks)

    def _dispatch(self) -> Iterator[tuple[Any, Any]]:
        for worker in list(self._workers):
            if worker.busy or not self._queue:
                continue
            task = self._queue.popleft()
            worker.task, worker.busy = task, True
            try:
                worker.connection.send(task)
            except (BrokenPipeError, ConnectionResetError):
                yield from self._bury(worker)

    def _bury(self, worker: _Worker) -> Iterator[tuple[Any, Any]]:
        """A worker ended: report its task (or queue it again if it never started), start a replacement."""
        worker.process.join(_EXIT_GRACE_S)
        worker.connection.close()
        self._workers.remove(worker)
        if not worker.ready:  # died while starting: the environment, not the task, is at fault
            self._start_failures += 1
            if self._start_failures >= _MOST_START_FAILURES:
                raise RuntimeError(
                    f"ctexplore worker processes exit while starting (last exit code {worker.process.exitcode}); "
                    "the error is printed above. A script that starts them must do so under "
                    "`if __name__ == '__main__':` (each worker imports the script again)"
                )
            if worker.busy:
                self._queue.appendleft(worker.task)
                worker.busy = False
        if self._queue or worker.busy or not self._workers:
            self._workers.append(self._start())
        if worker.busy:
            yield worker.task, WorkerDied(worker.process.pid or 0, worker.process.exitcode)

    def results(self) -> Iterator[tuple[Any, Any]]:
        """``(task, outcome)`` for every submitted task, as they finish; ends when none is left."""
        while True:
            yield from self._dispatch()
            if not self._queue and not any(w.busy for w in self._workers):
                return
            handles: dict[Any, _Worker] = {}
            for worker in self._workers:
                handles[worker.connection] = worker
                handles[worker.process.sentinel] = worker
            finished = {id(handles[h]): handles[h] for h in wait(list(handles))}
            for worker in finished.values():
                try:
                    message = worker.connection.recv() if worker.connection.poll() else None
                except (EOFError, OSError):
                    message = None
                if message == _READY:
                    worker.ready, self._start_failures = True, 0
                elif message is not None:
                    task, worker.task, worker.busy = worker.task, None, False
                    yield task, message
                elif not worker.process.is_alive():
                    yield from self._bury(worker)

    def close(self) -> None:
        """Stop the workers: idle ones are told to exit, busy ones (after an interrupt) are terminated."""
        for worker in self._workers:
            try:
                if worker.busy:
                    worker.process.terminate()
                else:
                    worker.connection.send(None)
            except OSError:
                pass  # already gone: join below reaps it
        for worker in self._workers:
            worker.process.join(_EXIT_GRACE_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.connection.close()
        self._workers.clear()
        self._queue.clear()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
