"""Where an experiment's work runs: executors that run tasks (one training run, one active-learning chain).

An experiment or active-learning file chooses one with ``executor:``
(:class:`~seldepth.experiments.spec.ExecutorSpec`)::

    executor: {kind: local}            # the default: worker processes on this machine, `jobs` at once
    executor: {kind: slurm, partition: gpu, time_minutes: 240, cpus_per_task: 8, gpus_per_node: 1, mem_gb: 32,
               parameters: {slurm_account: proj, slurm_additional_parameters: {reservation: r1}}}
    executor: {kind: submitit-local}   # submitit's LocalExecutor: the SLURM path, run on this machine

Every executor runs a task as ``fn(*args)`` in a fresh Python process (the ``local`` kind:
``python -m seldepth.experiments.executors``; the submitit kinds: a submitit job per task), so
an experiment's run does the same wherever it runs: :func:`seldepth.experiments.runner.run_one`,
which skips a finished run and resumes an interrupted one. A task starts once the tasks named in
its ``after`` have succeeded, and is not started when one of them failed; on SLURM, the job of a
task is submitted only when the jobs it waits for have finished. A submitit job stopped at its
time limit is requeued (submitit's checkpointing, up to 3 times) and the run resumes from its
last checkpoint.

To add an executor: subclass :class:`Executor` (``_start`` and ``_poll``) and name it in
:func:`make_executor`.

Example:
    >>> from seldepth.experiments.executors import LocalExecutor, Task  # doctest: +SKIP
    >>> outcomes = LocalExecutor(jobs=2).run([Task("a", "math:factorial", (5,))])  # doctest: +SKIP
    >>> outcomes["a"].value  # doctest: +SKIP
    120
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import pickle
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from seldepth.experiments.spec import EXECUTOR_KINDS, ExecutorSpec, _fill_out


@dataclass(frozen=True)
class Task:
    """One piece of work: ``fn(*args)`` in its own process.

    Attributes:
        name: unique among the tasks of one :meth:`Executor.run`.
        fn: a module-level function, or its ``"module:name"``; imported in the worker process.
        args: its arguments (picklable).
        after: names of tasks that must succeed before this one starts (names of other tasks only).
        log: the file the worker's output is appended to (default: the executor's: the console for
            ``local``, submitit's log folder for the submitit kinds).
    """

    name: str
    fn: Callable[..., Any] | str
    args: tuple = ()
    after: tuple[str, ...] = ()
    log: Path | None = None

    @property
    def ref(self) -> str:
        """``fn`` as ``"module:name"``."""
        if isinstance(self.fn, str):
            return self.fn
        module, name = getattr(self.fn, "__module__", None), getattr(self.fn, "__qualname__", "")
        if not module or module == "__main__" or "." in name or "<" in name:
            raise ValueError(f"task {self.name!r}: {self.fn!r} is not a module-level function a worker can import")
        return f"{module}:{name}"


@dataclass(frozen=True)
class Outcome:
    """How a task ended.

    Attributes:
        ok: it returned.
        value: what it returned.
        error: why it failed (``exit 1``, the exception), empty when ``ok``.
        seconds: from its start (or submission) to its end.
        log: where its output is.
        blocked_by: the failed task it waited for (it was not started).
    """

    ok: bool
    value: Any = None
    error: str = ""
    seconds: float = 0.0
    log: str | None = None
    blocked_by: str | None = None


class Executor:
    """Runs tasks, each in a fresh process: at most ``slots`` at once, a task after those it waits for.

    Args:
        slots: tasks running (or queued) at once; ``None``: no limit.
        threads: torch threads of each task (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``); ``None``: leave them.
    """

    poll_seconds = 0.5

    def __init__(self, slots: int | None = 1, threads: int | None = None):
        if slots is not None and slots < 1:
            raise ValueError(f"slots must be >= 1 or None, got {slots}")
        self.slots, self.threads = slots, threads

    def run(self, tasks: list[Task], on_start: Callable[[Task, str], None] | None = None,
            on_end: Callable[[Task, Outcome], None] | None = None) -> dict[str, Outcome]:
        """Run ``tasks`` (in their order, as they become ready) and wait for all of them.

        Args:
            on_start: called with a task and a line saying where it runs, when it starts.
            on_end: called with a task and its outcome, when it ends (or is not started).

        Returns:
            Each task's outcome by name, in the order they ended.

        Raises:
            ValueError: two tasks of one name.
            RuntimeError: tasks that wait for each other.
        """
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {', '.join(names)}")
        pending, running, outcomes = list(tasks), [], {}

        def end(task: Task, outcome: Outcome) -> None:
            outcomes[task.name] = outcome
            if on_end is not None:
                on_end(task, outcome)

        self._begin()
        try:
            while pending or running:
                for task in list(pending):  # a task whose prerequisite failed is not started
                    lost = [d for d in task.after if d in outcomes and not outcomes[d].ok]
                    if lost:
                        pending.remove(task)
                        end(task, Outcome(False, error=f"{lost[0]} failed", blocked_by=lost[0]))
                while self.slots is None or len(running) < self.slots:
                    ready = [t for t in pending if all(d not in names or (d in outcomes and outcomes[d].ok) for d in t.after)]
                    if not ready:
                        if not running and pending:  # only tasks waiting for tasks that will never end
                            raise RuntimeError(f"{', '.join(t.name for t in pending)} wait for each other")
                        break
                    task = ready[0]
                    pending.remove(task)
                    handle, where = self._start(task)
                    running.append((task, handle, time.time()))
                    if on_start is not None:
                        on_start(task, where)
                if not running:
                    continue
                time.sleep(self.poll_seconds)
                for item in list(running):
                    task, handle, t0 = item
                    outcome = self._poll(task, handle)
                    if outcome is not None:
                        running.remove(item)
                        end(task, dataclasses.replace(outcome, seconds=time.time() - t0))
        finally:
            self._end()
        return outcomes

    def _begin(self) -> None:
        """Before the first task of :meth:`run`."""

    def _end(self) -> None:
        """After :meth:`run` (also when it fails)."""

    def _start(self, task: Task) -> tuple[Any, str]:
        """Start ``task``; returns a handle for :meth:`_poll` and a line saying where it runs."""
        raise NotImplementedError

    def _poll(self, task: Task, handle: Any) -> Outcome | None:
        """``None`` while the task runs, then its outcome (``seconds`` is filled in by :meth:`run`)."""
        raise NotImplementedError


class LocalExecutor(Executor):
    """Worker processes on this machine (``python -m seldepth.experiments.executors``), ``jobs`` at once, each
    with ``cores // jobs`` threads; a task's output goes to its ``log`` (else to the console)."""

    def __init__(self, jobs: int = 1, threads: int | None = None):
        super().__init__(jobs, threads or max(1, (os.cpu_count() or 1) // jobs))
        self._folder: tempfile.TemporaryDirectory | None = None
        self._count = 0

    def _begin(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="seldepth-tasks-")

    def _end(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def _start(self, task: Task) -> tuple[Any, str]:
        self._count += 1
        call = Path(self._folder.name) / f"{self._count}.call"
        call.write_bytes(pickle.dumps((task.ref, task.args, self.threads)))
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        with open(task.log, "ab") if task.log is not None else contextlib.nullcontext() as log:
            proc = subprocess.Popen([sys.executable, "-m", "seldepth.experiments.executors", str(call), str(call) + ".out"],
                                    stdout=log, stderr=subprocess.STDOUT if log else None, env=env)
        return (proc, Path(str(call) + ".out")), f"started ({self.threads} threads)" + (f", log {task.log}" if task.log else "")

    def _poll(self, task: Task, handle: Any) -> Outcome | None:
        proc, result = handle
        if proc.poll() is None:
            return None
        log = str(task.log) if task.log else None
        if proc.returncode != 0:
            return Outcome(False, error=f"exit {proc.returncode}", log=log)
        return Outcome(True, pickle.loads(result.read_bytes()), log=log)


class _Job(submitit.helpers.Checkpointable):
    """A submitit job: :func:`call` of a task. Checkpointable: a job stopped at its time limit is requeued
    with the same arguments (the task resumes from what it saved)."""

    def __init__(self, fn: str, args: tuple, threads: int | None, log: str | None):
        self.fn, self.args, self.threads, self.log = fn, args, threads, log

    def __call__(self) -> Any:
        return call(self.fn, self.args, self.threads, self.log)


class SubmititExecutor(Executor):
    """One submitit job per task: on a SLURM cluster (``cluster="slurm"``) or on this machine (``"local"``,
    submitit's LocalExecutor). A task's output goes to its ``log`` (else to submitit's log folder).

    Args:
        spec: time limit, resources and further ``update_parameters`` arguments.
        folder: submitit's job files and logs.
        cluster: ``slurm`` or ``local``.
        slots, threads: see :class:`Executor`.

    Raises:
        ValueError: ``executor.parameters`` that submitit refuses; ``executor.kind: slurm`` off a SLURM cluster.
    """

    def __init__(self, spec: ExecutorSpec, folder: str | os.PathLike, cluster: str, slots: int | None,
                 threads: int | None):
        super().__init__(slots, threads)
        self.poll_seconds = 1.0 if cluster == "local" else 10.0
        try:
            self.submitit = submitit.AutoExecutor(folder=folder, cluster=cluster)
        except RuntimeError as exc:  # no srun here
            raise ValueError(f"executor.kind: {spec.kind} needs a SLURM cluster ({exc}); kinds: "
                             f"{', '.join(EXECUTOR_KINDS)}") from None
        generic = {"timeout_min": spec.time_minutes, "cpus_per_task": spec.cpus_per_task,
                   "gpus_per_node": spec.gpus_per_node, "mem_gb": spec.mem_gb, "slurm_partition": spec.partition}
        try:
            self.submitit.update_parameters(**{k: v for k, v in generic.items() if v is not None})
            self.submitit.update_parameters(**spec.parameters)
        except (AssertionError, NameError, TypeError, ValueError) as exc:
            raise ValueError(f"executor.parameters: submitit refused them: {' '.join(str(exc).split())}") from None

    def _start(self, task: Task) -> tuple[Any, str]:
        self.submitit.update_parameters(name=task.name)
        job = self.submitit.submit(_Job(task.ref, task.args, self.threads, str(task.log) if task.log else None))
        threads = f", {self.threads} threads" if self.threads else ""
        return job, f"submitted as job {job.job_id}{threads}, log {task.log or job.paths.stdout}"

    def _poll(self, task: Task, job: Any) -> Outcome | None:
        if not job.done():
            return None
        log = str(task.log) if task.log else str(job.paths.stderr)
        try:
            return Outcome(True, job.result(), log=log)
        except Exception as exc:  # the task's exception, or the job ended without a result
            return Outcome(False, error=_last_error(str(exc)), log=log)


def _last_error(text: str) -> str:
    """The exception line of a submitit failure (its message holds the worker's traceback between dashed lines)."""
    lines = [line.strip() for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("Traceback")), None)
    if start is not None:
        trace = []
        for line in lines[start + 1:]:
            if line and set(line) == {"-"}:
                break
            if line:
                trace.append(line)
        if trace:
            return trace[-1]
    return next((line for line in lines if line and set(line) != {"-"}), "failed")


def make_executor(spec: ExecutorSpec, jobs: int, out: str | os.PathLike) -> Executor:
    """The executor an ``executor:`` section names, for ``jobs`` runs at once and output folder ``out``.

    Raises:
        ValueError: naming ``executor.kind`` or ``executor.parameters``.
    """
    if spec.kind == "local":
        return LocalExecutor(jobs)
    folder = Path(_fill_out(spec.folder, Path(out))) if spec.folder else Path(out) / "submitit"
    if spec.kind == "submitit-local":
        return SubmititExecutor(spec, folder, "local", slots=jobs, threads=max(1, (os.cpu_count() or 1) // jobs))
    if spec.kind == "slurm":
        return SubmititExecutor(spec, folder, "slurm", slots=spec.max_running, threads=spec.cpus_per_task)
    raise ValueError(f"executor.kind: unknown executor {spec.kind!r}; kinds: {', '.join(EXECUTOR_KINDS)}")


@contextlib.contextmanager
def _output_to(log: str | None):
    """Within the block, this process's stdout and stderr (file descriptors 1 and 2) append to ``log``."""
    if log is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def call(fn: str, args: tuple = (), threads: int | None = None, log: str | None = None) -> Any:
    """Worker side: ``fn(*args)`` (``fn`` as ``"module:name"``) with ``threads`` torch threads and the output
    appended to ``log`` (both optional)."""
    if threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    with _output_to(log):
        module, _, name = fn.partition(":")
        function = getattr(importlib.import_module(module), name)
        if threads and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        try:
            return function(*args)
        except BaseException:
            if log is not None:  # the log tells why (the caller gets the exception too)
                traceback.print_exc()
            raise


def _main(argv: list[str]) -> None:
    """``python -m seldepth.experiments.executors CALL RESULT``: the local executor's worker."""
    call_file, result_file = argv
    fn, args, threads = pickle.loads(Path(call_file).read_bytes())
    value = call(fn, args, threads)
    Path(result_file).write_bytes(pickle.dumps(value))


if __name__ == "__main__":
    _main(sys.argv[1:])
