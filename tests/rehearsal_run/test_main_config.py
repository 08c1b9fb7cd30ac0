"""CI's rehearsal (issue 20): the paper's main config, configs/gemma-1.1-it-7b_mdpo.yaml, through every
stage on this CPU machine, unchanged but for scripts/rehearsal.py's substitutions: its SFT config
through axolotl, generation from two SFT checkpoints on two vLLM engines (data parallel 2), grading,
pairs, M-DPO through the config's accelerate launcher on 2 CPU processes, selection on the held-out
prompts, evaluation, tables.

Its own suite (`bash scripts/test.sh rehearsal`), run in the lane beside the pipeline tests.
"""

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/gemma-1.1-it-7b_mdpo.yaml"


def test_the_main_gpu_config_rehearses_end_to_end(tmp_path):
    out = subprocess.run(["bash", "scripts/run_iterative.sh", CONFIG, "rehearse=true", f"runs_dir={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=3600,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "rehearsal: substitutions" in out.stdout and "preflight: all" in out.stdout
    run = tmp_path / "rehearsal" / "gemma-1.1-it-7b_mdpo"
    assert json.loads((run / "sft" / "model" / "sft_complete.json").read_text())["global_step"] > 0
    assert len(list((run / "sft" / "model").glob("checkpoint-*"))) >= 3, "no epoch checkpoints for M_0"
    for t in (1, 2, 3):
        stats = json.loads((run / f"iter{t}" / "pairs" / "data" / "stats.json").read_text())
        assert stats["dpo"]["rows"] > 0, f"iteration {t}: no pair, so M-DPO was not rehearsed"
        done = json.loads((run / f"iter{t}" / "train" / "model" / "alignment_finished.json").read_text())
        assert done["stage"] == "mdpo" and done["steps"] > 0
        assert (done["processes"], done["device"]) == (2, "cpu")  # the accelerate file's processes, on CPU
        assert json.loads((run / f"iter{t}" / "select" / "selection.json").read_text())["heldout_prompts"] > 0
    assert {"current", "previous"} <= {p.name for p in (run / "iter1" / "generate").iterdir()}
    assert "EngineCore_DP1" in (run / "logs" / "generate-sft.log").read_text()  # vLLM data parallel 2, on CPU
    tables = (run / "tables.md").read_text()
    assert "paper GSM8K" in tables and "iteration 3" in tables
