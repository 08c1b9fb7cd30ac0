"""The entry points as the pipeline calls them: a model transformers and vLLM load, resumption after an
interruption, and a no-op on a finished output directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from alignment_testdata import pair_rows, unpaired_rows
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment_algorithms.training_run import FINISHED_MARKER, STAGES, main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "alignment_algorithms" / "configs"


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory, trajectories) -> Path:
    out = tmp_path_factory.mktemp("pairs")
    Dataset.from_list(pair_rows(trajectories[:24])).save_to_disk(out / "dpo")
    Dataset.from_list(unpaired_rows(trajectories[:24])).save_to_disk(out / "kto")
    return out


def cli(stage: str, model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", str(CONFIGS / f"{stage}_tiny_cpu.yaml"), f"model_name_or_path={model}",
            f"dataset_path={data}", f"output_dir={out}", *extra]


def assert_loadable(out: Path, tokenizer) -> None:
    assert (out / "model.safetensors").is_file() and (out / FINISHED_MARKER).is_file()
    AutoModelForCausalLM.from_pretrained(out)
    assert AutoTokenizer.from_pretrained(out).chat_template == tokenizer.chat_template


def test_mdpo_trains_saves_resumes_and_skips(tmp_path, tiny_model, tiny_tokenizer, pairs_dir, capsys):
    out = tmp_path / "mdpo"
    main("mdpo", cli("mdpo", tiny_model, pairs_dir / "dpo", out, "max_steps=2", "save_steps=2",
                     "eval_steps=2"))
    assert_loadable(out, tiny_tokenizer)
    record = json.loads((out / FINISHED_MARKER).read_text())
    assert record["steps"] == 2 and record["eval_rows"] > 0
    assert record["train_rows"] + record["eval_rows"] == 24
    assert list((out / "runs").rglob("events.out.tfevents.*"))  # tensorboard logging

    marker = (out / FINISHED_MARKER).read_text()
    main("mdpo", cli("mdpo", tiny_model, pairs_dir / "dpo", out, "max_steps=4"))
    assert "nothing to do" in capsys.readouterr().out
    assert (out / FINISHED_MARKER).read_text() == marker and not (out / "checkpoint-4").exists()

    # An interruption after step 2: only the checkpoint is left, and the re-run continues from it.
    for name in (FINISHED_MARKER, "model.safetensors", "config.json"):
        (out / name).unlink()
    main("mdpo", cli("mdpo", tiny_model, pairs_dir / "dpo", out, "max_steps=4", "save_steps=2",
                     "eval_steps=2"))
    assert f"resuming from {out / 'checkpoint-2'}" in capsys.readouterr().out
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert state["global_step"] == 4 and steps == sorted(set(steps))
    assert_loadable(out, tiny_tokenizer)


def trainers_used(monkeypatch, stage: str) -> list:
    """The trainer objects `main` builds, seen as `train` is called on them (the real `train` runs)."""
    seen = []
    trainer_class = STAGES[stage][1]
    original = trainer_class.train

    def train(self, *args, **kwargs):
        seen.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(trainer_class, "train", train)
    return seen


def same_weights(model, path: Path) -> bool:
    other = AutoModelForCausalLM.from_pretrained(path).state_dict()
    return all(torch.equal(tensor.cpu(), other[name]) for name, tensor in model.state_dict().items())


@pytest.mark.parametrize("stage, data", [("mkto", "kto"), ("mdpo", "dpo")])
def test_the_reference_used_is_the_one_named(tmp_path, tiny_model, other_tiny_model, tiny_tokenizer, pairs_dir,
                                             monkeypatch, stage, data):
    """Not the path echoed into the record: the weights the trainer scored the reference with."""
    used = trainers_used(monkeypatch, stage)
    out = tmp_path / stage
    main(stage, cli(stage, tiny_model, pairs_dir / data, out, "max_steps=2",
                    f"ref_model_name_or_path={other_tiny_model}", "eval_strategy=no"))
    assert_loadable(out, tiny_tokenizer)
    (trainer,) = used
    assert same_weights(trainer.ref_model, other_tiny_model) and not same_weights(trainer.ref_model, tiny_model)
    assert not same_weights(trainer.model, other_tiny_model)  # the policy started from tiny_model and trained
    record = json.loads((out / FINISHED_MARKER).read_text())
    assert record["reference"] == str(other_tiny_model) and record["eval_rows"] == 0


def test_the_default_reference_is_the_initial_policy(tmp_path, tiny_model, pairs_dir, monkeypatch):
    used = trainers_used(monkeypatch, "mdpo")
    main("mdpo", cli("mdpo", tiny_model, pairs_dir / "dpo", tmp_path / "mdpo", "max_steps=2", "eval_strategy=no"))
    (trainer,) = used
    assert trainer.ref_model is not None and same_weights(trainer.ref_model, tiny_model)  # frozen in training
    assert not same_weights(trainer.model, tiny_model)


def test_script_runs_as_the_pipeline_calls_it(tmp_path, tiny_model, tiny_tokenizer, pairs_dir):
    out = tmp_path / "script"
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "alignment_algorithms" / "run_mdpo.py"),
                           *cli("mdpo", tiny_model, pairs_dir / "dpo", out, "max_steps=1",
                                "eval_strategy=no", "report_to=none")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_loadable(out, tiny_tokenizer)


def test_checkpoints_keep_weights_and_only_the_newest_keeps_resume_state(tmp_path, tiny_model, pairs_dir,
                                                                          capsys):
    """Model selection needs every checkpoint's weights; resuming needs only the newest one's optimizer
    state (alignment_algorithms/checkpoints.py). The trainer also records the prompts it held out."""
    from datasets import load_from_disk

    from formats import heldout
    from formats.checkpoints import RESUME_STATE

    out = tmp_path / "mdpo"
    main("mdpo", cli("mdpo", tiny_model, pairs_dir / "dpo", out, "max_steps=3", "save_steps=1", "eval_steps=3",
                     "eval_fraction=0.25"))

    def resume_state(step: int) -> set[str]:
        return {p.name for pattern in RESUME_STATE for p in (out / f"checkpoint-{step}").glob(pattern)}

    for step in (1, 2, 3):
        assert (out / f"checkpoint-{step}" / "model.safetensors").is_file()
        AutoModelForCausalLM.from_pretrained(out / f"checkpoint-{step}")
    assert resume_state(1) == resume_state(2) == set()
    assert {"optimizer.pt", "scheduler.pt"} <= resume_state(3)
    held = heldout.read(out / heldout.FILE_NAME)
    rows = load_from_disk(str(pairs_dir / "dpo"))
    record = json.loads((out / FINISHED_MARKER).read_text())
    assert record["eval_rows"] == sum(idx in held["idx"] for idx in rows["idx"]) > 0
    assert (held["fraction"], held["seed"]) == (0.25, 42)

    # Interrupted after checkpoint 3: the re-run resumes from it (the one with optimizer state).
    for name in (FINISHED_MARKER, "model.safetensors", "config.json"):
        (out / name).unlink()
    capsys.readouterr()
    main("mdpo", cli("mdpo", tiny_model, pairs_dir / "dpo", out, "max_steps=5", "save_steps=1", "eval_steps=3",
                     "eval_fraction=0.25"))
    assert f"resuming from {out / 'checkpoint-3'}" in capsys.readouterr().out
    assert json.loads((out / "checkpoint-5" / "trainer_state.json").read_text())["global_step"] == 5
    assert resume_state(3) == resume_state(4) == set() and "optimizer.pt" in resume_state(5)
    assert all((out / f"checkpoint-{s}" / "model.safetensors").is_file() for s in range(1, 6))
