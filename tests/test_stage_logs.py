"""Every stage's output goes to the terminal and to runs/<name>/logs/<stage>.log."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import pipeline  # noqa: E402

CHILD = "import sys; print('to stdout'); print('to stderr', file=sys.stderr); sys.stdout.write('bar 50%\\rbar 100%\\n')"


def runner(tmp_path: Path) -> pipeline.Runner:
    return pipeline.Runner(pipeline.load(str(ROOT / "configs" / "tiny_cpu.yaml"), [f"runs_dir={tmp_path}"]),
                           dry_run=False)


def test_stage_output_is_printed_and_logged_under_the_run(tmp_path, capfd):
    r = runner(tmp_path)
    r.stage(r.run_dir / "iter1" / "pairs", "iteration 1: preference data", [sys.executable, "-c", CHILD])
    log = (tmp_path / "tiny_cpu" / "logs" / "iter1-pairs.log").read_bytes().decode()  # keeps \r
    assert "iteration 1: preference data" in log  # header: title and command
    for text in ("to stdout", "to stderr", "bar 50%\rbar 100%"):
        assert text in log
    shown = capfd.readouterr().out
    assert "to stdout" in shown and "to stderr" in shown and "iter1-pairs.log" in shown


def test_a_rerun_appends_and_a_failing_stage_keeps_its_log(tmp_path):
    r = runner(tmp_path)
    fail = [sys.executable, "-c", "import sys; print('first try'); sys.exit(3)"]
    with pytest.raises(SystemExit, match="failed"):
        r.stage(r.run_dir / "sft", "SFT", fail)
    r.stage(r.run_dir / "sft", "SFT", [sys.executable, "-c", "print('second try')"])
    log = (tmp_path / "tiny_cpu" / "logs" / "sft.log").read_text()
    assert log.index("first try") < log.index("second try")


def test_a_grandchild_holding_the_output_does_not_hold_the_pipeline(tmp_path):
    child = ("import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
             "print('parent done')")
    start = time.time()
    assert pipeline.run_stage([sys.executable, "-c", child], {}, tmp_path / "x.log") == 0
    assert time.time() - start < 30
    assert "parent done" in (tmp_path / "x.log").read_text()
