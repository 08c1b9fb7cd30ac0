"""Processes that must not outlive their owner: the one place for how that is done here.

A process left running after its owner died holds GPUs, a sandbox's uids or a port, and a re-run
that resumes would race it. Two cases:
- a child we start ourselves (a pipeline stage, a sandbox worker): `die_with_parent` in the child
  (the kernel signals it when the parent dies, even by SIGKILL), and `stop` to end it in order;
- processes someone else starts for us (vLLM's engine cores and workers): `OrphanGuard`, a
  watchdog that ends them if our process dies without saying goodbye.
Stdlib only (psutil for the guard), so the pipeline and the sandbox's workers can import it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """In a child (e.g. a `preexec_fn`): the kernel sends `sig` when the parent dies, even by
    SIGKILL (Linux; elsewhere nothing). `parent`: the pid that started us; if it is already gone
    (it died before the request took effect), exit now. A uid change clears the request."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if parent is not None and os.getppid() != parent:
        os._exit(128 + int(sig))


def stop(proc: subprocess.Popen, grace_s: float, ask: bool = True, group: bool = False) -> None:
    """End `proc`: SIGTERM (unless `ask` is False: the caller has asked its own way), then SIGKILL
    if it is still there after `grace_s`; always reaped. `group`: `proc` leads its own process
    group (start_new_session) and the signals go to the whole group, its grandchildren too."""
    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)

    if ask and proc.poll() is None:
        send(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()
    if group:  # the leader gone, a grandchild that ignored SIGTERM must not stay
        send(signal.SIGKILL)


# Run by OrphanGuard's watchdog: stdin ends without a byte = the parent died unannounced.
_GUARD = """
import sys, psutil
if sys.stdin.buffer.read(1):
    sys.exit(0)
procs = []
for arg in sys.argv[1:]:
    pid, created = arg.split("@")
    try:
        p = psutil.Process(int(pid))
        if abs(p.create_time() - float(created)) < 0.01:
            procs.append(p)
    except psutil.Error:
        pass
for p in procs:
    try:
        p.terminate()
    except psutil.Error:
        pass
for p in psutil.wait_procs(procs, timeout=5)[1]:
    try:
        p.kill()
    except psutil.Error:
        pass
"""


class OrphanGuard:
    """vLLM's engine processes outlive a SIGKILLed parent (holding its GPUs, so a re-run could
    not start), and they are not our children to `die_with_parent`. A watchdog process holds a
    pipe from this one; if the pipe closes without a goodbye, it ends the processes started since
    `before` (multiprocessing's resource tracker excepted: it cleans up after them)."""

    def __init__(self, before: set[int]):
        import psutil

        started = []
        for p in psutil.Process().children(recursive=True):
            try:
                if p.pid not in before and "resource_tracker" not in " ".join(p.cmdline()):
                    started.append(f"{p.pid}@{p.create_time()}")
            except psutil.Error:
                continue
        self.proc = subprocess.Popen([sys.executable, "-c", _GUARD, *started], stdin=subprocess.PIPE,
                                     start_new_session=True)

    @staticmethod
    def snapshot() -> set[int]:
        import psutil

        return {p.pid for p in psutil.Process().children(recursive=True)}

    def release(self) -> None:
        """A clean exit: the watchdog leaves without touching anything."""
        self.proc.stdin.write(b"x")
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
