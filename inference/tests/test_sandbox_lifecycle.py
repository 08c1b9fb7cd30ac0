"""Nothing outlives the sandbox (even when its parent is SIGKILLed); missing layers are reported;
no secret of the process that starts it reaches the code, whichever layers the machine allows."""

import json
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


# Names and shapes a real machine has: tokens, cloud keys, a lowercase one, and a value that looks
# like a key under a harmless name. The values are unique to this test, so any sighting is a leak.
PLANTED = {"HF_TOKEN": "hf_PlantedHubToken0123456789", "WANDB_API_KEY": "PlantedWandb0123456789abcdef",
           "AWS_SECRET_ACCESS_KEY": "PlantedAws/0123456789+abcdefABCDEF", "OPENAI_API_KEY": "sk-PlantedOpenAI0123",
           "github_token": "ghp_PlantedGithub0123456789", "BUILD_SETTING": "AKIAPLANTED0123456789"}
LOOK = """
import os, subprocess
seen = {"os.environ": "\\n".join(f"{k}={v}" for k, v in os.environ.items()),
        "env in a child": subprocess.run(["env"], capture_output=True, text=True).stdout}
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        seen[f"/proc/{pid}/environ"] = open(f"/proc/{pid}/environ", "rb").read().decode("utf-8", "replace")
    except OSError:
        pass
print(len(seen), "PATH=" in seen["os.environ"])
print(sorted((where, name) for where, text in seen.items() for name, value in PLANTED.items()
             if value in text or f"{name}=" in text))
"""


@pytest.mark.parametrize("setup", ["auto", "auto, no unshare", "off"])
def test_no_secret_of_the_parent_reaches_the_code(tmp_path, setup):
    """The parent gets the secrets in its real environment (as a shell's `export` gives them),
    so the code could find them in its own environment, a child's, or any /proc/<pid>/environ
    it can read (the parent's, the zygote's). With isolation=off (same uid, no pid namespace)
    other processes' environments stay readable through /proc, as documented: only the code's
    own environment is checked there."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import json
        from inference.sandbox import Sandbox, SandboxConfig, pool
        if {setup == "auto, no unshare"!r}:
            pool.shutil.which = lambda name: None
        cfg = SandboxConfig(isolation={setup.split(",")[0]!r}, prestarted=1, timeout_s=20)
        with Sandbox(cfg) as sandbox, sandbox.session() as session:
            obs = session.run({f"PLANTED = {PLANTED!r}{LOOK}"!r})
        print(json.dumps({{"text": obs.text, "status": obs.status}}))
    """))
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, **PLANTED, "PYTHONPATH": root}
    proc = subprocess.run([sys.executable, "-W", "ignore", str(script)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    obs = json.loads(proc.stdout.splitlines()[-1])
    assert obs["status"] == "ok", obs["text"]
    read, leaks = obs["text"].split("\n")
    assert int(read.split()[0]) >= 2 and read.split()[1] == "True"  # it looked, and PATH was kept
    leaks = eval(leaks)  # noqa: S307 (the list the code printed)
    if setup == "off":
        leaks = [(where, name) for where, name in leaks if where in ("os.environ", "env in a child")]
    assert leaks == []
