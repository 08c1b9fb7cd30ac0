"""Adversarial programs: each is contained, and affects only its own trajectory."""

import os
import shutil
import time
from pathlib import Path

import pytest

from inference.sandbox import Sandbox, SandboxConfig

SECRETS = {"HF_TOKEN": "hf_secret", "WANDB_API_KEY": "wandb_secret", "AWS_SECRET_ACCESS_KEY": "aws_secret",
           "OPENAI_API_KEY": "sk-secret"}
CFG = SandboxConfig(timeout_s=3.0, kill_grace_s=0.5, memory_mb=256, disk_mb=16, max_procs=24,
                    workers=2, prestarted=2)


@pytest.fixture(scope="module")
def sandbox():
    saved = {k: os.environ.get(k) for k in SECRETS}
    os.environ.update(SECRETS)
    try:
        sb = Sandbox(CFG).start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    with sb:
        yield sb


def layer(sandbox, words):
    if any(words in missing for missing in sandbox.missing):
        pytest.skip(f"this machine refuses the layer: {words}")


def run(sandbox, code):
    with sandbox.session() as session:
        return session.run(code)


def still_fine(sandbox):
    obs = run(sandbox, "import math\nprint('fine', math.factorial(5), len('abc'))")
    assert (obs.text, obs.status) == ("fine 120 3", "ok")


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


def processes_of_uid(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            real_uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
            if int(real_uid) == uid:
                found.append(int(entry))
    return found


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_no_network(sandbox):
    layer(sandbox, "namespaces")
    code = ("import socket\nfor target in [('1.1.1.1', 53), ('127.0.0.1', 22)]:\n"
            "    try:\n        socket.create_connection(target, timeout=2)\n        print('connected')\n"
            "    except OSError as e:\n        print('blocked')\n"
            "try:\n    socket.getaddrinfo('example.com', 80)\n    print('resolved')\nexcept OSError:\n"
            "    print('no dns')")
    assert run(sandbox, code).text == "blocked\nblocked\nno dns"


def test_environment_has_no_secrets(sandbox):
    code = ("import os\nprint(sorted(os.environ))\n"
            "print([k for k in os.environ if any(w in k for w in ('TOKEN', 'KEY', 'SECRET'))])")
    names, secrets = run(sandbox, code).text.splitlines()
    assert secrets == "[]"
    assert "'PATH'" in names and "'HOME'" in names
    for value in SECRETS.values():
        assert value not in run(sandbox, "import os\nprint(open('/proc/self/environ', 'rb').read())").text


def test_home_directory_is_hidden(sandbox):
    layer(sandbox, "hidden home")
    home = Path(os.path.expanduser("~"))
    python_paths = {Path(p).resolve() for p in (os.sys.prefix, os.sys.base_prefix, os.sys.executable)}
    needed = {p.relative_to(home).parts[0] for p in python_paths if home in p.parents}
    visible = run(sandbox, f"import os\nsorted(os.listdir({str(home)!r}))").text
    assert set(eval(visible)) <= needed  # noqa: S307 (a list literal we asked for)


def test_writes_outside_the_private_directory_fail(sandbox):
    layer(sandbox, "read-only")
    repo = Path(__file__).resolve().parents[2]
    targets = [str(repo / "sandbox-probe"), "/var/tmp/sandbox-probe", "/etc/sandbox-probe",
               os.path.join(os.path.expanduser("~"), "sandbox-probe"), "/sandbox-probe"]
    code = (f"import os\nfor path in {targets!r}:\n    try:\n        open(path, 'w').write('x')\n"
            "        print('wrote', path)\n    except OSError as e:\n        print('refused')\n"
            "open('mine.txt', 'w').write('ok')\nprint(os.getcwd(), open('mine.txt').read())")
    lines = run(sandbox, code).text.splitlines()
    assert lines[:-1] == ["refused"] * len(targets)
    assert lines[-1].endswith(" ok")
    assert not any(os.path.exists(t) for t in targets)


def test_trajectories_are_private_from_each_other(sandbox):
    with sandbox.session() as a, sandbox.session() as b:
        assert a.run("open('note.txt', 'w').write('a')\nimport os\nos.getuid()").status == "ok"
        uid_a, uid_b = (int(s.run("import os\nos.getuid()").text) for s in (a, b))
        assert uid_a != uid_b or any("uid" in m for m in sandbox.missing)
        assert "FileNotFoundError" in b.run("open('note.txt').read()").text
        assert a.run("open('note.txt').read()").text == "'a'"
    if not any("uid" in m for m in sandbox.missing):
        assert uid_a != 0 and uid_b != 0


def test_rlimits_and_no_new_privileges(sandbox):
    code = ("import resource\nprint([resource.getrlimit(r)[0] for r in (resource.RLIMIT_CPU, "
            "resource.RLIMIT_FSIZE, resource.RLIMIT_NPROC)])\n"
            "print(resource.getrlimit(resource.RLIMIT_AS)[0] > 0)\n"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('NoNewPrivs')])\n"
            "print(open('/proc/self/oom_score_adj').read().strip())")
    limits, has_as, nnp, oom = run(sandbox, code).text.splitlines()
    cpu, fsize, nproc = eval(limits)  # noqa: S307
    assert (cpu, fsize) == (CFG.cpu_s, CFG.disk_mb * 2**20)
    assert nproc == CFG.max_procs or any("uid" in m for m in sandbox.missing)
    assert (has_as, nnp, oom) == ("True", "['1']", "1000")


def test_memory_bomb(sandbox):
    assert run(sandbox, "x = bytearray(1024 * 2**20)").text.startswith("MemoryError")
    obs = run(sandbox, "import numpy as np\nblocks = []\nwhile True:\n    blocks.append(np.ones(2**24))")
    assert "MemoryError" in obs.text or "Unable to allocate" in obs.text
    still_fine(sandbox)


def test_disk_fill(sandbox):
    before = shutil.disk_usage("/").free
    code = ("import os\nn = 0\ntry:\n    while True:\n        with open(f'f{n}', 'wb') as f:\n"
            "            f.write(b'x' * 2**20)\n        n += 1\nexcept OSError as e:\n    print(n, e.errno)")
    count, errno = run(sandbox, code).text.split()
    assert errno in ("27", "28")  # EFBIG, ENOSPC
    assert int(count) <= CFG.disk_mb
    assert before - shutil.disk_usage("/").free < 64 * 2**20
    still_fine(sandbox)


def test_fork_bomb_is_bounded_and_cleaned_up(sandbox):
    code = ("import os, time\nkids = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
            "            time.sleep(60)\n            os._exit(0)\n        kids += 1\nexcept OSError as e:\n"
            "    print(kids, e.errno)\nos.getuid()")
    with sandbox.session() as session:
        obs = session.run(code)
        kids, errno = obs.text.splitlines()[0].split()
        uid = int(obs.text.splitlines()[1])
    assert errno == "11" and int(kids) < CFG.max_procs  # EAGAIN from RLIMIT_NPROC
    assert wait_until(lambda: not processes_of_uid(uid))
    still_fine(sandbox)


def test_thread_bomb_is_bounded(sandbox):
    code = ("import threading, time\nthreads = []\ntry:\n    while True:\n"
            "        t = threading.Thread(target=time.sleep, args=(30,), daemon=True)\n        t.start()\n"
            "        threads.append(t)\nexcept RuntimeError:\n    print(len(threads))")
    assert int(run(sandbox, code).text) < CFG.max_procs
    still_fine(sandbox)


def test_orphaned_and_detached_processes_die_with_the_trajectory(sandbox):
    marker = f"91{os.getpid() % 1000}.5"
    code = (f"import os, subprocess\nsubprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
            f"if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        os.execvp('sleep', ['sleep', '{marker}'])\n    os._exit(0)\nprint('started')")
    with sandbox.session() as session:
        assert session.run(code).text == "started"
        assert wait_until(lambda: len(processes_with(f"sleep\0{marker}")) == 2)
    assert wait_until(lambda: not processes_with(f"sleep\0{marker}"))


def test_killing_the_parent_or_everything_it_can(sandbox):
    code = ("import os, signal\nfor pid in (os.getppid(), 1, -1, 0):\n    try:\n"
            "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\nprint('alive')")
    with sandbox.session() as session:
        obs = session.run(code)
        assert obs.text in ("alive", "RuntimeError: the interpreter was killed: Killed")
    still_fine(sandbox)


def test_sabotaged_builtins_affect_only_their_trajectory(sandbox):
    code = ("import builtins, sys\nbuiltins.len = None\nbuiltins.print = lambda *a, **k: None\n"
            "sys.modules['json'] = None\ndel builtins.__import__")
    with sandbox.session() as session:
        session.run(code)
        session.run("1 + 1")
    still_fine(sandbox)


def test_sessions_share_the_warm_interpreter(sandbox):
    """Hundreds of open trajectories must not cost hundreds of interpreters: private memory per
    worker is a small fraction of what it maps (the rest is shared copy-on-write)."""
    code = ("fields = dict(l.split(':') for l in open('/proc/self/smaps_rollup') if ':' in l)\n"
            "kb = lambda k: int(fields[k].split()[0])\n"
            "print(kb('Rss'), kb('Private_Clean') + kb('Private_Dirty'))")
    sessions = [sandbox.session() for _ in range(20)]
    try:
        readings = [tuple(map(int, s.run(code).text.split())) for s in sessions]
    finally:
        for s in sessions:
            s.close()
    rss = sum(r for r, _ in readings) / len(readings)
    private = sum(p for _, p in readings) / len(readings)
    assert rss > 40_000  # kB: IPython, sympy and numpy are mapped
    assert private < rss / 4
