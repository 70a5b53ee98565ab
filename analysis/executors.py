"""Where design points run: in this process, on a local process pool, or on a Dask cluster.

Every executor takes the same picklable tasks and runs the same top-level function
(:func:`evaluate_point`), so a point's result does not depend on where it ran: each task
carries its full arch mapping, the workload's absolute path and its seed, and each worker
runs the bit-true kernels single-threaded (one point per core). Results stream back as they
finish; the coordinator stores them (:mod:`analysis.store`).

- ``serial`` (``--workers 0``): in this process, for debugging.
- ``LocalPool`` (default for bit-true sweeps): a ``concurrent.futures`` process pool of
  ``--workers`` processes (default: the usable cores), started with ``spawn`` so no thread
  state of the parent is forked. Nothing to install or start.
- ``Auto`` (default for analytical sweeps, ``--workers`` not given): in this process while the
  points left would take at most :data:`AUTO_POOL_SECONDS` here, then the rest on a
  ``LocalPool``: a pool worker spends seconds starting (spawning, importing torch, preparing
  the workload), more than a short analytical sweep takes in one process.
- ``DaskExecutor`` (``--scheduler tcp://HOST:PORT``): an existing ``dask.distributed``
  cluster. Its workers must import this imcsim and see the workload, checkpoint and data
  files at the same absolute paths (a shared file system or the same container image).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any

from sim.errors import ConfigError, MappingError, UserError
from sim.kernels.backend import BackendError, selected

Task = dict[str, Any]
Outcome = dict[str, Any]


def single_threaded() -> None:
    """Run the bit-true kernels on one thread in this process (one point per core)."""
    os.environ["IMCSIM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def evaluate_point(task: Task) -> Outcome:
    """Simulate one design point; never raises for a user-level problem.

    Returns ``{"key", "status": "ok", "metrics", "seconds"}``, or ``status: "invalid"`` with
    the reason when the arch cannot be built or the model cannot be mapped onto it,
    ``status: "failed"`` for a problem outside the point (a missing data set or checkpoint),
    or ``status: "error"`` with a traceback when imcsim itself failed (a bug). Only ``ok`` and
    ``invalid`` are stored; the others are retried by a rerun.
    """
    from analysis.run import estimate, simulate
    from analysis.sweep_spec import METRICS
    from sim.config.loader import arch_from_dict

    single_threaded()
    start = time.perf_counter()
    out: Outcome = {"key": task["key"]}
    try:
        # The sweep's --backend, for the point only (a remote worker's environment lacks it;
        # a Dask worker lives on).
        with selected(task.get("backend")):
            # The coordinator's validated arch when the task carries it (same mapping, same
            # arch).
            arch = task.get("built") or arch_from_dict(task["arch"], source=task["label"])
            if task.get("mode") == "analytical":
                result = estimate(arch, task["workload"], samples=task["samples"] or 64,
                                  seed=task["seed"], data_dir=task["data_dir"])
            else:
                result = simulate(arch, task["workload"], samples=task["samples"],
                                  seed=task["seed"], data_dir=task["data_dir"],
                                  batch_size=task["batch_size"], progress=False,
                                  first_sample=task.get("first_sample", 0))
    except (ConfigError, MappingError) as err:
        out.update(status="invalid", reason=str(err))
    except BackendError as err:  # say where: a cluster's worker is another machine
        out.update(status="failed", reason=f"on the worker at {socket.gethostname()}: {err}")
    except UserError as err:  # missing data or checkpoint: the same for every point
        out.update(status="failed", reason=str(err))
    except Exception:  # noqa: BLE001 - reported to the coordinator, which keeps going
        out.update(status="error", reason=traceback.format_exc())
    else:
        out.update(status="ok", metrics={m: float(getattr(result, m)) for m in METRICS})
    out["seconds"] = time.perf_counter() - start
    return out


@contextlib.contextmanager
def _threads_kept():
    """Restore this process's kernel and torch thread counts afterwards: points run here are
    made single-threaded (:func:`evaluate_point`), which must not outlast the sweep in a
    caller's process (a notebook that simulates next)."""
    import torch

    saved_env, saved_torch = os.environ.get("IMCSIM_THREADS"), torch.get_num_threads()
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop("IMCSIM_THREADS", None)
        else:
            os.environ["IMCSIM_THREADS"] = saved_env
        torch.set_num_threads(saved_torch)


class Serial:
    """Runs tasks one after another in this process."""

    name = "serial"

    def run(self, fn: Callable[[Task], Outcome], tasks: Iterable[Task]) -> Iterator[Outcome]:
        """Yield each task's outcome as it finishes (the tasks are taken one at a time)."""
        with _threads_kept():
            for task in tasks:
                yield fn(task)

    def close(self) -> None:
        """Nothing to release."""


class LocalPool:
    """A process pool on this machine (see module docstring)."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or len(os.sched_getaffinity(0))
        self.name = f"local pool, {self.workers} processes"
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"),
                                         initializer=single_threaded)

    def run(self, fn: Callable[[Task], Outcome], tasks: Iterable[Task]) -> Iterator[Outcome]:
        """Yield outcomes as they finish, keeping at most two tasks queued per worker (taken
        from ``tasks`` only as slots free up, so a lazily built task list overlaps with the
        work)."""
        pending: dict = {}
        queue = iter(tasks)
        more = True
        while more or pending:
            while more and len(pending) < 2 * self.workers:
                task = next(queue, None)
                if task is None:
                    more = False
                    break
                pending[self._pool.submit(fn, task)] = task
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield _outcome(fut, pending.pop(fut))

    def close(self) -> None:
        """Stop the worker processes (cancelling anything not started)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """An existing Dask distributed cluster at ``address`` (see module docstring)."""

    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError:
            raise UserError("--scheduler needs dask.distributed: pip install 'dask[distributed]'"
                            ) from None
        try:
            self._client = Client(address, timeout="15s")
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        workers = self._client.scheduler_info().get("workers", {})
        self.name = f"Dask cluster {address}, {len(workers)} workers"

    def run(self, fn: Callable[[Task], Outcome], tasks: Iterable[Task]) -> Iterator[Outcome]:
        """Yield outcomes as the cluster finishes them."""
        from distributed import as_completed

        tasks = list(tasks)
        futures = self._client.map(fn, tasks, pure=False)
        task_of = dict(zip(futures, tasks, strict=True))
        for fut in as_completed(futures):
            yield _outcome(fut, task_of[fut])

    def close(self) -> None:
        """Disconnect from the cluster (it keeps running)."""
        self._client.close()


def _outcome(future: Any, task: Task) -> Outcome:
    """A finished future's outcome; a lost worker (killed, out of memory) is an error."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - BrokenProcessPool, KilledWorker, ...
        return {"key": task["key"], "status": "error", "seconds": 0.0,
                "reason": f"the worker running this point died: {exc!r}"}


#: An analytical sweep with the default executor runs in this process while the points left
#: would take at most this many seconds here at the rate measured on its warm points; past
#: that, the rest go to a local pool. Measured on two cores (``bench/bench_sweep_default.py``):
#: the 45-point ``cifar_cnn`` grid took 3.2-4.4 s in one process and 6.1-7.2 s on a pool of 2
#: from the start, the 324-point grid 6.8 s and 8.3-9.5 s.
AUTO_POOL_SECONDS = 30.0
#: The warm points (or seconds of them) the rate of :class:`Auto` is taken over: the first few
#: warm points make the sweep's first mappings and schedules and run slower than the rest.
AUTO_RATE_POINTS = 16
AUTO_RATE_SECONDS = 2.0


class Auto:
    """Analytical sweeps without ``--workers``: see the module docstring. The first point
    prepares the workload in this process (not a rate); after each later point, once
    :data:`AUTO_RATE_POINTS` warm points or :data:`AUTO_RATE_SECONDS` of them have run, the
    rest is estimated at their mean time, and when it exceeds :data:`AUTO_POOL_SECONDS` (and
    there is more than one usable core) the remaining tasks go to a :class:`LocalPool`."""

    def __init__(self, total: int, workers: int | None = None,
                 seconds: float | None = None):
        self.total = total
        self.workers = workers
        self.seconds = AUTO_POOL_SECONDS if seconds is None else seconds
        self.pool: LocalPool | None = None
        self.name = (f"auto: this process, a local pool once the rest would take over "
                     f"{self.seconds:g} s")

    def run(self, fn: Callable[[Task], Outcome], tasks: Iterable[Task]) -> Iterator[Outcome]:
        """Yield each task's outcome: here, then (when long) from the pool."""
        queue = iter(tasks)
        cores = len(os.sched_getaffinity(0))
        done, warm_start = 0, 0.0
        with _threads_kept():
            for task in queue:
                yield fn(task)
                done += 1
                if done == 1:
                    warm_start = time.perf_counter()
                    continue
                warm = time.perf_counter() - warm_start
                if done - 1 < AUTO_RATE_POINTS and warm < AUTO_RATE_SECONDS:
                    continue
                if cores > 1 and (self.total - done) * warm / (done - 1) > self.seconds:
                    self.pool = LocalPool(self.workers)
                    yield from self.pool.run(fn, queue)
                    return

    def close(self) -> None:
        """Stop the pool if one was started."""
        if self.pool is not None:
            self.pool.close()


def make_executor(workers: int | None = None, scheduler: str | None = None,
                  analytical_points: int | None = None):
    """The executor for the command-line options ``--workers`` and ``--scheduler``;
    ``analytical_points``: the points of an analytical sweep to run (:class:`Auto` when
    ``--workers`` is not given)."""
    if scheduler:
        return DaskExecutor(scheduler)
    if workers is not None and workers < 0:
        raise UserError(f"--workers must be 0 (in this process) or more, got {workers}")
    if workers == 0:
        return Serial()
    if workers is None and analytical_points is not None:
        return Auto(analytical_points)
    return LocalPool(workers)
