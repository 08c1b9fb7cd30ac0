"""The parent's side: starts the zygote once per run, hands out sessions, cleans everything up.

Nothing outlives the sandbox: the zygote is pid 1 of its own pid namespace (its end kills every
worker and everything they started), it exits when this process ends (it watches a pidfd of it,
which works even after SIGKILL) or when `close` shuts its control channel.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
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


def _validate(cfg: SandboxConfig) -> None:
    problems = []
    if cfg.mode not in ("persistent", "replay"):
        problems.append(f"mode must be 'persistent' or 'replay', got {cfg.mode!r}")
    if cfg.isolation not in ("auto", "require", "off"):
        problems.append(f"isolation must be 'auto', 'require' or 'off', got {cfg.isolation!r}")
    for name in ("timeout_s", "workers", "memory_mb", "disk_mb", "cpu_s", "max_procs"):
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
        self._control: socket.socket | None = None
        self._control_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.config.workers)
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self._finalizer = None
        self.closed = False

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> Sandbox:
        if self._proc is not None:
            return self
        prefix, why_not = _namespace_prefix(self.config.isolation)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pidfd = os.pidfd_open(os.getpid())
        spec = {"config": asdict(self.config), "namespaces": bool(prefix),
                "control_fd": theirs.fileno(), "parent_pidfd": pidfd}
        env = {k: os.environ[k] for k in self.config.env_keep if k in os.environ}
        env.update(PYTHONPATH=_PACKAGE_ROOT, PYTHONDONTWRITEBYTECODE="1",
                   PYTHONHASHSEED=os.environ.get("PYTHONHASHSEED", "0"))
        try:
            self._proc = subprocess.Popen(
                [*prefix, sys.executable, "-m", "inference.sandbox.zygote", json.dumps(spec)],
                pass_fds=(theirs.fileno(), pidfd), env=env, stdin=subprocess.DEVNULL, cwd="/")
        finally:
            theirs.close()
            os.close(pidfd)
        self._control = ours
        self._finalizer = weakref.finalize(self, _kill, self._proc, ours)
        ready = self._wait_ready()
        self.missing = list(ready.get("missing", []))
        if why_not:
            self.missing.insert(0, f"namespaces ({why_not})")
        self._report_missing()
        return self

    def _wait_ready(self) -> dict:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if select.select([self._control], [], [], 0.2)[0]:
                try:
                    msg, _ = protocol.recv_packet(self._control)
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

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sessions -------------------------------------------------------------------------------
    def session(self) -> Session:
        if self.closed:
            raise SandboxError("sandbox is closed")
        self.start()
        session = Session(self)
        self._sessions.add(session)
        return session

    def forget(self, session: Session) -> None:
        self._sessions.discard(session)

    def slot(self) -> threading.BoundedSemaphore:
        """At most `workers` cells execute at once; a cell's timeout starts when it gets a slot."""
        return self._slots

    # -- zygote requests ------------------------------------------------------------------------
    def _request(self, msg: dict) -> tuple[dict, list[int]]:
        if self.closed and msg["op"] == "spawn":
            raise SandboxError("sandbox is closed")
        with self._control_lock:
            try:
                protocol.send_packet(self._control, msg)
                return protocol.recv_packet(self._control)
            except (protocol.ChannelClosed, OSError) as exc:
                raise SandboxError(f"the sandbox's zygote is gone ({exc})") from None

    def spawn(self) -> tuple[int, socket.socket]:
        reply, fds = self._request({"op": "spawn"})
        if not fds:
            raise SandboxError(f"zygote sent no worker: {reply}")
        return reply["id"], socket.socket(fileno=fds[0])

    def release(self, worker: int) -> None:
        with contextlib.suppress(SandboxError):
            self._request({"op": "release", "id": worker})

    def exit_status(self, worker: int, wait_s: float = 2.0) -> tuple[int | None, int | None]:
        """(exit code, signal) of a worker whose channel closed; kills it if it lingers."""
        deadline = time.monotonic() + wait_s
        while True:
            reply, _ = self._request({"op": "status", "id": worker})
            if not reply.get("alive"):
                return reply.get("code"), reply.get("signal")
            if time.monotonic() > deadline:
                self._request({"op": "kill", "id": worker})
                deadline = time.monotonic() + wait_s
            time.sleep(0.005)


def _kill(proc: subprocess.Popen, control: socket.socket) -> None:
    """Closing the channel makes the zygote exit; killing `unshare` kills it (--kill-child)."""
    control.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
