"""The zygote: one pre-warmed, already-isolated interpreter that forks a worker per trajectory.

It imports IPython, sympy and numpy once, warms a shell and isolates itself, then forks `forkers`
copies of itself (all sharing the warm pages), and each forks workers on demand: every worker shares
those pages copy-on-write, so hundreds of open trajectories cost megabytes each, not a full
interpreter, and starting one costs a fork instead of seconds of imports. Several forkers fork in
parallel (a fork of this interpreter costs milliseconds of CPU). Each forker has its own control
channel, asynchronous (the parent keeps a stock of ready workers, so no trajectory waits):
  parent -> zygote  {"op": "want", "n": k, "warm": b}  fork k more workers and send them (warm:
                                                   they run a warm-up cell before saying hello)
                    {"op": "kill", "ids": [...]}   SIGKILL (with pid namespaces, everything they
                                                   started dies too); no reply
                    {"op": "status", "id": n, "req": r}
  zygote -> parent  {"op": "worker", "id": n} with the worker's socket attached
                    {"op": "status", "req": r, "alive": bool, "code": int|null, "signal": int|null}
Worker ids are forker index + forkers * n. The zygote and its forkers exit, killing everything,
when the parent process ends (pidfd) or closes the channels.
Started by `inference.sandbox.pool` as `python -m inference.sandbox.zygote SPEC_JSON`.
"""

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
from collections import OrderedDict

from inference.processes import die_with_parent

from . import isolation, protocol
from .worker import WORKER_BROKE, WorkerPlan, serve

# Threads would not survive fork, and a sandbox shares the machine: one BLAS thread per worker.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"


_STATUSES_KEPT = 4096  # exit statuses of recent workers, for the parent's crash reports


class Zygote:
    def __init__(self, spec: dict) -> None:
        self.cfg = spec["config"]
        self.control: socket.socket | None = None  # this forker's channel
        self.index, self.count = 0, 1
        self.layers = isolation.Layers(namespaces=spec["namespaces"])
        self.workers: dict[int, tuple[int, int | None, str]] = {}  # id -> (pid, uid, workdir)
        self.worker_of_pid: dict[int, int] = {}
        self.uids_in_use: set[int | None] = set()
        self.exited: OrderedDict[int, tuple[int | None, int | None]] = OrderedDict()
        self.owed = [0, 0]  # workers to fork: [urgent, warm]; urgent ones first
        self.next_id = 0
        self.own_pid_ns: int | None = None
        self.base_dir = ""  # parent of the workers' directories when they get no tmpfs
        self.env = {k: v for k, v in os.environ.items() if k in set(self.cfg["env_keep"])}
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_ARENA_MAX",
                    "PYTHONHASHSEED"):
            if var in os.environ:
                self.env[var] = os.environ[var]
        self.runner = None
        self.address_space = 0

    # -- set-up -------------------------------------------------------------------------------
    def isolate_filesystem(self) -> None:
        if not self.layers.worker_tmpfs:
            self.base_dir = tempfile.mkdtemp(prefix="sandbox-")
            os.chmod(self.base_dir, 0o711)  # noqa: S103 (workers of other uids may enter, not list)
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
        if self.own_pid_ns is not None:
            isolation.setns(self.own_pid_ns, isolation.CLONE_NEWPID)  # forkers stay in ours

    # -- workers ------------------------------------------------------------------------------
    def _allocate_uid(self, n: int) -> int | None:
        """From this forker's own range, so no two live trajectories share a uid."""
        if not self.layers.worker_uid:
            return None
        span = isolation.UID_SPAN // self.count
        for offset in range(span):
            uid = isolation.UID_BASE + self.index * span + (n + offset) % span
            if uid not in self.uids_in_use:
                self.uids_in_use.add(uid)
                return uid
        raise RuntimeError("no free sandbox uid")

    def send_worker(self, warm: bool) -> None:
        """Fork one worker and hand the parent its socket."""
        n, self.next_id = self.next_id, self.next_id + 1
        wid = self.index + self.count * n
        uid = self._allocate_uid(n)
        plan = WorkerPlan(
            uid=uid, tmpfs=self.layers.worker_tmpfs, pid_ns=self.layers.worker_pid_ns,
            workdir=os.path.join(self.base_dir, str(wid)), env=self.env, address_space=self.address_space,
            memory_mb=self.cfg["memory_mb"], disk_mb=self.cfg["disk_mb"], cpu_s=self.cfg["cpu_s"],
            max_procs=self.cfg["max_procs"], max_output_chars=self.cfg["max_output_chars"], warm=warm)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.layers.worker_pid_ns:
            isolation.next_child_in_new_pid_namespace(self.own_pid_ns)
        pid = os.fork()
        if pid == 0:
            ours.detach()
            self._become_worker(theirs, plan)
        theirs.close()
        self.workers[wid] = (pid, uid, plan.workdir)
        self.worker_of_pid[pid] = wid
        try:
            protocol.send_packet(self.control, {"op": "worker", "id": wid}, (ours.fileno(),))
        finally:
            ours.close()

    def _become_worker(self, sock: socket.socket, plan: WorkerPlan) -> None:
        code = WORKER_BROKE
        try:
            fd = sock.detach()
            self.control.detach()
            if fd != 3:
                os.dup2(fd, 3)
                os.close(fd)
            os.closerange(4, 1 << 16)  # the zygote's other descriptors are none of its business
            serve(socket.socket(fileno=3), self.runner, plan)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    def kill(self, wid: int) -> None:
        if wid not in self.workers:
            return  # already reaped: its pid may belong to someone else now
        pid = self.workers[wid][0]
        for kill in (os.kill, os.killpg):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, signal.SIGKILL)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            wid = self.worker_of_pid.pop(pid, None)
            if wid is None:
                continue  # an orphan of some worker (we are its subreaper)
            if not self.layers.worker_pid_ns:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)  # what it started, unless it left the group
            _, uid, workdir = self.workers.pop(wid)
            self.uids_in_use.discard(uid)
            if not self.layers.worker_tmpfs:
                shutil.rmtree(workdir, ignore_errors=True)
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            self.exited[wid] = (os.WEXITSTATUS(status) if os.WIFEXITED(status) else None, sig)
            while len(self.exited) > _STATUSES_KEPT:
                self.exited.popitem(last=False)

    # -- requests -----------------------------------------------------------------------------
    def handle(self, msg: dict) -> None:
        op = msg.get("op")
        if op == "want":
            self.owed[bool(msg.get("warm"))] += int(msg.get("n", 1))
        elif op == "kill":
            for wid in msg.get("ids", ()):
                self.kill(wid)
        elif op == "status":
            self.reap()
            wid = msg.get("id")
            code, sig = self.exited.get(wid, (None, None))
            protocol.send_packet(self.control, {"op": "status", "req": msg.get("req"),
                                                "alive": wid in self.workers, "code": code, "signal": sig})

    def kill_strays(self) -> None:
        """Without per-trajectory pid namespaces, processes that left their worker's process group
        end up as our children (we are their subreaper) once the worker is gone: kill them."""
        if self.layers.worker_pid_ns:
            return
        ours = {pid for pid, _, _ in self.workers.values()}
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/children") as f:
                for pid in map(int, f.read().split()):
                    if pid not in ours:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(pid, signal.SIGKILL)

    def loop(self, parent_pidfd: int | None) -> None:
        watch = [self.control] + ([parent_pidfd] if parent_pidfd is not None else [])
        while True:
            owed = self.owed[0] or self.owed[1]
            ready, _, _ = select.select(watch, [], [], 0 if owed else 0.2)
            if not ready and not owed:
                self.kill_strays()
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
            elif owed:
                warm = not self.owed[0]
                self.owed[warm] -= 1
                try:
                    self.send_worker(warm)
                except OSError:
                    return  # the parent is gone
            self.reap()

    def shutdown(self) -> None:
        for wid in list(self.workers):
            self.kill(wid)


def _run_forker(zygote: Zygote, controls: list[socket.socket], index: int, parent_pidfd: int | None) -> None:
    code = 1
    try:
        die_with_parent(signal.SIGKILL)
        for k, other in enumerate(controls):
            if k != index:
                other.close()
        zygote.control, zygote.index, zygote.count = controls[index], index, len(controls)
        if not zygote.layers.worker_pid_ns:
            isolation.subreaper()
        protocol.send_packet(zygote.control, {"ready": True, "missing": zygote.layers.missing()})
        zygote.loop(parent_pidfd)
        code = 0
    finally:
        zygote.shutdown()
        os._exit(code)


def _supervise(forkers: list[int], parent_pidfd: int | None) -> None:
    """The zygote proper: waits until the parent or every forker is gone. With namespaces it is
    pid 1 of the sandbox's pid namespace, so its exit kills every process in the sandbox."""
    exits = {os.pidfd_open(pid): pid for pid in forkers}
    while exits:
        ready = select.select([*exits, *([parent_pidfd] if parent_pidfd is not None else [])], [], [], 5.0)[0]
        if parent_pidfd is not None and parent_pidfd in ready:
            break
        for fd in ready:
            exits.pop(fd)
            os.close(fd)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass  # forkers, and workers orphaned by a forker's death
    for pid in exits.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def main() -> None:
    spec = json.loads(sys.argv[1])
    controls = [socket.socket(fileno=fd) for fd in spec["control_fds"]]
    parent_pidfd = spec.get("parent_pidfd")
    zygote = Zygote(spec)
    try:
        from .shell import CellRunner

        zygote.runner = CellRunner.warmed()
        zygote.probe_worker_layers()
        zygote.isolate_filesystem()
        gc.collect()
        gc.freeze()  # the collector must not touch (and so copy) the shared pages in workers
        isolation.collapse_to_huge_pages()
        zygote.address_space = isolation.address_space()
    except BaseException as exc:
        for control in controls:
            protocol.send_packet(control, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        raise
    forkers = []
    for index in range(len(controls)):
        pid = os.fork()
        if pid == 0:
            _run_forker(zygote, controls, index, parent_pidfd)
        forkers.append(pid)
    for control in controls:
        control.close()
    try:
        _supervise(forkers, parent_pidfd)
    finally:
        if zygote.base_dir:
            shutil.rmtree(zygote.base_dir, ignore_errors=True)
        os._exit(0)


if __name__ == "__main__":
    main()
