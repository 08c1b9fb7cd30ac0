"""One trajectory's process: forked from the zygote, isolated, then serving cells over a socket.

First message out, once isolated: {"hello": true}. Message in: {"setup": [cells run silently
first], "code": cell or null, "timeout": seconds};
`setup` and `code` share the one deadline (replay: the reference's single budget for the whole
re-execution). Message out: {"text": observation, "status": "ok" | "error" | "timeout"}.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass

from inference.processes import die_with_parent

from . import isolation, protocol
from .observation import compose
from .shell import PREFAULT, CellRunner

WORKER_BROKE = 113  # exit code when the worker's own code failed (e.g. the cell deleted a builtin)


@dataclass
class WorkerPlan:
    """Everything a freshly forked worker needs to isolate itself."""

    uid: int | None  # None: keep the zygote's uid (no per-trajectory uid layer)
    tmpfs: bool
    pid_ns: bool
    workdir: str  # used when there is no private tmpfs
    env: dict[str, str]
    address_space: int  # bytes the warm interpreter maps; memory_mb comes on top
    memory_mb: int
    disk_mb: int
    cpu_s: int
    max_procs: int
    max_output_chars: int
    warm: bool  # run the warm-up cell before saying hello (a worker for the stock)


def _isolate(plan: WorkerPlan) -> str:
    os.setsid()
    isolation.die_first_when_memory_runs_out()
    if plan.tmpfs:
        workdir = isolation.private_tmpfs(plan.disk_mb, plan.uid or 0, with_proc=plan.pid_ns)
    else:
        workdir = plan.workdir
        os.makedirs(workdir, mode=0o700)
        if plan.uid is not None:
            os.chown(workdir, plan.uid, plan.uid)
    isolation.set_limits(plan.address_space, plan.memory_mb, plan.disk_mb, plan.cpu_s,
                         plan.max_procs if plan.uid is not None else None)
    if plan.uid is not None:
        isolation.drop_privileges(plan.uid)
    isolation.no_new_privileges()
    die_with_parent(signal.SIGKILL)  # after the uid change, which clears it
    if not plan.pid_ns:
        isolation.subreaper()
    os.environ.clear()
    os.environ.update(plan.env, HOME=workdir, TMPDIR=workdir, PWD=workdir)
    os.chdir(workdir)
    return workdir


def _wire_stdio() -> int:
    """stdin reads nothing; what subprocesses write to stdout/stderr lands in a memfd."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    out = os.memfd_create("cell-output")
    os.dup2(out, 1)
    os.dup2(out, 2)
    return out


def _exit_if_forked(worker_pid: int) -> None:
    """A child the code forked (os.fork) returns from the cell too: it must not answer."""
    if os.getpid() != worker_pid:
        os._exit(0)


def serve(sock: socket.socket, runner: CellRunner, plan: WorkerPlan) -> None:
    """Never returns: the worker ends when the parent closes its channel or kills it."""
    _isolate(plan)
    runner.fd_output = _wire_stdio()
    if plan.warm:
        runner.run_invisibly(PREFAULT)
    protocol.send(sock, {"hello": True})
    me = os.getpid()
    while True:
        try:
            msg = protocol.recv(sock)
        except (protocol.ChannelClosed, OSError):
            os._exit(0)
        deadline = time.monotonic() + float(msg["timeout"])
        for cell in msg.get("setup") or ():
            runner.run(cell, deadline=deadline)
            _exit_if_forked(me)
        reply = {"text": "", "status": "ok"}
        if msg.get("code") is not None:
            obs = compose(*runner.run(msg["code"], deadline=deadline), plan.max_output_chars)
            _exit_if_forked(me)
            reply = {"text": obs.text, "status": obs.status}
        protocol.send(sock, reply)
