"""The parent's side: starts the zygote once per run, hands out sessions, cleans everything up.

Nothing outlives the sandbox: the zygote is pid 1 of its own pid namespace (its end kills every
worker and everything they started), it exits when this process ends (it watches a pidfd of it,
which works even after SIGKILL) or when `close` shuts its control channel.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
import weakref
from dataclasses import asdict
from pathlib import Path

from inference.processes import stop

from . import protocol
from .config import SandboxConfig
from .session import SandboxError, Session

_NAMESPACES = ["--fork", "--pid", "--mount-proc", "--net", "--mount", "--kill-child=SIGKILL"]
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_warned: set[str] = set()
START_TIMEOUT_S = 180.0


def _namespace_prefix(isolation: str) -> tuple[list[str], str | None]:
    """The `unshare` command line that works here (root, else a user namespace), or none."""
    if isolation == "off":
        return [], None
    unshare = shutil.which("unshare")
    if unshare is None:
        return [], "no `unshare` command"
    error = None
    for extra in ([], ["--user", "--map-root-user"]):
        cmd = [unshare, *extra, *_NAMESPACES, "--"]
        probe = subprocess.run([*cmd, "true"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return cmd, None
        error = probe.stderr.strip() or f"exit code {probe.returncode}"
    return [], error


def _raise_descriptor_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _validate(cfg: SandboxConfig) -> None:
    problems = []
    if cfg.mode not in ("persistent", "replay"):
        problems.append(f"mode must be 'persistent' or 'replay', got {cfg.mode!r}")
    if cfg.isolation not in ("auto", "require", "off"):
        problems.append(f"isolation must be 'auto', 'require' or 'off', got {cfg.isolation!r}")
    for name in ("timeout_s", "workers", "memory_mb", "disk_mb", "cpu_s", "max_procs", "forkers"):
        if not getattr(cfg, name) > 0:
            problems.append(f"{name} must be > 0, got {getattr(cfg, name)!r}")
    for name in ("kill_grace_s", "max_output_chars", "prestarted"):
        if getattr(cfg, name) < 0:
            problems.append(f"{name} must be >= 0, got {getattr(cfg, name)!r}")
    if problems:
        raise ValueError("SandboxConfig: " + "; ".join(problems))


class Sandbox:
    """`with Sandbox(cfg) as sb: with sb.session() as s: s.run(code)` (see the package doc)."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        _validate(self.config)
        self.missing: list[str] = []  # isolation layers this machine refused
        self._proc: subprocess.Popen | None = None
        self._channels: list[socket.socket] = []  # one control channel per forker
        self._send_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._stock: queue.Queue = queue.Queue()  # (worker id, socket) of ready workers
        self._stock_lock = threading.Lock()
        self._owed: list[int] = []  # per forker: workers asked for and not yet received
        self._waiting = 0  # threads blocked in spawn
        self._extra = 0  # workers asked for by `prestart`, not yet used
        self._status_waiters: dict[int, list] = {}
        self._requests = itertools.count()
        self._gone = False
        self._slots = threading.BoundedSemaphore(self.config.workers)
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self._finalizer = None
        self.closed = False

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> Sandbox:
        with self._start_lock:
            if self._proc is None:
                self._start()
        return self

    def _start(self) -> None:
        _raise_descriptor_limit()  # one socket per open trajectory: hundreds of them
        prefix, why_not = _namespace_prefix(self.config.isolation)
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(self.config.forkers)]
        pidfd = os.pidfd_open(os.getpid())
        theirs = [pair[1].fileno() for pair in pairs]
        spec = {"config": asdict(self.config), "namespaces": bool(prefix), "control_fds": theirs,
                "parent_pidfd": pidfd}
        env = {k: os.environ[k] for k in self.config.env_keep if k in os.environ}
        # MALLOC_ARENA_MAX: each thread's malloc arena reserves 64 MB of address space (RLIMIT_AS).
        env.update(PYTHONPATH=_PACKAGE_ROOT, PYTHONDONTWRITEBYTECODE="1", MALLOC_ARENA_MAX="2",
                   PYTHONHASHSEED=os.environ.get("PYTHONHASHSEED", "0"))
        try:
            self._proc = subprocess.Popen(
                [*prefix, sys.executable, "-m", "inference.sandbox.zygote", json.dumps(spec)],
                pass_fds=(*theirs, pidfd), env=env, stdin=subprocess.DEVNULL, cwd="/")
        finally:
            for pair in pairs:
                pair[1].close()
            os.close(pidfd)
        self._channels = [pair[0] for pair in pairs]
        self._owed = [0] * len(pairs)
        self._finalizer = weakref.finalize(self, _kill, self._proc, self._channels)
        for channel in self._channels:
            ready = self._wait_ready(channel)
        self.missing = list(ready.get("missing", []))
        if why_not:
            self.missing.insert(0, f"namespaces ({why_not})")
        self._report_missing()
        for index in range(len(self._channels)):
            threading.Thread(target=self._read_control, args=(index,), name=f"sandbox-control-{index}",
                             daemon=True).start()
        self._refill()

    @property
    def pid(self) -> int:
        """The sandbox's root process (`unshare`, or the zygote itself without namespaces)."""
        if self._proc is None:
            raise SandboxError("sandbox not started")
        return self._proc.pid

    def _wait_ready(self, channel: socket.socket) -> dict:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if protocol.readable([channel], 0.2):
                try:
                    msg, _ = protocol.recv_packet(channel)
                except protocol.ChannelClosed:
                    msg = {"error": "the zygote exited during start-up"}
                if msg.get("ready"):
                    return msg
                self.close()
                raise SandboxError(f"sandbox failed to start: {msg.get('error')}")
            if self._proc.poll() is not None:
                self.close()
                raise SandboxError(f"sandbox failed to start (exit code {self._proc.returncode})")
        self.close()
        raise SandboxError(f"sandbox did not start within {START_TIMEOUT_S:.0f} s")

    def _report_missing(self) -> None:
        if not self.missing or self.config.isolation == "off":
            return
        message = "sandbox: running without " + "; ".join(self.missing)
        if self.config.isolation == "require":
            self.close()
            raise SandboxError(message + " (isolation=require)")
        if message not in _warned:
            _warned.add(message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for session in list(self._sessions):
            with contextlib.suppress(SandboxError, OSError):
                session.close()
        if self._finalizer is not None:
            self._finalizer()
        while not self._stock.empty():
            item = self._stock.get_nowait()
            if item is not None:
                item[1].close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sessions -------------------------------------------------------------------------------
    def session(self, mode: str | None = None) -> Session:
        """A new trajectory; `mode` overrides the config's for this one."""
        if self.closed:
            raise SandboxError("sandbox is closed")
        if mode not in (None, "persistent", "replay"):
            raise ValueError(f"mode must be 'persistent' or 'replay', got {mode!r}")
        self.start()
        session = Session(self, mode or self.config.mode)
        self._sessions.add(session)
        return session

    def prestart(self, n: int) -> None:
        """Start `n` workers now, beyond the standing `prestarted`, for trajectories about to begin
        (e.g. while the model generates their first turn); each one used is not replaced."""
        with self._stock_lock:
            self._extra += n
        self._refill()

    def wait_stocked(self, timeout_s: float = START_TIMEOUT_S) -> bool:
        """Block until the stock is full (`prestarted` plus `prestart`ed workers) and every worker
        in it has isolated and warmed itself (its greeting waits to be read); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self._gone and time.monotonic() < deadline:
            with self._stock.mutex:
                stocked = [item[1] for item in self._stock.queue if item is not None]
            full = len(stocked) >= self.config.prestarted + self._extra
            if full and len(protocol.readable(stocked, 0)) == len(stocked):
                return True
            time.sleep(0.01)
        return False

    def forget(self, session: Session) -> None:
        self._sessions.discard(session)

    def slot(self) -> threading.BoundedSemaphore:
        """At most `workers` cells execute at once; a cell's timeout starts when it gets a slot."""
        return self._slots

    # -- the zygote -----------------------------------------------------------------------------
    def _send(self, index: int, msg: dict) -> None:
        with self._send_lock:
            try:
                protocol.send_packet(self._channels[index], msg)
            except OSError as exc:
                raise SandboxError(f"the sandbox's zygote is gone ({exc})") from None

    def _read_control(self, index: int) -> None:
        """Reader thread of one forker's channel: workers go to the stock, status answers to
        whoever asked."""
        try:
            while True:
                msg, fds = protocol.recv_packet(self._channels[index])
                if msg.get("op") == "worker" and fds:
                    with self._stock_lock:
                        self._owed[index] -= 1
                    self._stock.put((msg["id"], socket.socket(fileno=fds[0])))
                elif msg.get("op") == "status":
                    waiter = self._status_waiters.pop(msg.get("req"), None)
                    if waiter is not None:
                        waiter.append(msg)
                        waiter[0].set()
        except (protocol.ChannelClosed, OSError):
            pass
        self._gone = True
        self._stock.put(None)  # wakes a waiting spawn, which passes it on
        for waiter in list(self._status_waiters.values()):
            waiter[0].set()

    def _refill(self) -> None:
        """Ask the forkers for workers so that `prestarted` (and everyone waiting) will have one.
        Those for threads already waiting skip the warm-up cell: nobody should wait for it."""
        with self._stock_lock:
            coming = self._stock.qsize() + sum(self._owed)
            want = self.config.prestarted + self._extra + self._waiting - coming
            urgent = min(max(self._waiting - coming, 0), max(want, 0))
            orders = [[0, 0] for _ in self._owed]  # per forker: [urgent, warm]
            for k in range(max(want, 0)):
                index = min(range(len(self._owed)), key=lambda i: self._owed[i])
                self._owed[index] += 1
                orders[index][k >= urgent] += 1
        for index, (n_urgent, n_warm) in enumerate(orders):
            for n, warm in ((n_urgent, False), (n_warm, True)):
                if n:
                    self._send(index, {"op": "want", "n": n, "warm": warm})

    def spawn(self) -> tuple[int, socket.socket]:
        """A ready, isolated worker for a trajectory (normally already waiting in the stock)."""
        if self.closed or self._gone:
            raise SandboxError("sandbox is closed" if self.closed else "the sandbox's zygote is gone")
        with self._stock_lock:
            self._waiting += 1
        try:
            self._refill()
            item = self._stock.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            raise SandboxError(f"no sandbox worker within {START_TIMEOUT_S:.0f} s") from None
        finally:
            with self._stock_lock:
                self._waiting -= 1
        if item is None:
            self._stock.put(None)
            raise SandboxError("the sandbox's zygote is gone")
        with self._stock_lock:
            self._extra = max(self._extra - 1, 0)
        self._refill()
        return item

    def release(self, worker: int) -> None:
        """The worker exits when its channel closes; the kill is for code that would not let it."""
        if not self._gone:
            with contextlib.suppress(SandboxError):
                self._send(worker % len(self._channels), {"op": "kill", "ids": [worker]})

    def exit_status(self, worker: int, wait_s: float = 2.0) -> tuple[int | None, int | None]:
        """(exit code, signal) of a worker whose channel closed; kills it if it lingers."""
        deadline = time.monotonic() + wait_s
        while not self._gone:
            req = next(self._requests)
            waiter: list = [threading.Event()]
            self._status_waiters[req] = waiter
            self._send(worker % len(self._channels), {"op": "status", "id": worker, "req": req})
            if not waiter[0].wait(wait_s) or len(waiter) < 2:
                break
            reply = waiter[1]
            if not reply.get("alive"):
                return reply.get("code"), reply.get("signal")
            if time.monotonic() > deadline:
                self.release(worker)
                deadline = time.monotonic() + wait_s
            time.sleep(0.005)
        raise SandboxError("the sandbox's zygote is gone")


def _kill(proc: subprocess.Popen, channels: list[socket.socket]) -> None:
    """Closing the channels ends the forkers; killing `unshare` kills the rest (--kill-child)."""
    for channel in channels:
        with contextlib.suppress(OSError):
            channel.shutdown(socket.SHUT_RDWR)  # a reader thread blocked in recv holds the socket open
        channel.close()
    stop(proc, grace_s=5, ask=False)
