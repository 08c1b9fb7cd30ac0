"""vLLM (the CPU build here) loads the tiny world's model folder and generates from it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys
from vllm import LLM, SamplingParams
if __name__ == "__main__":
    llm = LLM(model=sys.argv[1], enforce_eager=True, seed=0, max_model_len=512)
    out = llm.generate(["<start_of_turn>user\\nHi<end_of_turn>\\n<start_of_turn>model\\n"],
                       SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))
    print("TOKENS", len(out[0].outputs[0].token_ids))
"""


@pytest.mark.slow
def test_vllm_generates_from_tiny_model(tiny_world: Path, tmp_path: Path):
    script = tmp_path / "gen.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_CACHE_ROOT=str(tmp_path / "vcache"))
    proc = subprocess.run([sys.executable, str(script), str(tiny_world / "model")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TOKENS 8" in proc.stdout
