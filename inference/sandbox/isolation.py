"""The isolation layers, from the sandbox as a whole down to one trajectory's worker.

Sandbox-wide (the zygote, started under `unshare`): no network (an empty network namespace), a
read-only view of every file system, the home directory and any directory the interpreter does
not need hidden behind an empty tmpfs, and a pid namespace whose end kills every descendant.
Per trajectory (each worker, forked from the zygote): its own pid namespace (its end kills every
process the code started), its own mount namespace with a size-limited tmpfs as /tmp, /dev/shm and
working directory, its own uid (so RLIMIT_NPROC counts only its processes and no trajectory can
signal or read another's), rlimits, no new privileges, and an environment without secrets.
Each layer that the OS refuses is reported by name; the sandbox warns once (or fails, if asked).
"""

from __future__ import annotations

import ctypes
import os
import resource
from dataclasses import asdict, dataclass

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
_MOUNT_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
UID_BASE = 1_100_000  # far above any real account; one uid per live trajectory
UID_SPAN = 60_000
_SYSTEM_DIRS = {"/", "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/opt", "/var", "/dev", "/proc", "/sys"}


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [s.encode() if s is not None else None for s in (source, target, fstype, data)]
    _check(_libc.mount(enc[0], enc[1], enc[2], flags, enc[3]), f"mount {target}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, arg, 0, 0, 0), f"prctl {option}")


@dataclass
class Layers:
    """Which layers this sandbox has; decided once, in the zygote."""

    namespaces: bool = False  # the zygote runs in new net + mount + pid namespaces
    readonly_fs: bool = False  # nothing outside the private directory is writable
    hidden_home: bool = False
    worker_pid_ns: bool = False
    worker_tmpfs: bool = False  # private, size-limited /tmp per trajectory
    worker_uid: bool = False

    def missing(self) -> list[str]:
        names = {
            "namespaces": "network and pid namespaces (code may use the network)",
            "readonly_fs": "read-only file systems (code may write outside its directory)",
            "hidden_home": "hidden home directory (code may read files in it)",
            "worker_pid_ns": "per-trajectory pid namespace (detached processes may outlive it)",
            "worker_tmpfs": "per-trajectory tmpfs (no quota on the total size of its files)",
            "worker_uid": ("per-trajectory uid (process limit shared; trajectories can signal each other, "
                           "and read the environment of this user's processes through /proc)"),
        }
        return [names[k] for k, v in asdict(self).items() if not v]


def _mount_points() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, options) from /proc/self/mountinfo, outermost first."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            point = fields[4].encode().decode("unicode_escape")
            points.append((point, right.split()[0], set(fields[5].split(","))))
    return points


def _blocked(path: str) -> bool:
    """Whether a uid other than the owner cannot traverse this directory."""
    try:
        return not os.stat(path).st_mode & 0o001
    except OSError:
        return False


def hide_directories(needed: list[str], also_hide: list[str]) -> None:
    """Cover each directory in `also_hide` and each untraversable ancestor of a `needed` path
    with an empty tmpfs, then bind the needed entries back in (so the interpreter can still
    import, as another uid, while ~/.cache/huggingface/token and the like disappear)."""
    needed = sorted({os.path.realpath(p) for p in needed if os.path.exists(p)})
    covers = {os.path.realpath(d) for d in also_hide if os.path.isdir(d)} - _SYSTEM_DIRS
    for path in needed:
        parts = path.split("/")
        covers |= {"/".join(parts[:i]) for i in range(2, len(parts)) if _blocked("/".join(parts[:i]))}
    for cover in sorted(covers, key=lambda p: p.count("/")):
        keep = sorted({p[len(cover) + 1:].split("/")[0] for p in needed if p.startswith(cover + "/")})
        handles = {name: os.open(os.path.join(cover, name), os.O_PATH) for name in keep}
        try:
            mount("tmpfs", cover, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
            for name, fd in handles.items():
                target = os.path.join(cover, name)
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.mkdir(target)
                else:
                    open(target, "w").close()
                mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        finally:
            for fd in handles.values():
                os.close(fd)


def make_readonly() -> None:
    """Remount every mount point read-only (bind remounts keep nosuid/nodev/noexec)."""
    for point, fstype, options in _mount_points():
        if fstype in ("proc", "sysfs", "cgroup", "cgroup2"):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for opt, bit in _MOUNT_FLAGS.items():
            if opt in options:
                flags |= bit
        try:
            mount(None, point, None, flags)
        except OSError:
            if os.path.ismount(point):
                raise


def collapse_to_huge_pages() -> int:
    """Back the zygote's heap with 2 MB pages where the kernel allows (MADV_COLLAPSE, Linux 6.1):
    fork then copies one entry per 2 MB instead of 512, and workers start faster. Returns MB."""
    huge = 2 << 20
    done = 0
    _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    with open("/proc/self/maps") as f:
        maps = f.read().splitlines()
    for line in maps:
        fields = line.split()
        if "w" not in fields[1] or (len(fields) > 5 and fields[5] != "[heap]"):
            continue
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        start = (lo + huge - 1) & ~(huge - 1)
        for addr in range(start, hi - huge + 1, huge):
            if _libc.madvise(addr, huge, 25) == 0:  # 25 = MADV_COLLAPSE
                done += 2
    return done


def uid_switch_possible() -> bool:
    """Root of the initial user namespace (a mapped root inside `unshare --user` cannot)."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return False


def next_child_in_new_pid_namespace(own_pid_ns: int) -> None:
    """The next fork becomes pid 1 of a fresh pid namespace; when it exits, the kernel kills
    everything it started (including detached daemons)."""
    setns(own_pid_ns, CLONE_NEWPID)
    unshare(CLONE_NEWPID)


def private_tmpfs(size_mb: int, uid: int, with_proc: bool) -> str:
    """A fresh mount namespace with a size-limited tmpfs as /tmp (= /dev/shm, = the working
    directory); it disappears with the trajectory's last process."""
    unshare(CLONE_NEWNS)  # a copy of the zygote's namespace, whose mounts `unshare` made private
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={size_mb}m,mode=0700,uid={uid},gid={uid}")
    if os.path.isdir("/dev/shm"):
        mount("/tmp", "/dev/shm", None, MS_BIND)
    if with_proc:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    return "/tmp"


def address_space() -> int:
    """Bytes of address space this process maps (the warm interpreter's baseline for RLIMIT_AS)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024


def set_limits(base_bytes: int, memory_mb: int, disk_mb: int, cpu_s: int, max_procs: int | None) -> None:
    limits = {
        resource.RLIMIT_AS: base_bytes + memory_mb * 2**20,
        resource.RLIMIT_FSIZE: disk_mb * 2**20,
        resource.RLIMIT_CPU: cpu_s,
        resource.RLIMIT_CORE: 0,
    }
    if max_procs is not None:
        limits[resource.RLIMIT_NPROC] = max_procs
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))


def drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def die_first_when_memory_runs_out() -> None:
    """The kernel's OOM killer should pick sandboxed code, not the model server next to it."""
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")


def no_new_privileges() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1)
