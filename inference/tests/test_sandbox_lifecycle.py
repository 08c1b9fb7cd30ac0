"""Nothing outlives the sandbox (even when its parent is SIGKILLed); missing layers are reported."""

import os
import signal
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import pytest

from inference.sandbox import Sandbox, SandboxConfig, SandboxError, pool
from inference.tests.test_sandbox_isolation import processes_with, wait_until


def marked_config(**kw) -> tuple[SandboxConfig, str]:
    """A config whose processes can be found: the marker is in every sandbox process's cmdline."""
    marker = f"SANDBOX_TEST_{uuid.uuid4().hex[:12]}"
    return SandboxConfig(env_keep=["PATH", marker], timeout_s=5.0, prestarted=2, **kw), marker


def start_sleepers(session, seconds: str) -> None:
    code = (f"import os, subprocess\nsubprocess.Popen(['sleep', '{seconds}'], start_new_session=True)\n"
            f"if os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['sleep', '{seconds}'])\nprint('ok')")
    assert session.run(code).text == "ok"


def test_nothing_outlives_the_sandbox():
    cfg, marker = marked_config()
    seconds = f"{os.getpid() % 1000 + 700}.25"
    sandbox = Sandbox(cfg).start()
    sessions = [sandbox.session() for _ in range(3)]
    for session in sessions:
        start_sleepers(session, seconds)
    assert processes_with(marker)
    assert wait_until(lambda: len(processes_with(f"sleep\0{seconds}")) == 6)
    sandbox.close()
    assert wait_until(lambda: not processes_with(marker) and not processes_with(f"sleep\0{seconds}"))


def test_nothing_outlives_a_sigkilled_parent(tmp_path):
    cfg, marker = marked_config()
    seconds = f"{os.getpid() % 1000 + 700}.75"
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from inference.sandbox import Sandbox, SandboxConfig
        sandbox = Sandbox(SandboxConfig(env_keep={cfg.env_keep!r}, prestarted=2)).start()
        sessions = [sandbox.session() for _ in range(3)]
        for s in sessions:
            s.run("import subprocess\\nsubprocess.Popen(['sleep', '{seconds}'], start_new_session=True)")
        print('ready', flush=True)
        time.sleep(600)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        assert processes_with(marker)
        assert wait_until(lambda: len(processes_with(f"sleep\0{seconds}")) == 3)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert wait_until(lambda: not processes_with(marker) and not processes_with(f"sleep\0{seconds}"))


@pytest.fixture
def no_unshare(monkeypatch):
    monkeypatch.setattr(pool.shutil, "which", lambda name: None)
    monkeypatch.setattr(pool, "_warned", set())


def test_missing_layers_warn_once_and_the_rest_still_holds(no_unshare):
    cfg, marker = marked_config()
    seconds = f"{os.getpid() % 1000 + 700}.5"
    with pytest.warns(RuntimeWarning, match="running without namespaces"), Sandbox(cfg) as sandbox:
        assert any("per-trajectory pid namespace" in m for m in sandbox.missing)
        workdir_parent = Path(eval(sandbox.session().run("import os\nos.getcwd()").text)).parent  # noqa: S307
        with sandbox.session() as session:
            start_sleepers(session, seconds)
            assert session.run("import os\nsorted(os.environ)").text.count("TOKEN") == 0
        # Detached processes are killed by the forker (their subreaper) once the worker is gone.
        assert wait_until(lambda: not processes_with(f"sleep\0{seconds}"))
        assert sandbox.session().run("print(1 + 1)").text == "2"
    assert not workdir_parent.exists()
    assert wait_until(lambda: not processes_with(marker))
    with warnings.catch_warnings(record=True) as caught, Sandbox(cfg) as again:
        warnings.simplefilter("always")
        again.session().run("1")
    assert not [w for w in caught if "running without" in str(w.message)]


def test_require_refuses_to_run_without_every_layer(no_unshare):
    cfg, marker = marked_config(isolation="require")
    with pytest.raises(SandboxError, match="isolation=require"):
        Sandbox(cfg).start()
    assert wait_until(lambda: not processes_with(marker))


def test_isolation_off_runs_without_warning():
    cfg, _ = marked_config(isolation="off")
    with warnings.catch_warnings(record=True) as caught, Sandbox(cfg) as sandbox:
        warnings.simplefilter("always")
        assert sandbox.session().run("6 * 7").text == "42"
    assert not [w for w in caught if "running without" in str(w.message)]
