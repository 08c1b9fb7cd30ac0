"""The tiny offline world: deterministic, well-formed, and loadable by transformers."""

import hashlib
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from formats import sft

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--n-train", "50", "--n-test", "20", "--n-sft", "200"]


def build(out: Path, seed: int) -> dict[str, str]:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tiny_world.py"), "--seed", str(seed),
                    "--out", str(out), *SMALL], check=True, capture_output=True)
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_world(tmp_path):
    with ThreadPoolExecutor(3) as pool:  # three processes at once: a third of the wall time
        a, b, c = pool.map(build, [tmp_path / "a", tmp_path / "b", tmp_path / "c"], [3, 3, 4])
    assert a == b
    assert "model/model.safetensors" in a and "data/sft.jsonl" in a
    assert c["data/train.jsonl"] != a["data/train.jsonl"]
    assert c["model/model.safetensors"] != a["model/model.safetensors"]


def test_problems_are_gsm8k_format_with_correct_answers(tiny_world):
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (tiny_world / "data" / f"{split}.jsonl").open()]
        assert rows and len({r["idx"] for r in rows}) == len(rows)
        for r in rows[:200]:
            work, answer = r["answer"].split("####")
            lhs, rhs = work.strip().split(" = ")
            assert eval(lhs) == int(rhs) == int(answer)
            assert all(n in r["question"] for n in re.findall(r"\d+", lhs))
    train = {json.loads(line)["question"] for line in (tiny_world / "data" / "train.jsonl").open()}
    test = {json.loads(line)["question"] for line in (tiny_world / "data" / "test.jsonl").open()}
    assert not train & test


def test_sft_trajectories_are_tool_integrated_and_include_recoveries(tiny_world):
    rows = list(sft.read(tiny_world / "data" / "sft.jsonl"))
    recoveries = 0
    for row in rows:
        msgs = row["messages"]
        assert "```python" in msgs[1]["content"]
        assert msgs[2]["content"].startswith("```output\n")
        assert "\\boxed{" in msgs[-1]["content"]
        if "Error" in msgs[2]["content"]:
            recoveries += 1
            assert "```python" in msgs[3]["content"]
    assert 0.05 < recoveries / len(rows) < 0.3


def test_tokenizer_renders_gemma_turns_and_splits_digits(tiny_world):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_world / "model")
    text = tok.apply_chat_template([{"role": "user", "content": "What is 12+30?"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == "<bos><start_of_turn>user\nWhat is 12+30?<end_of_turn>\n<start_of_turn>model\n"
    digits = tok.tokenize("50417")
    assert [t.replace("Ġ", "") for t in digits] == list("50417")


@pytest.mark.slow
def test_model_generates_with_transformers(tiny_world):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_world / "model")
    model = AutoModelForCausalLM.from_pretrained(tiny_world / "model")
    config = model.config
    assert config.hidden_size // config.num_attention_heads >= 32  # vLLM CPU attention
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids.shape[1]
