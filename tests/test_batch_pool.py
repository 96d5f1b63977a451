"""The worker pool under the batch: a native abort inside a task, thread shares, retries, start-up failures."""

from __future__ import annotations

import os
import resource
import signal
import threading

import pytest

from ctexplore._pool import WorkerDied, WorkerPool
from ctexplore._threads import in_threads, limit_threads, thread_limit


def square_or_abort(item):
    """A task; "abort" calls the C library's abort() in the worker, as a decoder's uncaught C++ exception does."""
    if item == "abort":
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the test's folder
        os.abort()
    return item * item, os.getpid()


def threads_of_worker(_):
    return thread_limit()


class TestWorkerPool:
    def test_a_native_abort_costs_only_its_task_and_the_pool_goes_on(self):
        with WorkerPool(square_or_abort, 2) as pool:
            pool.submit([1, 2, "abort", 3, 4, "abort", 5])
            outcomes = list(pool.results())
        deaths = [outcome for task, outcome in outcomes if task == "abort"]
        answers = {task: outcome[0] for task, outcome in outcomes if task != "abort"}
        assert answers == {1: 1, 2: 4, 3: 9, 4: 16, 5: 25}
        assert len(deaths) == 2 and all(isinstance(death, WorkerDied) for death in deaths)
        for death in deaths:
            assert death.exitcode == -signal.SIGABRT
            assert str(death) == f"worker process {death.pid} died: signal {int(signal.SIGABRT)} (SIGABRT)"

    def test_a_lone_worker_that_dies_is_replaced(self):
        with WorkerPool(square_or_abort, 1) as pool:
            pool.submit(["abort", 6])
            outcomes = list(pool.results())
        assert isinstance(outcomes[0][1], WorkerDied)
        (value, pid) = outcomes[1][1]
        assert value == 36 and pid != outcomes[0][1].pid

    def test_tasks_submitted_first_run_next(self):
        with WorkerPool(square_or_abort, 1) as pool:
            pool.submit([1, 2, 3])
            order = []
            for task, _ in pool.results():
                order.append(task)
                if task == 1:
                    pool.submit([10], first=True)
        assert order == [1, 10, 2, 3]

    def test_each_worker_uses_its_share_of_the_cores(self):
        workers = 2
        with WorkerPool(threads_of_worker, workers) as pool:
            pool.submit(range(4))
            limits = {outcome for _, outcome in pool.results()}
        assert limits == {max(1, (os.cpu_count() or 1) // workers)}

    def test_workers_that_cannot_start_stop_the_pool_with_advice(self):
        pool = WorkerPool(square_or_abort, 1, warm=("ctexplore_no_such_module",))
        try:
            pool.submit([1])
            with pytest.raises(RuntimeError, match=r"worker processes exit while starting"):
                list(pool.results())
        finally:
            pool.close()


class TestThreads:
    def test_a_limit_of_one_runs_every_item_in_the_calling_thread(self):
        seen = []
        limit_threads(1)
        try:
            in_threads(lambda item: seen.append(threading.get_ident()), range(8))
        finally:
            limit_threads(None)
        assert set(seen) == {threading.get_ident()}

    def test_a_limit_below_one_is_refused(self):
        with pytest.raises(ValueError, match="at least 1"):
            limit_threads(0)
