"""Where a model turn ends, on real engines, and what the M-DPO trainer later sees of it.

The tiny world's random model never writes "```output" or a `\\boxed{}` answer, so this module
trains it (about 60 steps, in a tmp dir) on one conversation until greedy decoding reproduces it: a
program, then an output the model imagines, in the same turn. vLLM's engine samples, our code
(`backends.turn_text`) must cut the turn at "```output", and the sandbox's real output must follow.
Then the trainer's own tokenisation of the stored trajectory (`mdpo_trainer.tokenize_pair`, in the
alignment environment) must score exactly the token ids the model sampled, each in the context
the model sampled it in.

Sampled tokens cover two chat templates: the tiny world's (Gemma's turn markers) through vLLM,
and SmolLM2-135M-Instruct's ChatML through the transformers backend (skipped without the model,
built by scripts/make_smollm2.py). The other shipped templates (Gemma-2, Mistral, Llama-3,
Qwen2.5, DeepSeek) are checked on text only, in alignment_algorithms/tests/test_turn_mask.py.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from formats import trajectory
from formats.config import build
from inference import backends
from inference.generate import GenerateConfig, run

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ALIGNMENT_PYTHON = ROOT / ".venv-alignment" / "bin" / "python"
SMOLLM2 = ROOT / "runs" / "models" / "SmolLM2-135M-Instruct"
QUESTION = "What is 6 times 7?"
PROGRAM = "```python\nprint(6 * 7)\n```"
OBSERVATION = "```output\n42\n```"
IMAGINED = f"{PROGRAM}\n```output\n41\n```\nThe answer is $\\boxed{{41}}$."  # what it says unchecked
ANSWER = "The answer is $\\boxed{42}$."


@pytest.fixture(scope="module")
def gemma_model(tiny_world, tmp_path_factory) -> Path:
    """The tiny world's architecture, trained to write IMAGINED after the question and ANSWER
    after the real observation, both as the chat template renders the conversation."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out = tmp_path_factory.mktemp("model")
    tokenizer = AutoTokenizer.from_pretrained(tiny_world / "model")
    user = {"role": "user", "content": QUESTION}
    after_code = [user, {"role": "assistant", "content": PROGRAM}, {"role": "user", "content": OBSERVATION}]
    texts = [tokenizer.apply_chat_template([user], tokenize=False, add_generation_prompt=True) + IMAGINED,
             tokenizer.apply_chat_template(after_code, tokenize=False, add_generation_prompt=True) + ANSWER]
    ids = [tokenizer(t + "<end_of_turn>", add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, ids))
    labels = torch.tensor([x + [-100] * (width - len(x)) for x in ids])
    inputs = {"input_ids": labels.clamp(min=0), "attention_mask": (labels >= 0).long(), "labels": labels}
    torch.manual_seed(0)
    net = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_world / "model"), dtype=torch.float32)
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 2M-parameter model: threads only wait on each other on a busy machine
    try:
        for _ in range(300):  # about 60 steps
            loss = net(**inputs).loss
            if loss.item() < 0.02:
                break
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 0.02, f"the tiny model did not learn its conversation (loss {loss.item():.3f})"
    net.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "generation_config.json").write_bytes((tiny_world / "model" / "generation_config.json").read_bytes())
    return out


def sample(model: Path, tmp: Path, backend: dict, monkeypatch, **sampling) -> tuple[dict, list]:
    """One greedy trajectory through `inference.generate` and the real sandbox; with it, each
    turn's (prompt ids, sampled ids), seen as they pass into `turn_text`."""
    (tmp / "q.jsonl").write_text(json.dumps({"idx": 0, "question": QUESTION, "answer": "x\n#### 42"}) + "\n")
    cfg = build(GenerateConfig, {
        "model": str(model), "output": str(tmp / "out.jsonl"), "progress": False,
        "data": {"path": str(tmp / "q.jsonl"), "name": "gsm8k"}, "horizon": 3,
        "sampling": {"temperature": 0.0, **sampling}, "sandbox": {"prestarted": 1}, "backend": backend}, "test")
    turns = []
    real = backends.turn_text

    def spy(tokenizer, token_ids, req):
        turns.append((list(req.prompt_ids), list(token_ids)))
        return real(tokenizer, token_ids, req)

    monkeypatch.setattr(backends, "turn_text", spy)
    run(cfg)
    (record,) = trajectory.read(tmp / "out.jsonl")
    return record, turns


def trainer_view(model: Path, record: dict, tmp: Path) -> tuple[list[int], list[int]]:
    """(ids, trained mask) of the stored trajectory as the M-DPO trainer tokenises a pair row
    (prompt = the messages before the first assistant turn, as inference/pairs.py splits it)."""
    messages = record["messages"]
    first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    row = {"prompt": messages[:first], "chosen": messages[first:], "rejected": messages[first:]}
    (tmp / "row.json").write_text(json.dumps(row))
    code = ("import json, sys\nfrom transformers import AutoTokenizer\n"
            "from alignment_algorithms.mdpo_trainer import CHOSEN_MASK, tokenize_pair\n"
            "row = json.load(open(sys.argv[2]))\n"
            "t = tokenize_pair(row, 0, AutoTokenizer.from_pretrained(sys.argv[1]), 'test', True, True)\n"
            "print(json.dumps([t['prompt_ids'], t['chosen_ids'], t[CHOSEN_MASK]]))")
    proc = subprocess.run([str(ALIGNMENT_PYTHON), "-c", code, str(model), str(tmp / "row.json")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    prompt, completion, mask = json.loads(proc.stdout.splitlines()[-1])
    return prompt + completion, [0] * len(prompt) + mask


def kept_ids(tokenizer, sampled: list[int], content: str, stop_token_ids: set[int]) -> list[int]:
    """The sampled ids the stored turn holds: up to the cut, and the end-of-turn token if sampled."""
    ends = sampled[-1:] if sampled and sampled[-1] in stop_token_ids else []
    body = sampled[:len(sampled) - len(ends)]
    kept = next((k for k in range(len(body) + 1) if tokenizer.decode(body[:k], skip_special_tokens=True).rstrip()
                 == content), None)
    assert kept is not None, f"no prefix of the sampled ids decodes to the stored turn {content!r}"
    return body[:kept] + ends


def assert_trained_as_sampled(model: Path, record: dict, turns: list, tmp: Path, stop_token_ids: set[int]) -> str:
    """Each turn's prompt ids are a prefix of the trainer's ids, its kept sampled ids follow them
    token for token and are all trained. Returns the trained text the model did not sample."""
    tokenizer = AutoTokenizer.from_pretrained(model)
    ids, mask = trainer_view(model, record, tmp)
    contents = [m["content"] for m in record["messages"] if m["role"] == "assistant"]
    assert len(contents) == len(turns)
    sampled_at = set()
    for (prompt, sampled), content in zip(turns, contents, strict=True):
        kept = kept_ids(tokenizer, sampled, content, stop_token_ids)
        assert ids[:len(prompt)] == prompt, "the trainer scores this turn in another context than the model's"
        at = range(len(prompt), len(prompt) + len(kept))
        assert ids[at.start:at.stop] == kept, (tokenizer.convert_ids_to_tokens(ids[at.start:at.stop]),
                                               tokenizer.convert_ids_to_tokens(kept))
        assert all(mask[i] for i in at), "a sampled token is masked out of training"
        sampled_at.update(at)
    return tokenizer.decode([t for i, (t, m) in enumerate(zip(ids, mask, strict=True)) if m and i not in sampled_at])


@pytest.fixture(scope="module")
def gemma_trajectory(gemma_model, tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        return sample(gemma_model, tmp_path_factory.mktemp("gen"), {
            "kind": "vllm", "dtype": "float32", "enforce_eager": True, "max_model_len": 2048,
            "cpu_kvcache_space_gib": 1}, monkeypatch)


def test_vllm_turn_is_cut_at_output_by_our_code_and_the_real_output_follows(gemma_model, gemma_trajectory):
    record, turns = gemma_trajectory
    tokenizer = AutoTokenizer.from_pretrained(gemma_model)
    assert "```output" in tokenizer.decode(turns[0][1])  # the engine sampled the fence...
    assert record["messages"] == [  # ...our cut kept only the program, and the sandbox's 42 follows
        {"role": "user", "content": QUESTION}, {"role": "assistant", "content": PROGRAM},
        {"role": "user", "content": OBSERVATION}, {"role": "assistant", "content": ANSWER}]
    assert (record["stop_reason"], record["turns"], record["pred"]) == ("answer", 2, "42")
    assert record["generated_tokens"] == sum(len(s) for _, s in turns)


@pytest.mark.skipif(not ALIGNMENT_PYTHON.exists(), reason="no .venv-alignment: the trainer's tokenisation lives there")
def test_the_trainer_trains_the_tokens_vllm_sampled(gemma_model, gemma_trajectory, tmp_path):
    record, turns = gemma_trajectory
    end = AutoTokenizer.from_pretrained(gemma_model).convert_tokens_to_ids("<end_of_turn>")
    assert turns[1][1][-1] == end  # the answer turn ended with a sampled end-of-turn, trained as such
    unsampled = assert_trained_as_sampled(gemma_model, record, turns, tmp_path, {end})
    # Besides the sampled tokens, only the template's markup is trained: the end-of-turn that
    # replaces the cut fence, the next turn's header, the newline after a turn and the reference's EOS.
    assert unsampled == "<end_of_turn>\n<start_of_turn>model\n\n<eos>"


@pytest.mark.skipif(not SMOLLM2.exists(), reason=f"no {SMOLLM2}: built by scripts/make_smollm2.py (PyPI)")
@pytest.mark.skipif(not ALIGNMENT_PYTHON.exists(), reason="no .venv-alignment: the trainer's tokenisation lives there")
def test_chatml_trainer_trains_the_tokens_smollm2_sampled(tmp_path, monkeypatch):
    record, turns = sample(SMOLLM2, tmp_path, {"kind": "transformers", "dtype": "float32"}, monkeypatch,
                           max_tokens_per_turn=48)
    end = AutoTokenizer.from_pretrained(SMOLLM2).convert_tokens_to_ids("<|im_end|>")
    assert turns and all(len(s) > 1 for _, s in turns)
    unsampled = assert_trained_as_sampled(SMOLLM2, record, turns, tmp_path, {end})
    # <|im_end|> is SmolLM2's EOS, so none is appended; the template's newline after it is trained.
    assert unsampled == ("\n" if turns[-1][1][-1] == end else "<|im_end|>\n")
