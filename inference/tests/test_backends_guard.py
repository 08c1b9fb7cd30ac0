"""OrphanGuard (inference/processes.py): processes an engine started die with a SIGKILLed parent, and only then."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

PARENT = """
import json, subprocess, sys, time
from inference.processes import OrphanGuard
older = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
before = OrphanGuard.snapshot()
engine = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) for _ in range(2)]
guard = OrphanGuard(before)
print(json.dumps({"engine": [p.pid for p in engine], "older": older.pid}), flush=True)
if sys.argv[1] == "clean":
    guard.release()
    sys.exit(0)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start(how: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-c", PARENT, how], stdout=subprocess.PIPE, text=True)
    return proc, json.loads(proc.stdout.readline())


def cleanup(pids: list[int]) -> None:
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("how", ["killed", "clean"])
def test_guard_ends_what_the_engine_started_only_when_the_parent_dies(how):
    proc, pids = start(how)
    try:
        if how == "killed":
            proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while how == "killed" and any(map(alive, pids["engine"])) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        assert [alive(p) for p in pids["engine"]] == [how == "clean"] * 2
        assert alive(pids["older"])  # started before the engine: not the guard's business
    finally:
        proc.stdout.close()
        cleanup(pids["engine"] + [pids["older"]])
