"""Every grading call has a time limit that works from threads and processes; a timeout scores
False and is reported (SPEC 3.5); a crashed worker is replaced."""

import multiprocessing
import shutil
import threading
import time
from pathlib import Path

import pytest

from inference.grading import VERSIONS, GradingPool, Pair, grade, grader_version, graders

# sympy's simplify takes minutes on this pair (measured: 140 s), so the reference grader hangs.
SLOW = Pair("(x+y+z+1)^{30}", "(1+x+y+z)^{31}")


@pytest.fixture(scope="module")
def pool():
    with GradingPool(("paper", "strict"), timeout_s=3, workers=2) as p:
        yield p


def test_decisions_in_input_order(pool):
    grades = pool.grade_many([("500", "5"), ("\\frac12", "0.5"), Pair("3,5", "5,3"), ("", "1")])
    assert [g.scores for g in grades] == [
        {"paper": True, "strict": False}, {"paper": True, "strict": True},
        {"paper": False, "strict": True}, {"paper": False, "strict": False}]
    assert all(g.timeouts == [] for g in grades)


def test_timeout_scores_false_is_counted_and_the_pool_goes_on(pool):
    start = time.monotonic()
    grades = pool.grade_many([("1", "1"), SLOW, ("2", "2")], graders=("paper",), timeout_s=2)
    assert time.monotonic() - start < 60
    assert [g.scores["paper"] for g in grades] == [True, False, True]
    assert [g.timeouts for g in grades] == [[], ["paper"], []]
    assert pool.grade_many([("7", "7")])[0].scores == {"paper": True, "strict": True}


def test_works_from_a_worker_thread(pool):
    """math-verify's own timeout raises outside the main thread; ours does not care."""
    out = {}

    def run():
        out["grades"] = pool.grade_many([("\\frac12", "0.5"), SLOW], graders=("paper",), timeout_s=2)

    t = threading.Thread(target=run)
    t.start()
    t.join(120)
    assert [g.scores["paper"] for g in out["grades"]] == [True, False]
    assert out["grades"][1].timeouts == ["paper"]


def _in_child(queue):
    with GradingPool(("paper",), timeout_s=2, workers=1) as p:
        queue.put([g.scores["paper"] for g in p.grade_many([("0.5", "\\frac12"), SLOW])])


def test_works_inside_a_daemon_process():
    """Daemon processes may not have multiprocessing children; plain subprocesses are fine."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_in_child, args=(queue,), daemon=True)
    child.start()
    assert queue.get(timeout=120) == [True, False]
    child.join(30)


def test_workers_run_under_an_address_space_limit():
    """sympy can blow up on adversarial answers; each worker has its own memory ceiling."""
    with GradingPool(("paper",), workers=1, memory_mb=3000) as p:
        assert p.grade_many([("1", "1")])[0].scores["paper"]
        limits = Path(f"/proc/{p._workers[0].proc.pid}/limits").read_text()
    line = next(x for x in limits.splitlines() if x.startswith("Max address space"))
    assert str(3000 * 1024 * 1024) in line


def test_grade_single_calls():
    assert grade("500", "5") is True
    assert grade("500", "5", "strict") is False
    assert grade("500", "5", "strict", timeout_s=None) is False
    assert grade("\\frac{68}{3}", "\\frac{68}{3}", "strict", gt_raw="\\frac{68}{3}\\text{ pounds}")


def test_bad_grader_names():
    with pytest.raises(ValueError, match="unknown grader"):
        GradingPool(("paper", "fuzzy"))
    with pytest.raises(ValueError, match="unknown grader"):
        grader_version(["nope"])
    assert grader_version(["paper", "strict"]) == f"paper={VERSIONS['paper']},strict={VERSIONS['strict']}"


def test_a_change_to_a_graders_source_moves_its_version(tmp_path):
    """Versions are digests of what decides (no number to forget to bump): editing strict.py
    moves strict's version only; editing extract.py (the normalisation both use) moves both."""
    here = Path(graders.__file__).parent
    for name in ("paper.py", "strict.py", "extract.py", "graders.py"):
        shutil.copy(here / name, tmp_path / name)
    now = {g: graders.source_version(*deps, here=tmp_path) for g, deps in graders.DEPENDS_ON.items()}
    assert now == VERSIONS and len(set(now.values())) == 3
    strict = tmp_path / "strict.py"
    strict.write_text(strict.read_text().replace('"times")', '"times|hours")'))
    after = {g: graders.source_version(*deps, here=tmp_path) for g, deps in graders.DEPENDS_ON.items()}
    assert after["strict"] != now["strict"] and after["paper"] == now["paper"]
    (tmp_path / "extract.py").write_text((tmp_path / "extract.py").read_text() + "\n")
    again = {g: graders.source_version(*deps, here=tmp_path) for g, deps in graders.DEPENDS_ON.items()}
    assert again["strict"] != after["strict"] and again["paper"] != now["paper"]
    assert again["math_verify"] == now["math_verify"]
