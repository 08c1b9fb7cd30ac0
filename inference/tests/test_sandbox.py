"""Sandbox semantics: the reference's observations (SPEC 2.2) in both modes, its defects fixed,
persistent == replay for deterministic code, state, timeouts, crashes, concurrency."""

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from inference.sandbox import Observation, Sandbox, SandboxConfig, SandboxError

MODES = ["persistent", "replay"]
TIMEOUT = 2.0


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxConfig(timeout_s=TIMEOUT, kill_grace_s=0.5, workers=4, prestarted=4)) as sb:
        yield sb


def run_cells(sandbox, mode, cells):
    with sandbox.session(mode) as session:
        return [session.run(cell) for cell in cells]


def last(sandbox, mode, *cells) -> Observation:
    return run_cells(sandbox, mode, cells)[-1]


# The SPEC 2.2 table: the same strings in both modes, except where the reference was broken.
SYNTAX_HASH = hashlib.sha1(b"print(\n").hexdigest()[:12]
TABLE = [
    (["x = 3", "x*2"], "6", "ok"),
    (["print('hi')\n5"], "hi\n5", "ok"),
    (["print(1)\nprint(2)\n3\n4"], "1\n2\n4", "ok"),
    (["for i in range(3):\n    i"], "Result is not defined", "ok"),
    (["y = 5"], "Result is not defined", "ok"),
    (["print(undefined_var)"], "NameError: name 'undefined_var' is not defined", "error"),
    (["print('before')\n1/0"], "before\nZeroDivisionError: division by zero", "error"),  # SPEC 8.7 fixed
    (["print("], f"File <ipython-input-1-{SYNTAX_HASH}>:1\n    print(\n          ^\nSyntaxError: incomplete input",
     "error"),
    (["import nonexistent_mod"], "ModuleNotFoundError: No module named 'nonexistent_mod'", "error"),
    (["import sys\nprint('to stderr', file=sys.stderr)"], "to stderr", "ok"),
    (["print('a\\nb')"], "a\nb", "ok"),  # SPEC 8.1 fixed: escapes reach Python untouched
    (["len('\\\\frac')"], "5", "ok"),
    (["s = \"q\""], "Result is not defined", "ok"),  # a cell ending in a quote
    (["def get_input(x):\n    return x\nget_input(2)"], "2", "ok"),  # SPEC 8.4: no substring blacklist
    (["print('Timeout Error')"], "Timeout Error", "ok"),  # SPEC 8.5: the status is not read from text
    (["print('Out[1]: 5')"], "Out[1]: 5", "ok"),  # SPEC 8.6: real output is never edited
    (["import numpy as np\nprint('m')\nnp.eye(2)"], "m\n\narray([[1., 0.],\n       [0., 1.]])", "ok"),
    (["import sys; sys.exit(3)"], "SystemExit: 3", "error"),
    ([""], "Result is not defined", "ok"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("cells", "text", "status"), TABLE, ids=[c[0][-1][:24] for c in TABLE])
def test_reference_table(sandbox, mode, cells, text, status):
    obs = last(sandbox, mode, *cells)
    assert (obs.text, obs.status) == (text, status)


@pytest.mark.parametrize("mode", MODES)
def test_unlimited_output_and_unicode(sandbox, mode):
    assert last(sandbox, mode, "print('x' * 5000)").text == "x" * 5000  # the reference: no limit
    assert last(sandbox, mode, "print('π ≈ 3.14, 日本語, é')\n'∑'").text == "π ≈ 3.14, 日本語, é\n'∑'"
    assert last(sandbox, mode, "print('\\\\frac{1}{2}')").text == "\\frac{1}{2}"


@pytest.mark.parametrize("mode", MODES)
def test_state_across_cells_but_not_across_trajectories(sandbox, mode):
    obs = run_cells(sandbox, mode, ["a = 10\nprint('first')", "def f(k):\n    return a + k", "print(f(1))"])
    assert [o.text for o in obs] == ["first", "Result is not defined", "11"]
    assert last(sandbox, mode, "a").text == "NameError: name 'a' is not defined"
    names = "sorted(k for k in globals() if not k.startswith('_'))"
    assert last(sandbox, mode, names).text == "['In', 'Out', 'exit', 'get_ipython', 'open', 'quit']"


DETERMINISTIC = [
    ["a = 10\nprint('first')", "print(a + 1)", "a * 2"],
    ["import sympy as sp\nx = sp.symbols('x')\nsol = sp.solve(x**2 - 4, x)\nsol", "print(sum(sol))",
     "sp.Rational(1, 3) + sp.Rational(1, 6)"],
    ["from fractions import Fraction\nf = Fraction(3, 4)", "f += 1\nprint(f)", "1/0", "print(f)", "f ** 2"],
    ["items = [1, 2, 3]\nitems.append(4)", "print(len(items))\nitems", "import math\nmath.comb(10, 3) + items[-1]"],
    ["class A:\n    def __repr__(self):\n        return 'A()'\nA()", "print([A(), A()])", "undefined + 1"],
    ["import numpy as np\nv = np.arange(6).reshape(2, 3)\nv", "v.sum(axis=0)", "print(v.T)"],
    ["s = {'b', 'a', 'c'}\ns", "print(sorted(s))", "import sys\nprint('err', file=sys.stderr)\n7"],
    ["total = 0\nfor i in range(5):\n    total += i", "total", "print(\n", "total"],
]


@pytest.mark.parametrize("cells", DETERMINISTIC, ids=[str(i) for i in range(len(DETERMINISTIC))])
def test_persistent_matches_replay_for_deterministic_code(sandbox, cells):
    persistent = run_cells(sandbox, "persistent", cells)
    replay = run_cells(sandbox, "replay", cells)
    assert persistent == replay


def test_replay_repeats_side_effects_and_persistent_does_not(sandbox):
    # The reference's defect 3, kept in replay mode on purpose: earlier cells run again.
    cells = ["counter = []", "counter.append(1)\nlen(counter)", "counter.append(1)\nlen(counter)"]
    assert [o.text for o in run_cells(sandbox, "persistent", cells)][1:] == ["1", "2"]
    assert [o.text for o in run_cells(sandbox, "replay", cells)][1:] == ["1", "2"]
    random_cells = ["import random\nr = random.random()", "print(r)", "print(r)"]
    persistent = run_cells(sandbox, "persistent", random_cells)
    assert persistent[1] == persistent[2]


@pytest.mark.parametrize("mode", MODES)
def test_timeout_keeps_prints_and_state(sandbox, mode):
    with sandbox.session(mode) as session:
        assert session.run("x = 41").status == "ok"
        start = time.monotonic()
        obs = session.run("print('working')\nwhile True:\n    pass")
        assert time.monotonic() - start < TIMEOUT + 1.5
        assert (obs.text, obs.status) == ("working\nTimeoutError: 'Timed Out'", "timeout")
        if mode == "persistent":  # replay would re-run the endless loop, as the reference did
            assert session.run("x + 1").text == "42"


@pytest.mark.parametrize("mode", MODES)
def test_code_that_ignores_the_timeout_is_killed(sandbox, mode):
    code = ("import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
            "while True:\n    try:\n        time.sleep(10)\n    except BaseException:\n        pass")
    with sandbox.session(mode) as session:
        session.run("x = 41")
        start = time.monotonic()
        obs = session.run(code)
        assert time.monotonic() - start < TIMEOUT + 2.5
        assert (obs.text, obs.status) == ("Timeout Error", "timeout")
        if mode == "persistent":  # the killed shell's state is rebuilt from the completed cells
            assert session.run("x + 1").text == "42"


def test_replay_shares_one_budget_like_the_reference(sandbox):
    with sandbox.session("replay") as session:
        assert session.run("import time\ntime.sleep(1.2)").status == "ok"
        obs = session.run("time.sleep(1.2)\nprint('late')")
    assert obs.status == "timeout"


@pytest.mark.parametrize("mode", MODES)
def test_exits_and_crashes_end_only_that_interpreter(sandbox, mode):
    with sandbox.session(mode) as session:
        session.run("keep = 'kept'")
        assert session.run("print('bye')\nimport os\nos._exit(7)") == Observation("SystemExit: 7", "error")
        if mode == "persistent":
            assert session.run("keep").text == "'kept'"
            assert session.run("exit()").status == "error"  # IPython 9's InteractiveShell: no ask_exit
            assert session.run("1 + 1").text == "2"
        else:  # replay re-runs the os._exit cell every turn, as the reference would
            assert session.run("1 + 1").text == "SystemExit: 7"
    assert last(sandbox, mode, "import ctypes\nctypes.string_at(0)").text.startswith(
        "RuntimeError: the interpreter was killed: Segmentation fault")


@pytest.mark.parametrize("mode", MODES)
def test_stdin_recursion_and_huge_output(sandbox, mode):
    assert last(sandbox, mode, "input('n? ')").text == "n?\nEOFError: EOF when reading a line"
    assert last(sandbox, mode, "import sys\nsys.stdin.read()").text == "''"
    start = time.monotonic()
    obs = last(sandbox, mode, "def f(n):\n    return f(n + 1)\nf(0)")
    assert obs.text == "RecursionError: maximum recursion depth exceeded"
    assert time.monotonic() - start < TIMEOUT
    huge = last(sandbox, mode, "print('y' * 3_000_000)").text  # bounded by the default cap
    assert huge == "y" * 50_000 + "..." + "y" * 50_000


def test_subprocess_output_is_captured(sandbox):
    obs = last(sandbox, "persistent", "import os\nos.system('echo from-a-shell')")
    assert obs.text == "0\nfrom-a-shell"


def test_fork_in_the_cell_does_not_answer_twice(sandbox):
    with sandbox.session() as session:
        obs = session.run("import os\npid = os.fork()\nprint('parent' if pid else 'child')")
        assert obs.text == "parent"
        assert session.run("print('next')").text == "next"


def test_many_sessions_from_many_threads(sandbox):
    results, errors = {}, []

    def trajectory(i):
        try:
            with sandbox.session("persistent" if i % 2 else "replay") as session:
                session.run(f"v = {i}")
                results[i] = [session.run("v * 2").text, session.run("print(v + 1)").text]
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=trajectory, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == {i: [str(2 * i), str(i + 1)] for i in range(40)}


def test_workers_on_demand_and_prestarted():
    with Sandbox(SandboxConfig(prestarted=0, forkers=1, workers=2)) as sb:
        def trajectory(i):
            with sb.session() as session:
                return session.run(f"{i} * 2").text

        with ThreadPoolExecutor(16) as pool:
            assert list(pool.map(trajectory, range(48))) == [str(2 * i) for i in range(48)]
        sb.prestart(3)  # workers for trajectories about to start: forked, isolated and warm
        assert sb.wait_stocked(timeout_s=60)
        assert [trajectory(i) for i in range(4)] == ["0", "2", "4", "6"]


def test_closed_session_and_bad_code_type(sandbox):
    session = sandbox.session()
    session.close()
    with pytest.raises(SandboxError):
        session.run("1")
    with sandbox.session() as open_session, pytest.raises(TypeError):
        open_session.run(b"1")


def test_output_truncation_keeps_head_and_tail():
    with Sandbox(SandboxConfig(max_output_chars=100, prestarted=1, forkers=1)) as sb, sb.session() as session:
        obs = session.run("print('a' * 100 + 'b' * 100)")
    assert obs.text == "a" * 50 + "..." + "b" * 50


def test_runaway_output_is_bounded_by_default_and_real_output_is_not(sandbox):
    """The default cap (100,000 characters) is far above what fits in a 2048-token trajectory."""
    assert sandbox.config.max_output_chars == SandboxConfig().max_output_chars == 100_000
    with sandbox.session() as session:
        runaway = session.run("print('a' * 10**7, 'b' * 10**7)")
        fits = session.run("print(' '.join(str(i) for i in range(5000)))")  # ~24,000 characters
    assert runaway.text == "a" * 50_000 + "..." + "b" * 50_000 and runaway.status == "ok"
    assert fits.text == " ".join(str(i) for i in range(5000))


def test_config_is_validated():
    with pytest.raises(ValueError, match="timeout_s"):
        Sandbox(SandboxConfig(timeout_s=0))
    with pytest.raises(ValueError, match="mode"):
        Sandbox(SandboxConfig(mode="sometimes"))
