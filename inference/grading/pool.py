"""Grading with a time limit on every call, safe from any thread or process.

math-verify's and the reference's timeouts rest on SIGALRM, which only works in the main thread
(elsewhere it raises, and wrappers that swallow the error score everything wrong). Here each call
runs in a worker subprocess (`inference.grading.worker`) and the caller's thread watches the
clock: a call that overruns, or kills its worker, has its worker killed and replaced, scores
False, and is reported in `timeouts` (SPEC 3.5: the reference also scores a timeout False).
Workers are plain subprocesses, not multiprocessing children, so the pool also works inside
daemon processes and never re-imports the caller's `__main__`.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import os
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..cpus import usable_cpus
from .graders import GRADERS, Pair, check_names

log = logging.getLogger(__name__)
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
DEFAULT_TIMEOUT_S = 10.0  # SPEC 3.5: the reference's evaluate.py gives each item 10 s
STARTUP_TIMEOUT_S = 180.0  # importing sympy on a busy 2-core machine can take a while


@dataclass
class Grade:
    """One pair's decisions; a grader in `timeouts` (timed out or crashed) scored False."""

    scores: dict[str, bool]
    timeouts: list[str] = field(default_factory=list)


class _Worker:
    def __init__(self, memory_mb: int):
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (_REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inference.grading.worker", "--memory-mb", str(memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env, cwd=_REPO_ROOT)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buffer = b""
        self.ready = False
        self.born = time.monotonic()
        self.inflight: collections.deque[int] = collections.deque()
        self.started = 0.0  # when the task at the head of `inflight` began

    def lines(self) -> list[bytes] | None:
        """Complete lines available now; None once the worker has exited."""
        try:
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self.buffer += chunk
        *done, self.buffer = self.buffer.split(b"\n")
        return done

    def send(self, tasks: list[list]) -> None:
        self.proc.stdin.write((json.dumps(tasks) + "\n").encode())
        self.proc.stdin.flush()
        self.inflight.extend(t[0] for t in tasks)
        self.started = time.monotonic()

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self.stderr.close()


class GradingPool:
    """`GradingPool(graders=("paper", "strict"), timeout_s=10, workers=2).grade_many(pairs)`.

    One batch at a time per pool (a lock serialises callers from several threads). Workers start
    on first use and are re-used; `close()` (or leaving a `with` block) stops them.
    """

    def __init__(self, graders: tuple[str, ...] | list[str] = GRADERS, timeout_s: float = DEFAULT_TIMEOUT_S,
                 workers: int | None = None, memory_mb: int = 4096):
        check_names(graders)
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.graders = tuple(graders)
        self.timeout_s = timeout_s
        self.n_workers = max(1, workers or usable_cpus())
        self.memory_mb = memory_mb
        self.errors: list[str] = []  # grader exceptions seen (each scored False)
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        atexit.register(self.close)

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for w in self._workers:
            w.kill()
        self._workers = []

    def grade_many(self, pairs, graders: tuple[str, ...] | list[str] | None = None,
                   progress: str | None = None, timeout_s: float | None = None) -> list[Grade]:
        """Decisions for each pair (a `Pair`, or a tuple `(pred, gt[, pred_raw, gt_raw])`) under
        each grader, in input order. `progress`: a tqdm description, or None for no bar."""
        graders = tuple(graders or self.graders)
        check_names(graders)
        pairs = [p if isinstance(p, Pair) else Pair(*p) for p in pairs]
        tasks = [[i * len(graders) + j, g, *pair]
                 for i, pair in enumerate(pairs) for j, g in enumerate(graders)]
        with self._lock:
            results = self._run(tasks, timeout_s or self.timeout_s, progress)
        grades = []
        for i in range(len(pairs)):
            grade = Grade({})
            for j, g in enumerate(graders):
                decision = results[i * len(graders) + j]
                grade.scores[g] = bool(decision)
                if decision is None:
                    grade.timeouts.append(g)
            grades.append(grade)
        return grades

    def _run(self, tasks: list[list], timeout_s: float, progress: str | None) -> dict[int, bool | None]:
        todo = collections.deque(tasks)
        by_id = {t[0]: t for t in tasks}
        results: dict[int, bool | None] = {}
        bar = tqdm(total=len(tasks), desc=progress, unit="call", disable=progress is None, leave=False)
        while len(self._workers) < self.n_workers:
            self._workers.append(_Worker(self.memory_mb))
        sel = selectors.DefaultSelector()
        try:
            for w in self._workers:
                sel.register(w.proc.stdout, selectors.EVENT_READ, w)
            while len(results) < len(tasks):
                self._dispatch(todo)
                for key, _ in sel.select(timeout=0.05):
                    self._collect(key.data, sel, todo, by_id, results, bar)
                self._enforce(sel, todo, by_id, results, bar, timeout_s)
        finally:
            sel.close()
            bar.close()
        return results

    def _dispatch(self, todo: collections.deque) -> None:
        idle = [w for w in self._workers if w.ready and not w.inflight]
        for w in idle:
            if not todo:
                return
            size = max(1, min(16, len(todo) // (2 * self.n_workers)))
            w.send([todo.popleft() for _ in range(min(size, len(todo)))])

    def _collect(self, w: _Worker, sel, todo, by_id, results, bar) -> None:
        lines = w.lines()
        if lines is None:  # the worker died: its current call failed, the rest go back
            self._replace(w, sel, todo, by_id, results, bar, f"worker exited ({w.proc.poll()})")
            return
        for line in lines:
            msg = json.loads(line)
            if isinstance(msg, dict):
                w.ready = True
                continue
            task_id, decision, error = msg
            if error:
                self.errors.append(f"{by_id[task_id][1]}: {error}")
                log.warning("grader error (scored False): %s", error)
            if w.inflight and w.inflight[0] == task_id:
                w.inflight.popleft()
            results[task_id] = decision
            w.started = time.monotonic()
            bar.update(1)

    def _enforce(self, sel, todo, by_id, results, bar, timeout_s: float) -> None:
        now = time.monotonic()
        for w in list(self._workers):
            if w.inflight and now - w.started > timeout_s:
                self._replace(w, sel, todo, by_id, results, bar, f"timed out after {timeout_s:g} s")
            elif not w.ready and now - w.born > STARTUP_TIMEOUT_S:
                tail = w.stderr_tail()
                w.kill()
                raise RuntimeError(f"grading worker did not start in {STARTUP_TIMEOUT_S:g} s:\n{tail}")

    def _replace(self, w: _Worker, sel, todo, by_id, results, bar, why: str) -> None:
        if not w.ready:
            tail = w.stderr_tail()
            w.kill()
            raise RuntimeError(f"grading worker failed to start:\n{tail}")
        if w.inflight:
            failed = w.inflight.popleft()
            results[failed] = None
            bar.update(1)
            log.info("grading call %s (%s) %s; scored False", failed, by_id[failed][1], why)
            todo.extendleft(by_id[t] for t in reversed(w.inflight))
        sel.unregister(w.proc.stdout)
        w.kill()
        fresh = _Worker(self.memory_mb)
        self._workers[self._workers.index(w)] = fresh
        sel.register(fresh.proc.stdout, selectors.EVENT_READ, fresh)


_shared: dict[str, GradingPool] = {}
_shared_lock = threading.Lock()


def shared_pool() -> GradingPool:
    """One worker, started on first use, for `grade()`'s single calls."""
    with _shared_lock:
        if "pool" not in _shared:
            _shared["pool"] = GradingPool(graders=GRADERS, workers=1)
        return _shared["pool"]
