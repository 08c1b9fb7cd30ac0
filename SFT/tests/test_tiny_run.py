"""The tiny config trained on CPU through SFT/train.sh (one shared run, interrupted and resumed:
conftest.py): it resumed from its checkpoint, the prepared data masks every user and observation
token, the saved model loads in transformers (vLLM generates from one: tests/test_e2e.py), and a
finished output directory is not trained again."""

from __future__ import annotations

import itertools
import json
import re
import shutil

import pytest
import torch
import yaml
from datasets import load_from_disk
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from formats import sft as sft_format
from SFT.tests.conftest import TEST_STEPS
from SFT.tests.helpers import CONFIGS, run_train
from SFT.tests.labels import IGNORE, expected_labels

pytestmark = pytest.mark.slow


def test_run_finishes_with_a_marker_a_lower_loss_and_its_config(tiny_run, tiny_world):
    marker = json.loads((tiny_run.out / "sft_complete.json").read_text())
    assert marker["global_step"] == TEST_STEPS
    assert marker["final_loss"] < 0.6 * marker["first_loss"], marker
    resolved = yaml.safe_load((tiny_run.out / "sft_config.yaml").read_text())
    assert resolved["output_dir"] == str(tiny_run.out)
    assert resolved["datasets"][0]["path"] == str(tiny_world / "data" / "sft.jsonl")
    assert resolved["base_model"] == str(tiny_world / "model") and resolved["max_steps"] == TEST_STEPS
    assert "s/it]" in tiny_run.log or "it/s]" in tiny_run.log  # the progress bar
    assert list((tiny_run.out / "runs").rglob("events.out.tfevents*"))  # tensorboard logs


def test_prepared_data_trains_exactly_the_assistant_turns(tiny_run, tiny_world):
    tok = AutoTokenizer.from_pretrained(tiny_world / "model")
    records = [r["messages"] for r in itertools.islice(sft_format.read(tiny_world / "data" / "sft.jsonl"), 1000)]
    expected = {}
    for messages in records:
        ids, labels = expected_labels(tok, messages, "<end_of_turn>")
        expected[tuple(ids)] = labels
    [prepared] = [p for p in (tiny_run.out / "prepared").iterdir() if p.is_dir()]
    ds = load_from_disk(str(prepared))
    assert len(ds) == len(records)
    observations = 0
    for row in ds:
        ids, labels = row["input_ids"], row["labels"]
        assert labels == expected[tuple(ids)]
        trained = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE])
        masked = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab == IGNORE])
        assert "```python" in trained and "\\boxed{" in trained and trained.count("<end_of_turn>") >= 2
        assert "```output" not in trained and "How many" not in trained
        observations += masked.count("```output")
    assert observations >= len(ds)  # every trajectory has at least one observation, all masked


def test_saved_model_loads_in_transformers_with_its_chat_template(tiny_run, tiny_world):
    out = tiny_run.out
    assert not list(out.glob("*.bin"))
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template == AutoTokenizer.from_pretrained(tiny_world / "model").chat_template
    model = AutoModelForCausalLM.from_pretrained(out)
    base = load_file(tiny_world / "model" / "model.safetensors")
    trained = model.state_dict()
    assert any(not torch.equal(trained[k], v) for k, v in base.items() if k in trained)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Ava has 12 pens. How many pens?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    gen = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert gen.shape[1] == prompt["input_ids"].shape[1] + 8 or tok.convert_ids_to_tokens(
        int(gen[0, -1])) in ("<end_of_turn>", "<eos>")


def test_running_again_on_a_finished_output_is_a_no_op(tiny_run):
    before = {p: p.stat().st_mtime_ns for p in tiny_run.out.rglob("*")}
    proc = run_train(str(CONFIGS / "tiny_cpu.yaml"), *tiny_run.overrides, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "nothing to do" in proc.stdout and "training with" not in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in tiny_run.out.rglob("*")} == before


def test_older_checkpoints_keep_weights_but_not_resume_state(tiny_run):
    """SFT/plugin.py: every checkpoint a pipeline may start from keeps its weights; only the newest
    keeps the optimizer, scheduler and RNG state that resuming needs."""
    older, newest = tiny_run.out / "checkpoint-20", tiny_run.out / f"checkpoint-{TEST_STEPS}"
    assert (older / "model.safetensors").exists() and (newest / "model.safetensors").exists()
    assert not list(older.glob("optimizer*")) and not list(older.glob("rng_state*"))
    assert (newest / "optimizer.pt").exists() and (newest / "scheduler.pt").exists()


def test_interrupted_run_resumed_from_its_last_checkpoint(tiny_run):
    """The shared run (conftest.py) was stopped by SIGTERM after its step-20 checkpoint, then run again."""
    first = tiny_run.interrupted
    assert first["returncode"] != 0, first["stderr"][-3000:]
    assert "sft_complete.json" not in first["files"] and f"checkpoint-{TEST_STEPS}" not in first["files"]
    assert "checkpoint-20/optimizer.pt" in first["files"]  # the newest kept its resume state
    out = tiny_run.out
    assert f"resume from checkpoint at {out / 'checkpoint-20'}" in tiny_run.log
    # Only steps 21..40 ran (the progress bar starts past the checkpoint), and they changed the weights.
    assert f"| 21/{TEST_STEPS} [" in tiny_run.log and f"| 1/{TEST_STEPS} [" not in tiny_run.log
    at_20 = load_file(out / "checkpoint-20" / "model.safetensors")
    assert any(not torch.equal(at_20[k], v) for k, v in load_file(out / "model.safetensors").items())


def test_both_processes_packed_the_data_alike(tiny_run):
    """SFT/plugin.py's SeedStepCount: axolotl sizes a packed run from a packing whose order comes from
    torch's global generator, which torch seeds at random in each process; seeded from the config, the
    interrupted process and the resumed one measure the same packing (without it, six launches of the
    tiny config on one world gave six different efficiencies, and 939 or 942 steps)."""
    log = (tiny_run.out / "debug.log").read_text()  # axolotl appends to it when a run resumes
    measured = re.findall(r"sample_packing_eff_est across ranks: \[([0-9.]+)\]", log)
    assert len(measured) == 2 and measured[0] == measured[1], measured


def test_finish_refuses_a_run_that_stopped_early(tiny_run, tmp_path):
    from SFT.finish_run import UnfinishedRun, finish

    out = tmp_path / "stopped"
    shutil.copytree(tiny_run.out, out, ignore=shutil.ignore_patterns(f"checkpoint-{TEST_STEPS}", "sft_complete.json"))
    with pytest.raises(UnfinishedRun, match=f"stopped at step 20 of {TEST_STEPS}"):
        finish(out)
    assert not (out / "sft_complete.json").exists()
