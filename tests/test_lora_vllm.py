"""Across environments, as the pipeline chains them: M-DPO with LoRA (the one-GPU path) in the
alignment environment saves a merged model, and vLLM (CPU build) in the inference environment
loads it as a plain model and decodes exactly what transformers decodes from it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset

ROOT = Path(__file__).resolve().parents[1]
ALIGNMENT_PY = ROOT / ".venv-alignment" / "bin" / "python"
SCRIPT = """
import json, sys
from vllm import LLM, SamplingParams
if __name__ == "__main__":
    llm = LLM(model=sys.argv[1], enforce_eager=True, seed=0, max_model_len=512, dtype="float32")
    out = llm.generate({"prompt_token_ids": json.loads(sys.argv[2])},
                       SamplingParams(max_tokens=12, temperature=0, ignore_eos=True))
    print("IDS", json.dumps(list(out[0].outputs[0].token_ids)))
"""


def pairs(world: Path, n: int = 16) -> list[dict]:
    rows = [json.loads(line)["messages"] for line in (world / "data" / "sft.jsonl").read_text().splitlines()]
    rows = [m for m in rows if len(m) >= 4][:n]
    # rejected: the chosen trajectory with its final answer turn replaced
    return [{"prompt": m[:1], "chosen": m[1:], "idx": str(i), "gt": "0",
             "rejected": [*m[1:-1], {"role": "assistant", "content": "The answer is $\\boxed{0}$."}]}
            for i, m in enumerate(rows)]


@pytest.mark.slow
def test_lora_trained_merged_model_loads_in_vllm(tiny_world: Path, tmp_path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    Dataset.from_list(pairs(tiny_world)).save_to_disk(tmp_path / "dpo")
    out = tmp_path / "model"
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    train = subprocess.run(
        [str(ALIGNMENT_PY), "alignment_algorithms/run_mdpo.py",
         "--config", "alignment_algorithms/configs/mdpo_tiny_cpu.yaml",
         f"model_name_or_path={tiny_world / 'model'}", f"dataset_path={tmp_path / 'dpo'}", f"output_dir={out}",
         "use_peft=true", "lora_r=8", "lora_alpha=16", "lora_target_modules=[all-linear]", "learning_rate=1e-2",
         "max_steps=2", "eval_strategy=no", "report_to=none"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert train.returncode == 0, train.stderr[-3000:]
    assert not (out / "adapter_config.json").exists() and (out / "adapter" / "adapter_config.json").exists()

    tokenizer = AutoTokenizer.from_pretrained(out)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is 12 + 30?"}],
                                         add_generation_prompt=True, tokenize=False)
    prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    with torch.no_grad():
        expected = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                  eos_token_id=None, min_new_tokens=12)[0, len(prompt):].tolist()
    base = AutoModelForCausalLM.from_pretrained(tiny_world / "model", dtype=torch.float32)
    assert any(not torch.equal(p, base.state_dict()[n]) for n, p in model.state_dict().items())

    script = tmp_path / "gen.py"
    script.write_text(SCRIPT)
    vllm_env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CACHE_ROOT": str(tmp_path / "vcache")}
    run = subprocess.run([sys.executable, str(script), str(out), json.dumps(prompt)], env=vllm_env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    ids = json.loads(run.stdout.split("IDS ", 1)[1].splitlines()[0])
    assert ids == expected
