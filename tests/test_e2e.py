"""A reduced pipeline (configs/e2e_smoke.yaml) through every stage and every environment."""

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_pipeline_runs_every_stage_and_resumes(tmp_path):
    cmd = ["bash", str(ROOT / "scripts" / "run_iterative.sh"), "configs/e2e_smoke.yaml", f"runs_dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    run = tmp_path / "e2e_smoke"
    assert (run / "sft" / "model" / "model.safetensors").exists()
    assert (run / "iter1" / "train" / "model" / "alignment_finished.json").exists()
    stats = json.loads((run / "iter1" / "pairs" / "data" / "stats.json").read_text())
    assert stats["kto"]["rows"] > 0
    # Iteration 1 mixes two SFT checkpoints (sft.mixture_epoch: 1, SPEC 4.4).
    assert stats["sources"]["previous"]["trajectories"] == 8 * 2
    previous = (run / "iter1" / "generate" / "previous" / "trajectories.jsonl").read_text().splitlines()
    assert json.loads(previous[0])["model"] == str(run / "sft" / "model" / "checkpoint-30")
    # Model selection: every checkpoint evaluated on the held-out prompts, the best one kept.
    selection = json.loads((run / "iter1" / "select" / "selection.json").read_text())
    assert selection["selection"] == "best" and selection["heldout_prompts"] >= 1
    assert len(selection["accuracy"]) >= 2 and str(selection["final_step"]) in selection["accuracy"]
    trained = run / "iter1" / "train" / "model"
    kept = [p.name for p in trained.glob("checkpoint-*")]
    assert kept == ([] if selection["step"] == selection["final_step"] else [f"checkpoint-{selection['step']}"])
    evaluated = json.loads((run / "eval" / "iter1" / "tiny_test" / "generate" / "trajectories.jsonl")
                           .read_text().splitlines()[0])["model"]
    assert evaluated == selection["model"]
    for tag in ("sft", "iter1"):
        metrics = run / "eval" / tag / "tiny_test" / "generate" / "trajectories.metrics.json"
        assert json.loads(metrics.read_text())["n_scored"] == 8
    tables = (run / "tables.md").read_text()
    assert "| SFT |" in tables and "| M-KTO iteration 1 |" in tables
    # The same command again finds every stage done and runs nothing.
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "[run ]" not in again.stdout
