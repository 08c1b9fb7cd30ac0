"""Model selection on the held-out prompts (paper App. B) and the paper's iteration-1 mixture of two
SFT checkpoints (SPEC 4.4), as the pipeline wires and decides them. The stages themselves (trainer,
vLLM, grading) run for real in tests/test_e2e.py and alignment_algorithms/tests/test_run_scripts.py."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import make_tables  # noqa: E402
import pipeline  # noqa: E402

from formats import heldout  # noqa: E402


def dry_run(tmp_path, config, *overrides):
    cmd = [sys.executable, str(ROOT / "scripts" / "pipeline.py"), str(ROOT / "configs" / config),
           f"runs_dir={tmp_path}", *overrides, "--dry-run"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [line[2:] for line in proc.stdout.splitlines() if line.startswith("# ")], proc.stdout


def test_dry_run_shows_each_iterations_checkpoint_evaluation(tmp_path):
    titles, out = dry_run(tmp_path, "tiny_cpu_select.yaml")
    for t in (1, 2, 3):
        i = titles.index(f"iteration {t}: MDPO")
        assert titles[i + 1:i + 3] == [f"iteration {t}: evaluate each checkpoint on the held-out prompts",
                                       f"iteration {t}: grade the checkpoints"]
        assert titles[i + 3].startswith(f"generate with the iter{t} model")
    run = tmp_path / "tiny_cpu_select"
    [line] = [x for x in out.splitlines() if "generate.sh" in x and "iter1/select/step" in x]
    assert f"data.idx_file={run}/iter1/train/model/heldout_prompts.json" in line
    assert "sampling.temperature=0" in line  # greedy with the tool, as the evaluation
    train2 = next(x for x in out.splitlines() if "train.sh mdpo" in x and "iter2/train" in x)
    assert f"model_name_or_path={run}/iter1/select/<chosen checkpoint>" in train2


def test_selection_last_adds_no_stage(tmp_path):
    titles, _ = dry_run(tmp_path, "tiny_cpu.yaml")
    assert not any("checkpoint" in t for t in titles)


def fake_training(run: Path, t: int, accuracies: dict[int, float], final: int) -> Path:
    """What iteration t's training and its checkpoint evaluation leave: checkpoints with weights, the
    final model, the held-out prompts, and graded evaluations of each step."""
    trained = run / f"iter{t}" / "train" / "model"
    for folder in [trained, *(trained / f"checkpoint-{s}" for s in accuracies)]:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_text("weights")
    (trained / "alignment_finished.json").write_text(json.dumps({"steps": final}))
    heldout.write(trained / heldout.FILE_NAME, ["1", "2"], 0.2, 42)
    select = run / f"iter{t}" / "select"
    for stage in ("generate", "grade"):
        (select / stage).mkdir(parents=True, exist_ok=True)
        (select / stage / ".done").write_text("{}")
    for step, acc in accuracies.items():
        (select / f"step{step}").mkdir(parents=True, exist_ok=True)
        (select / f"step{step}" / "trajectories.metrics.json").write_text(json.dumps({"accuracy": {"paper": acc}}))
    world = run / "world" / "data"
    world.mkdir(parents=True, exist_ok=True)
    (world / "train.jsonl").write_text("".join(json.dumps({"question": "q", "answer": "#### 1"}) + "\n"
                                               for _ in range(9)))
    return trained


def runner(tmp_path, *overrides) -> pipeline.Runner:
    cfg = pipeline.load(str(ROOT / "configs" / "tiny_cpu_select.yaml"), [f"runs_dir={tmp_path}", *overrides])
    return pipeline.Runner(cfg, dry_run=False)


def test_selection_takes_the_best_checkpoint_records_it_and_deletes_the_others(tmp_path):
    r = runner(tmp_path)
    trained = fake_training(r.run_dir, 1, {10: 40.0, 20: 60.0, 30: 50.0, 34: 55.0}, final=34)
    model = r.select(1, trained)
    assert model == str(trained / "checkpoint-20")
    record = json.loads((r.run_dir / "iter1" / "select" / "selection.json").read_text())
    assert record["step"] == 20 and record["final_step"] == 34 and record["selection"] == "best"
    assert record["accuracy"] == {"10": 40.0, "20": 60.0, "30": 50.0, "34": 55.0}
    assert record["heldout_prompts"] == 2
    assert [p.name for p in trained.glob("checkpoint-*")] == ["checkpoint-20"]
    assert r.select(1, trained) == model  # a re-run reads the record


def test_ties_go_to_the_later_step_and_the_final_step_is_the_saved_model(tmp_path):
    r = runner(tmp_path, "keep_checkpoints=true")
    trained = fake_training(r.run_dir, 1, {10: 60.0, 20: 50.0, 25: 60.0}, final=25)
    assert r.select(1, trained) == str(trained)
    assert sorted(p.name for p in trained.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-20", "checkpoint-25"]


def test_selection_last_records_the_final_step_and_deletes_nothing(tmp_path):
    r = runner(tmp_path, "selection=last")
    trained = fake_training(r.run_dir, 1, {10: 90.0, 20: 10.0}, final=20)
    assert r.select(1, trained) == str(trained)
    assert json.loads((r.run_dir / "iter1" / "select" / "selection.json").read_text()) == {
        "selection": "last", "step": 20, "model": str(trained)}
    assert len(list(trained.glob("checkpoint-*"))) == 2


def test_selection_without_held_out_prompts_or_checkpoints_stops_before_any_stage(tmp_path):
    with pytest.raises(SystemExit, match="eval_strategy=no: no prompts are held out"):
        runner(tmp_path, "train.overrides=[eval_strategy=no]").run()
    assert not (tmp_path / "tiny_cpu_select" / "world").exists()
    r = runner(tmp_path)
    trained = fake_training(r.run_dir, 1, {5: 1.0, 10: 1.0}, final=10)
    (trained / "checkpoint-5" / "model.safetensors").unlink()
    (trained / "checkpoint-5" / "adapter_model.safetensors").write_text("lora")
    with pytest.raises(SystemExit, match="holds no whole model"):
        r.evaluate_checkpoints(1, trained, r.run_dir / "iter1" / "select")


def test_iteration_1_samples_two_sft_checkpoints(tmp_path):
    titles, out = dry_run(tmp_path, "tiny_cpu.yaml", "sft.epoch=3", "sft.mixture_epoch=1")
    sft = tmp_path / "tiny_cpu" / "sft" / "model"
    assert titles[titles.index("evaluate sft: grade") + 1] == (
        "generate with the second SFT model: iteration 1 prompts (previous model)")
    [second] = [x for x in out.splitlines() if "generate.sh" in x and "source=previous" in x
                and "iter1/generate/previous" in x]
    assert f"model={sft}/<checkpoint after epoch 1>" in second and "sampling.n=2" in second
    pairs = next(x for x in out.splitlines() if "pairs.sh" in x and "iter1/pairs" in x)
    assert "iter1/generate/current/" in pairs and "iter1/generate/previous/" in pairs
    train = next(x for x in out.splitlines() if "train.sh mdpo" in x and "iter1/train" in x)
    assert f"model_name_or_path={sft}/<checkpoint after epoch 3>" in train


def test_sft_epochs_resolve_to_the_per_epoch_checkpoints(tmp_path):
    r = runner(tmp_path, "sft.model=")
    sft = tmp_path / "sft"
    # What axolotl leaves with saves_per_epoch: 1 and packed batches (an epoch a step off the plan).
    for step, epoch in ((310, 1.0), (620, 2.0), (930, 2.997)):
        (sft / f"checkpoint-{step}").mkdir(parents=True)
        (sft / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"epoch": epoch}))
    (sft / "sft_config.yaml").write_text("num_epochs: 4\n")
    assert r.sft_checkpoint(str(sft), 3) == str(sft / "checkpoint-930")
    assert r.sft_checkpoint(str(sft), 1) == str(sft / "checkpoint-310")
    assert r.sft_checkpoint(str(sft), 0) == str(sft)
    assert r.sft_checkpoint(str(sft), 4) == str(sft)  # the last epoch: the final model
    with pytest.raises(SystemExit, match=r"no checkpoint after epoch 5 \(its checkpoints: \[1.0, 2.0, 3.0\]\)"):
        r.sft_checkpoint(str(sft), 5)


def test_tables_show_the_chosen_step(tmp_path):
    run = tmp_path / "sel"
    sets = [{"name": "test", "path": "x", "data_name": "gsm8k", "limit": -1}]
    run.mkdir()
    (run / "config.resolved.yaml").write_text(yaml.safe_dump(
        {"name": "sel", "label": "M-DPO", "iterations": 1, "evaluate": {"sets": sets}}))
    for tag in ("sft", "iter1"):
        d = run / "eval" / tag / "test" / "generate"
        d.mkdir(parents=True)
        (d / "trajectories.metrics.json").write_text(json.dumps({"accuracy": {"paper": 50.0, "strict": 50.0}}))
    (run / "iter1" / "select").mkdir(parents=True)
    (run / "iter1" / "select" / "selection.json").write_text(json.dumps(
        {"selection": "best", "step": 20, "final_step": 34, "model": "m"}))
    make_tables.main([str(run), "--plot", str(tmp_path / "p.png")])
    text = (run / "tables.md").read_text()
    assert "| method | test | average | checkpoint: step / last |" in text
    assert "| M-DPO iteration 1 | 50.0 | 50.0 | 20 / 34 (best) |" in text and "| SFT | 50.0 | 50.0 |  |" in text
