"""One trajectory's view of the sandbox: its cells, in order, in one private worker."""

from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING

from . import protocol
from .observation import TIMEOUT_KILLED, Observation
from .worker import WORKER_BROKE

if TYPE_CHECKING:
    from .pool import Sandbox

HELLO_TIMEOUT_S = 60.0  # a worker forked in advance has long said hello


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the code it ran)."""


def crash_text(code: int | None, sig: int | None) -> str:
    """What the model sees when its code ended the interpreter (os._exit, a segfault, ...)."""
    if sig is not None:
        return f"RuntimeError: the interpreter was killed: {signal.strsignal(sig) or sig}"
    if code is None:
        return "RuntimeError: the interpreter stopped responding"
    if code == WORKER_BROKE:
        return "RuntimeError: the interpreter crashed (the code broke its machinery)"
    return f"SystemExit: {code}"


class Session:
    """Cheap to create: the worker is taken from the sandbox at the first `run`.

    persistent mode: one live shell; if its process dies (crash, killed at the timeout) the
    next cell first silently re-runs the cells that had completed, to restore the state.
    replay mode (the reference): every `run` takes a fresh worker and re-runs all earlier cells,
    under one budget, and returns the last cell's observation.
    """

    def __init__(self, sandbox: Sandbox, mode: str) -> None:
        self._sandbox = sandbox
        self.mode = mode
        self._lock = threading.Lock()
        self._worker: int | None = None
        self._sock = None
        self._greeted = False
        self.cells: list[str] = []  # every cell run, in order
        self._completed: list[str] = []  # cells whose effects the live state holds (persistent)
        self.closed = False

    # -- public ---------------------------------------------------------------------------------
    def run(self, code: str) -> Observation:
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, got {type(code).__name__}")
        with self._lock:
            if self.closed:
                raise SandboxError("session is closed")
            with self._sandbox.slot():
                obs = self._replay(code) if self.mode == "replay" else self._persistent(code)
            self.cells.append(code)
            return obs

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._drop_worker()
                self._sandbox.forget(self)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- modes ----------------------------------------------------------------------------------
    def _replay(self, code: str) -> Observation:
        self._take_worker()
        try:
            return self._exchange({"setup": self.cells, "code": code})
        finally:
            self._drop_worker()

    def _persistent(self, code: str) -> Observation:
        if self._worker is None:
            self._take_worker()
            if self._completed:
                restored = self._exchange({"setup": self._completed, "code": None})
                if restored.status == "timeout" or self._worker is None:
                    self._completed = []  # could not rebuild the state: carry on without it
                    if self._worker is None:
                        self._take_worker()
        obs = self._exchange({"code": code})
        if obs.status != "timeout" and self._worker is not None:
            self._completed.append(code)
        return obs

    # -- plumbing -------------------------------------------------------------------------------
    def _take_worker(self) -> None:
        self._worker, self._sock = self._sandbox.spawn()
        self._greeted = False

    def _drop_worker(self) -> None:
        if self._worker is None:
            return
        self._sock.close()
        self._sandbox.release(self._worker)
        self._worker = self._sock = None

    def _exchange(self, msg: dict) -> Observation:
        """Send one request; a missing reply means a timeout (the worker is killed) or a crash."""
        cfg = self._sandbox.config
        msg["timeout"] = cfg.timeout_s
        deadline = time.monotonic() + cfg.timeout_s + cfg.kill_grace_s
        if not self._greeted:  # normally already waiting: the worker isolated itself in advance
            self._recv_before(time.monotonic() + HELLO_TIMEOUT_S, greeting=True)
            self._greeted = True
        try:
            protocol.send(self._sock, msg)
            reply = self._recv_before(deadline)
        except TimeoutError:
            self._drop_worker()
            return Observation(TIMEOUT_KILLED, "timeout")
        except (protocol.ChannelClosed, OSError):
            code, sig = self._sandbox.exit_status(self._worker)
            self._drop_worker()
            return Observation(crash_text(code, sig), "error")
        status = reply.get("status")
        if status not in ("ok", "error", "timeout") or not isinstance(reply.get("text"), str):
            self._drop_worker()
            return Observation(crash_text(None, None), "error")
        return Observation(reply["text"], status)

    def _recv_before(self, deadline: float, greeting: bool = False) -> dict:
        self._sock.settimeout(max(deadline - time.monotonic(), 1e-3))
        try:
            return protocol.recv(self._sock)
        except (protocol.ChannelClosed, OSError):
            if greeting:
                code, sig = self._sandbox.exit_status(self._worker)
                raise SandboxError(f"a sandbox worker failed to start (exit code {code}, signal {sig}); "
                                   "see the zygote's messages on stderr") from None
            raise
