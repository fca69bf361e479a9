"""Running an experiment's independent runs at once: one worker process per CPU core.

An experiment is many small runs (arms x seeds x learning rates), each single-threaded work that
gains little from a second thread at these sizes (a width-128 BERT step is no faster on two
threads than on one), so on a 2-core machine two runs side by side finish the experiment in about
half the time of one run after another with two threads each.

Each `Job` names the jobs it waits for (a seed's later arms read the corpus its first arm
tokenized; a fine-tune needs its encoder), and `run_jobs` starts every job whose dependencies are
done as soon as a worker is free. Workers are spawned processes with `threads` torch threads
each; a job's output (progress bars included) goes to `logs/NAME.log` in the experiment's folder
rather than interleaving on the terminal, which says when each job starts and ends. With one
worker the jobs run in this process, in order, printing as they go (the tests' path).

A job is a module-level function and its arguments, so that it can be sent to a worker; every run
it makes is resumable and reused when finished (selfsup.experiments.demo's *_or_reuse), so an
interrupted experiment, parallel or not, continues where it stopped when run again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfsup.errors import UserError

JOBS_HELP = "runs at once, in worker processes (0: one per CPU core, or 1 with a GPU)"


@dataclass(frozen=True)
class Job:
    name: str  # unique within one run_jobs call; also the log file's name
    function: Callable[..., Any]  # module-level, so a worker process can import it
    args: tuple = ()
    after: tuple[str, ...] = ()  # names of the jobs that must finish first


def default_workers(requested: int) -> int:
    """`jobs` option -> worker processes: 0 means one per CPU core, or 1 when a GPU is there (runs
    side by side on one GPU compete for it rather than add to it)."""
    if requested < 0:
        raise UserError(f"jobs must be >= 0 (0: one per CPU core), got {requested}")
    if requested:
        return requested
    import torch  # here, not at the top: the experiments' configs read JOBS_HELP without torch

    return 1 if torch.cuda.is_available() else max(1, len(os.sched_getaffinity(0)))


def _start_worker(threads: int) -> None:
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def log_path(log_dir: Path, name: str) -> Path:
    return log_dir / (re.sub(r"[^\w.+=-]+", "-", name) + ".log")


def _run_logged(job: Job, log: Path) -> tuple[Any, float]:
    """In a worker: the job with its output sent to `log`; (result, seconds)."""
    started = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as stream, contextlib.redirect_stdout(stream):
        with contextlib.redirect_stderr(stream):
            result = job.function(*job.args)
    return result, time.perf_counter() - started


def _check(jobs: list[Job]) -> None:
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names repeat: {names}")
    for job in jobs:
        unknown = [name for name in job.after if name not in names]
        if unknown:
            raise ValueError(f"job {job.name} waits for unknown jobs {unknown}")
    _in_dependency_order(jobs)  # raises on a cycle


def run_jobs(
    jobs: list[Job], workers: int, log_dir: Path, say: Callable[[str], Any] = print
) -> dict[str, Any]:
    """Run `jobs` (in dependency order) on `workers` processes; {job name: its result}.

    A failing job stops the rest: its UserError (or exception) is raised here once the jobs
    already running have finished, so their runs are complete on disk for the next attempt."""
    _check(jobs)
    results: dict[str, Any] = {}
    if workers <= 1:
        for job in _in_dependency_order(jobs):
            results[job.name] = job.function(*job.args)
        return results
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    context = multiprocessing.get_context("spawn")  # no forked copy of a threaded torch
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(threads,)
    ) as pool:
        try:
            return _schedule(jobs, pool, workers, log_dir, say)
        except KeyboardInterrupt:
            # workers ignore Ctrl-C (see _submit_ignoring_ctrl_c): stop them here; every run is
            # resumable and every write atomic, so a rerun continues
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _schedule(
    jobs: list[Job],
    pool: concurrent.futures.Executor,
    workers: int,
    log_dir: Path,
    say: Callable[[str], Any],
) -> dict[str, Any]:
    """run_jobs' loop: submit every job whose dependencies are done while a worker is free."""
    pending, results = list(jobs), {}
    running: dict[concurrent.futures.Future, Job] = {}
    failure: BaseException | None = None
    while pending or running:
        ready = [j for j in pending if all(name in results for name in j.after)]
        for job in ready if failure is None else []:
            if len(running) >= workers:
                break
            pending.remove(job)
            log = log_path(log_dir, job.name)
            running[_submit_ignoring_ctrl_c(pool, job, log)] = job
            say(f"  started {job.name} (log: {log})")
        if not running:
            break
        # a timeout, so that the main thread wakes to run Python's Ctrl-C handler: the signal may
        # reach one of the pool's threads, which leaves an untimed wait blocked for good
        done, _ = concurrent.futures.wait(
            running, timeout=0.5, return_when=concurrent.futures.FIRST_COMPLETED
        )
        for future in done:
            job = running.pop(future)
            try:
                results[job.name], seconds = future.result()
            except BaseException as error:  # noqa: BLE001 - re-raised below, once drained
                failure = failure or error
                say(f"  FAILED {job.name}: {error} (log: {log_path(log_dir, job.name)})")
                continue
            say(f"  finished {job.name} in {seconds / 60:.1f} min ({len(results)}/{len(jobs)})")
    if failure is not None:
        raise failure
    return results


def _submit_ignoring_ctrl_c(
    pool: concurrent.futures.Executor, job: Job, log: Path
) -> concurrent.futures.Future:
    """pool.submit, with Ctrl-C ignored while it may spawn a worker: the worker inherits that.

    Ctrl-C reaches every process of the terminal's group; the main process alone handles it
    (run_jobs stops the workers), so no worker, starting or busy, prints its own traceback."""
    if threading.current_thread() is not threading.main_thread():  # signals: main thread only
        return pool.submit(_run_logged, job, log)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return pool.submit(_run_logged, job, log)
    finally:
        signal.signal(signal.SIGINT, previous)


def _in_dependency_order(jobs: list[Job]) -> list[Job]:
    """The jobs in their given order, except that each comes after the jobs it waits for."""
    ordered: list[Job] = []
    placed: set[str] = set()
    remaining = list(jobs)
    while remaining:
        job = next((j for j in remaining if all(name in placed for name in j.after)), None)
        if job is None:
            raise ValueError(f"jobs wait for each other in a cycle: {[j.name for j in remaining]}")
        remaining.remove(job)
        ordered.append(job)
        placed.add(job.name)
    return ordered
