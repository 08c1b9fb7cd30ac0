"""The zygote: one pre-warmed, already-isolated interpreter that forks a worker per trajectory.

It imports IPython, sympy and numpy once and warms a shell, then forks: every worker shares those
pages copy-on-write, so hundreds of open trajectories cost megabytes each, not a full interpreter,
and starting one costs a fork instead of seconds of imports. It keeps `prestarted` workers forked
ahead of demand. Requests on the control channel (one reply each):
  {"op": "spawn"}            -> {"id": n} with the worker's socket attached
  {"op": "kill", "id": n}    -> {} (SIGKILL; with pid namespaces, everything it started dies too)
  {"op": "status", "id": n}  -> {"alive": bool, "code": exit code or null, "signal": n or null}
  {"op": "release", "id": n} -> {} (kill and forget)
It exits, killing everything, when the parent process ends (pidfd) or closes the channel.
Started by `inference.sandbox.pool` as `python -m inference.sandbox.zygote SPEC_JSON`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import traceback
from dataclasses import dataclass

from . import isolation, protocol
from .worker import WorkerPlan, serve

# Threads would not survive fork, and a sandbox shares the machine: one BLAS thread per worker.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"


@dataclass
class _Worker:
    pid: int
    sock: socket.socket | None  # the parent's end, until handed over
    uid: int | None
    workdir: str


class Zygote:
    def __init__(self, spec: dict, control: socket.socket) -> None:
        self.cfg = spec["config"]
        self.control = control
        self.layers = isolation.Layers(namespaces=spec["namespaces"])
        self.workers: dict[int, _Worker] = {}
        self.stock: list[int] = []
        self.exited: dict[int, tuple[int | None, int | None]] = {}
        self.released: set[int] = set()
        self.next_id = 0
        self.own_pid_ns: int | None = None
        self.base_dir = ""  # parent of the workers' directories when they get no tmpfs
        self.env = {k: v for k, v in os.environ.items() if k in set(self.cfg["env_keep"])}
        self.env.update({k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
        self.env["PYTHONHASHSEED"] = os.environ.get("PYTHONHASHSEED", "")
        if not self.env["PYTHONHASHSEED"]:
            del self.env["PYTHONHASHSEED"]
        self.runner = None

    # -- set-up -------------------------------------------------------------------------------
    def isolate_filesystem(self) -> None:
        if not self.layers.worker_tmpfs:
            self.base_dir = tempfile.mkdtemp(prefix="sandbox-")
        if not self.layers.namespaces:
            return
        needed = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.realpath(sys.executable),
                  *[p for p in sys.path if p], self.base_dir]
        try:
            isolation.hide_directories(needed, also_hide=[os.path.expanduser("~")])
            self.layers.hidden_home = True
        except OSError as exc:
            print(f"sandbox: cannot hide directories: {exc}", file=sys.stderr)
        if not self.layers.worker_tmpfs:
            return  # the workers' directories live on the real file system
        try:
            isolation.make_readonly()
            self.layers.readonly_fs = True
        except OSError as exc:
            print(f"sandbox: cannot make file systems read-only: {exc}", file=sys.stderr)

    def probe_worker_layers(self) -> None:
        self.layers.worker_uid = self.cfg["isolation"] != "off" and isolation.uid_switch_possible()
        if not self.layers.namespaces:
            return
        try:
            self.own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY)
            isolation.next_child_in_new_pid_namespace(self.own_pid_ns)
            self.layers.worker_pid_ns = True
        except OSError:
            self.own_pid_ns = None
        pid = os.fork()
        if pid == 0:
            try:
                isolation.private_tmpfs(1, 0, with_proc=self.layers.worker_pid_ns)
                os._exit(0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        self.layers.worker_tmpfs = os.waitstatus_to_exitcode(status) == 0

    # -- workers ------------------------------------------------------------------------------
    def _allocate_uid(self) -> int | None:
        if not self.layers.worker_uid:
            return None
        live = {w.uid for w in self.workers.values()}
        for offset in range(isolation.UID_SPAN):
            uid = isolation.UID_BASE + (self.next_id + offset) % isolation.UID_SPAN
            if uid not in live:
                return uid
        raise RuntimeError("no free sandbox uid")

    def fork_worker(self) -> int:
        wid, self.next_id = self.next_id, self.next_id + 1
        uid = self._allocate_uid()
        plan = WorkerPlan(
            uid=uid, tmpfs=self.layers.worker_tmpfs, pid_ns=self.layers.worker_pid_ns,
            workdir=os.path.join(self.base_dir, str(wid)), env=self.env,
            memory_mb=self.cfg["memory_mb"], disk_mb=self.cfg["disk_mb"], cpu_s=self.cfg["cpu_s"],
            max_procs=self.cfg["max_procs"], max_output_chars=self.cfg["max_output_chars"])
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.layers.worker_pid_ns:
            isolation.next_child_in_new_pid_namespace(self.own_pid_ns)
        pid = os.fork()
        if pid == 0:
            self._become_worker(theirs, plan)
        theirs.close()
        self.workers[wid] = _Worker(pid, ours, uid, plan.workdir)
        return wid

    def _become_worker(self, sock: socket.socket, plan: WorkerPlan) -> None:
        code = 1
        try:
            fd = sock.detach()
            for other in [self.control, *(w.sock for w in self.workers.values() if w.sock)]:
                other.detach()
            if fd != 3:
                os.dup2(fd, 3)
                os.close(fd)
            os.closerange(4, 1 << 16)
            serve(socket.socket(fileno=3), self.runner, plan)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    def _kill(self, wid: int) -> None:
        worker = self.workers.get(wid)
        if worker is None or wid in self.exited:
            return
        for kill in (os.kill, os.killpg):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(worker.pid, signal.SIGKILL)

    def reap(self) -> None:
        by_pid = {w.pid: wid for wid, w in self.workers.items()}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            wid = by_pid.get(pid)
            if wid is None:
                continue  # an orphan of some worker (we are its subreaper or pid 1)
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            self.exited[wid] = (os.WEXITSTATUS(status) if os.WIFEXITED(status) else None, sig)
            if not self.layers.worker_pid_ns:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            if wid in self.released:
                self._forget(wid)

    def _forget(self, wid: int) -> None:
        worker = self.workers.pop(wid)
        self.exited.pop(wid, None)
        self.released.discard(wid)
        if not self.layers.worker_tmpfs:
            shutil.rmtree(worker.workdir, ignore_errors=True)

    # -- requests -----------------------------------------------------------------------------
    def handle(self, msg: dict) -> None:
        op, wid = msg.get("op"), msg.get("id")
        if op == "spawn":
            wid = self.stock.pop(0) if self.stock else self.fork_worker()
            sock = self.workers[wid].sock
            self.workers[wid].sock = None
            protocol.send_packet(self.control, {"id": wid}, (sock.fileno(),))
            sock.close()
            return
        if op in ("kill", "release"):
            self._kill(wid)
            if op == "release" and wid in self.workers:
                self.released.add(wid)
                self.reap()
            protocol.send_packet(self.control, {})
            return
        if op == "status":
            self.reap()
            code, sig = self.exited.get(wid, (None, None))
            alive = wid in self.workers and wid not in self.exited
            protocol.send_packet(self.control, {"alive": alive, "code": code, "signal": sig})
            return
        protocol.send_packet(self.control, {"error": f"unknown request {msg!r}"})

    def loop(self, parent_pidfd: int | None) -> None:
        watch = [self.control] + ([parent_pidfd] if parent_pidfd is not None else [])
        while True:
            short = len(self.stock) < self.cfg["prestarted"]
            ready, _, _ = select.select(watch, [], [], 0 if short else 0.2)
            if parent_pidfd is not None and parent_pidfd in ready:
                return
            if self.control in ready:
                try:
                    msg, fds = protocol.recv_packet(self.control)
                except (protocol.ChannelClosed, OSError):
                    return
                for fd in fds:
                    os.close(fd)
                self.handle(msg)
            elif short:
                self.stock.append(self.fork_worker())
            self.reap()

    def shutdown(self) -> None:
        for wid in list(self.workers):
            self._kill(wid)
        if self.base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def main() -> None:
    spec = json.loads(sys.argv[1])
    control = socket.socket(fileno=spec["control_fd"])
    zygote = Zygote(spec, control)
    try:
        from .shell import CellRunner

        zygote.runner = CellRunner.warmed()
        zygote.probe_worker_layers()
        zygote.isolate_filesystem()
        if not zygote.layers.worker_pid_ns:
            isolation.subreaper()
        gc.collect()
        gc.freeze()  # the collector must not touch (and so copy) the shared pages in workers
        protocol.send_packet(control, {"ready": True, "missing": zygote.layers.missing()})
    except BaseException as exc:
        protocol.send_packet(control, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        raise
    try:
        zygote.loop(spec.get("parent_pidfd"))
    finally:
        zygote.shutdown()
        os._exit(0)


if __name__ == "__main__":
    main()
