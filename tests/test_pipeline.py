"""The iterative pipeline: configs, stage order, resumption, reference choice, and the tables."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import make_tables  # noqa: E402
import pipeline  # noqa: E402


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_experiment_configs_parse_and_name_existing_stage_configs(path):
    cfg = pipeline.load(str(path), [])
    for stage_cfg in (cfg.sft.config, cfg.generate.config, cfg.grade.config, cfg.pairs.config,
                      cfg.train.config, cfg.evaluate.config):
        assert (ROOT / stage_cfg).exists(), f"{path.name}: {stage_cfg} does not exist"
    assert cfg.train.config.split("/")[-1].startswith(cfg.train.algorithm)
    if cfg.sft.model and pipeline.is_hub_id(cfg.sft.model):
        # A Hub SFT model has no epoch checkpoints: the run would stop at its start (found by rehearsal).
        assert cfg.sft.epoch == cfg.sft.mixture_epoch == 0, f"{path.name}: set sft.epoch and sft.mixture_epoch to 0"


def test_unknown_key_in_experiment_config_is_an_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain:\n  refrence: sft\n")
    with pytest.raises(SystemExit):
        pipeline.load(str(bad), [])
    assert capsys.readouterr().err == (f"error: {bad}, line 3: unknown key 'train.refrence' "
                                       "(did you mean 'train.reference'?)\n")


def test_overrides_reach_list_items_and_are_typed(tmp_path, capsys):
    cfg = pipeline.load(str(ROOT / "configs" / "tiny_cpu.yaml"), [
        "evaluate.sets.1.path=x.jsonl", "evaluate.sets.1.name=extra", "evaluate.sets.0.limit=5", "iterations=2"])
    assert [(s.name, s.path, s.limit) for s in cfg.evaluate.sets] == [
        ("tiny_test", "{world}/data/test.jsonl", 5), ("extra", "x.jsonl", -1)]
    assert cfg.iterations == 2
    with pytest.raises(SystemExit):
        pipeline.load(str(ROOT / "configs" / "tiny_cpu.yaml"), ["iterations=three"])
    assert capsys.readouterr().err == ("error: override 'iterations=three': key 'iterations': expected int, "
                                       "got 'three'\n")
    with pytest.raises(SystemExit):
        pipeline.load(str(ROOT / "configs" / "tiny_cpu.yaml"), ["evaluate.sets.3.path=x"])
    assert "is a list of 1: '3' is not an index of it (0..1)" in capsys.readouterr().err


def dry_run(tmp_path, *overrides):
    cmd = [sys.executable, str(ROOT / "scripts" / "pipeline.py"), str(ROOT / "configs" / "tiny_cpu.yaml"),
           f"runs_dir={tmp_path}", *overrides, "--dry-run"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [line[2:] for line in proc.stdout.splitlines() if line.startswith("# ")], proc.stdout


def test_dry_run_orders_the_stages_of_algorithm_1(tmp_path):
    titles, out = dry_run(tmp_path)
    # Each model's engine starts once: its evaluation and its samples for the next two iterations.
    assert titles[:4] == ["build the world (scripts/make_tiny_world.py)", "SFT",
                          "generate with the sft model: evaluation on tiny_test, "
                          "iteration 1 prompts (current model), iteration 2 prompts (previous model)",
                          "evaluate sft: grade"]
    assert titles.index("iteration 1: MDPO") < titles.index(
        "generate with the iter1 model: evaluation on tiny_test, iteration 2 prompts (current model), "
        "iteration 3 prompts (previous model)") < titles.index("iteration 2: grade")
    assert "generate with the iter2 model: evaluation on tiny_test, iteration 3 prompts (current model)" in titles
    assert titles[-2:] == ["generate with the iter3 model: evaluation on tiny_test", "evaluate iter3: grade"]
    assert sum(t.startswith("generate with") for t in titles) == 4
    assert sum(t.endswith(": MDPO") for t in titles) == 3
    # Mixture sampling: iteration 2's pairs come from iteration 1's model and the SFT model.
    pairs = next(x for x in out.splitlines() if x.startswith("bash inference/pairs.sh ") and "iter2/pairs" in x)
    assert "iter2/generate/current/trajectories.jsonl" in pairs and "iter2/generate/previous/" in pairs
    first = next(x for x in out.splitlines() if x.startswith("bash inference/pairs.sh ") and "iter1/pairs" in x)
    assert "previous" not in first  # the SFT model has no predecessor
    sft_engine = next(x for x in out.splitlines() if x.startswith("bash inference/generate.sh "))
    assert sft_engine.count(" --and ") == 2 and f"model={tmp_path}/tiny_cpu/sft/model" in sft_engine
    # iteration 2 trains from iteration 1's model against it as the reference (paper: updated reference)
    line = next(x for x in out.splitlines() if x.startswith("bash alignment_algorithms/train.sh mdpo ")
                and "iter2/train" in x)
    assert "model_name_or_path=" + str(tmp_path / "tiny_cpu/iter1/train/model") in line
    assert "ref_model_name_or_path=" + str(tmp_path / "tiny_cpu/iter1/train/model") in line


def test_fixed_reference_and_disjoint_prompt_shares(tmp_path):
    _, out = dry_run(tmp_path, "train.reference=sft", "train.algorithm=mkto",
                     "train.config=alignment_algorithms/configs/mkto_tiny_cpu.yaml",
                     "train.launcher=[accelerate, launch, --config_file, alignment_algorithms/accelerate/zero2.yaml]")
    lines = [x for x in out.splitlines() if "alignment_algorithms/train.sh mkto " in x]
    assert all(x.startswith("LAUNCHER='accelerate launch --config_file alignment_algorithms/accelerate/zero2.yaml' "
                            "bash alignment_algorithms/train.sh mkto --config ") for x in lines)
    assert len(lines) == 3
    assert all("ref_model_name_or_path=" + str(tmp_path / "tiny_cpu/sft/model") in x for x in lines)
    assert all("/pairs/data/kto" in x for x in lines)
    runs = [run for x in out.splitlines() if x.startswith("bash inference/generate.sh ") for run in x.split(" --and ")]
    gens = [x for x in runs if "source=current" in x]  # one disjoint share of the prompts per iteration
    assert [f"data.share={t}/3" in x and f"iter{t}/generate/current/" in x for t, x in enumerate(gens, 1)] == [True] * 3
    previous = [x for x in runs if "source=previous" in x]
    assert [f"data.share={t + 1}/3" in x for t, x in enumerate(previous, start=1)] == [True, True]


def test_a_models_runs_go_to_one_generate_command_whatever_their_backends(tmp_path):
    """inference.generate alone decides which runs share an engine (inference/tests/test_generate.py)."""
    titles, out = dry_run(tmp_path, "evaluate.overrides=[sampling.temperature=0,backend.dtype=bfloat16]")
    assert titles[2:4] == ["generate with the sft model: evaluation on tiny_test, iteration 1 prompts (current "
                           "model), iteration 2 prompts (previous model)", "evaluate sft: grade"]
    [sft] = [x for x in out.splitlines() if x.startswith("bash inference/generate.sh ") and "/sft/model" in x]
    runs = sft.split(" --and ")
    assert "backend.dtype=bfloat16" in runs[0] and not any("backend.dtype" in r for r in runs[1:])


def test_finished_stages_are_skipped(tmp_path):
    cfg = pipeline.load(str(ROOT / "configs" / "tiny_cpu.yaml"), [f"runs_dir={tmp_path}"])
    runner = pipeline.Runner(cfg, dry_run=False)
    out = tmp_path / "stage"
    marker = tmp_path / "ran"
    cmd = [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')"]
    runner.stage(out, "demo", cmd)
    runner.stage(out, "demo", cmd)
    assert marker.read_text() == "x" and (out / ".done").exists()
    with pytest.raises(SystemExit, match="re-run the same command to resume"):
        runner.stage(tmp_path / "bad", "failing", [sys.executable, "-c", "raise SystemExit(3)"])
    assert not (tmp_path / "bad" / ".done").exists()


STAGE_DRIVER = """
import os, sys
sys.path.insert(0, sys.argv[1])
import pipeline
pipeline.stop_on_sigterm()
child = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(300)"
pipeline.run_stage([sys.executable, "-c", child, sys.argv[2]], dict(os.environ))
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_a_stage_does_not_outlive_a_killed_pipeline(tmp_path, sig):
    """A stage left running (a vLLM engine holding the GPUs) would race the re-run that resumes."""
    import signal

    import psutil

    if sig == "SIGKILL" and not sys.platform.startswith("linux"):
        pytest.skip("only Linux tells a child that its parent was killed")
    pid_file = tmp_path / "stage.pid"
    driver = subprocess.Popen([sys.executable, "-c", STAGE_DRIVER, str(ROOT / "scripts"), str(pid_file)])
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    stage = psutil.Process(int(pid_file.read_text()))
    driver.send_signal(getattr(signal, sig))
    driver.wait(timeout=30)
    for _ in range(100):  # a reparented child may linger as a zombie if init is slow to reap it
        try:
            if stage.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)
    stage.kill()
    pytest.fail(f"the stage outlived a pipeline ended by {sig}")


SFT_DRIVER = """
import os, sys
sys.path.insert(0, sys.argv[1])
import pipeline
pipeline.stop_on_sigterm()
world, out = sys.argv[2], sys.argv[3]
pipeline.run_stage(["bash", "SFT/train.sh", "SFT/configs/tiny_cpu.yaml", f"base_model={world}/model",
                    f"datasets.0.path={world}/data/sft.jsonl", f"output_dir={out}"], dict(os.environ))
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_the_sft_trainer_does_not_outlive_a_killed_pipeline(tiny_world, tmp_path, sig):
    """SFT/train.sh runs axolotl as its child: the real stage script, not a stand-in, must pass the stop on."""
    import signal

    import psutil

    driver = subprocess.Popen([sys.executable, "-c", SFT_DRIVER, str(ROOT / "scripts"), str(tiny_world),
                               str(tmp_path / "sft")], cwd=ROOT)
    deadline = time.monotonic() + 300
    trainer = None
    while trainer is None:
        assert driver.poll() is None and time.monotonic() < deadline, "axolotl never started"
        for proc in psutil.Process(driver.pid).children(recursive=True):
            try:
                if "axolotl.cli.train" in proc.cmdline():
                    trainer = proc
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.2)
    driver.send_signal(getattr(signal, sig))
    driver.wait(timeout=60)
    try:
        trainer.wait(timeout=60)
    except psutil.TimeoutExpired:
        trainer.kill()
        pytest.fail(f"axolotl outlived a pipeline ended by {sig}")


def fake_run(root: Path, name: str, label: str, accs: dict[str, float], paper_model: str = "") -> Path:
    run = root / name
    sets = [{"name": "gsm8k", "path": "x", "data_name": "gsm8k", "limit": -1},
            {"name": "math", "path": "y", "data_name": "math", "limit": -1}]
    cfg = {"name": name, "label": label, "iterations": 3, "evaluate": {"sets": sets}, "paper_model": paper_model}
    run.mkdir(parents=True)
    (run / "config.resolved.yaml").write_text(yaml.safe_dump(cfg))
    for tag, acc in accs.items():
        for s, delta in (("gsm8k", 30.0), ("math", 0.0)):
            d = run / "eval" / tag / s / "generate"
            d.mkdir(parents=True)
            m = {"accuracy": {"paper": acc + delta, "strict": acc + delta - 1}}
            (d / "trajectories.metrics.json").write_text(json.dumps(m))
    return run


def test_tables_follow_the_paper_layout(tmp_path):
    main = fake_run(tmp_path, "main", "M-DPO", {"sft": 46.0, "iter1": 49.0, "iter2": 50.0, "iter3": 51.0},
                    paper_model="gemma-1.1-it-7b")
    kto = fake_run(tmp_path, "kto", "Iterative M-KTO", {"iter3": 49.5})
    png = tmp_path / "acc.png"
    make_tables.main([str(main), str(kto), "--plot", str(png)])
    text = (main / "tables.md").read_text()
    paper, strict = text.split("strict grader")
    assert "| method | gsm8k | math | average | paper GSM8K | paper MATH |" in paper
    assert "| SFT | 76.0 | 46.0 | 61.0 | 77.5 | 46.1 |" in paper
    assert "| M-DPO iteration 3 | 81.0 | 51.0 | 66.0 | 83.9 | 51.2 |" in paper
    assert "| Iterative M-KTO | 79.5 | 49.5 | 64.5 | 82.1 | 49.5 |" in paper
    assert "| SFT | 75.0 | 45.0 | 60.0 |" in strict
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_seeds_table_gives_each_seed_its_mean_and_the_gain(tmp_path):
    runs = [fake_run(tmp_path, f"s{i}", "M-DPO", {"sft": sft, "iter1": sft + 5, "iter2": sft + 8, "iter3": sft + g})
            for i, (sft, g) in enumerate([(40.0, 12.0), (50.0, 9.0), (60.0, 15.0)])]
    make_tables.main([str(runs[0]), "--seeds", str(runs[1]), str(runs[2]), "--plot", str(tmp_path / "a.png")])
    seeds = (runs[0] / "tables.md").read_text().split("## Seeds")[1]
    math = seeds.split("### math")[1]
    assert "| method | s0 (seed ?) | s1 (seed ?) | s2 (seed ?) | mean |" in math
    assert "| SFT | 40.0 | 50.0 | 60.0 | 50.0 |" in math
    assert "| M-DPO iteration 3 | 52.0 | 59.0 | 75.0 | 62.0 |" in math
    assert "| gain: M-DPO iteration 3 - SFT | 12.0 | 9.0 | 15.0 | 12.0 |" in math


def test_missing_evaluations_show_as_dashes_and_untrained_iterations_are_marked(tmp_path):
    run = fake_run(tmp_path, "partial", "M-DPO", {"sft": 40.0, "iter1": 40.0})
    (run / "iter1" / "train").mkdir(parents=True)
    (run / "iter1" / "train" / "NO_DATA").write_text("no pairs\n")
    make_tables.main([str(run), "--plot", str(tmp_path / "p.png")])
    text = (run / "tables.md").read_text()
    assert "| M-DPO iteration 2 | — | — | — |" in text
    assert "| M-DPO iteration 1 (no usable preference data: model unchanged) | 70.0 | 40.0 | 55.0 |" in text


def test_methods_over_seeds_pairs_each_method_with_the_first_on_the_same_seed(tmp_path):
    def runs(name, label, last3):
        for seed, (suffix, acc) in enumerate(zip(["", "_seed1", "_seed2"], last3, strict=True)):
            if acc is not None:
                run = fake_run(tmp_path, name + suffix, label, {"iter1": 10.0, "iter2": 20.0, "iter3": acc})
                cfg = yaml.safe_load((run / "config.resolved.yaml").read_text())
                (run / "config.resolved.yaml").write_text(yaml.safe_dump({**cfg, "world": {"seed": seed}}))
        return tmp_path / name

    mdpo = runs("m", "M-DPO", [50.0, 60.0, 70.0])
    kto = runs("k", "Iterative M-KTO", [55.0, 58.0, None])  # seed 2 not run
    make_tables.main([str(mdpo), str(kto), "--method-seeds", "_seed1", "_seed2", "--plot", str(tmp_path / "a.png")])
    math = (mdpo / "tables.md").read_text().split("## Methods over seeds")[1].split("### math")[1]
    assert ("| method | iteration 1: mean | iteration 2: mean | iteration 3: mean "
            "| iteration 3: seed 0 / 1 / 2 | minus M-DPO, same seed |") in math
    assert "| M-DPO | 10.0 (10.0-10.0, 3 seeds) | 20.0 (20.0-20.0, 3 seeds) | 60.0 (50.0-70.0, 3 seeds) " \
           "| 50.0 / 60.0 / 70.0 |  |" in math
    assert "| Iterative M-KTO | 10.0 (10.0-10.0, 2 seeds) | 20.0 (20.0-20.0, 2 seeds) | 56.5 (55.0-58.0, 2 seeds) " \
           "| 55.0 / 58.0 / — | +5.0 / -2.0 / — |" in math


@pytest.mark.parametrize(("rows", "prompts", "trained"), [(0, 0, False), (1, 1, False), (3, 2, True)])
def test_pairs_of_fewer_than_two_prompts_carry_the_model_over(tmp_path, monkeypatch, rows, prompts, trained):
    """Found rehearsing the one-GPU configs: one pair, from one prompt, reached the trainer, which holds whole
    prompts out for selection and stopped the run ("fewer than 2 prompts"). Like no pair at all, the
    iteration now carries its model over, with a note the tables show."""
    cfg = pipeline.load(str(ROOT / "configs" / "tiny_cpu.yaml"), [f"runs_dir={tmp_path}", "selection=last"])
    runner = pipeline.Runner(cfg, dry_run=False)
    stages = []
    monkeypatch.setattr(runner, "grade", lambda *a, **k: None)
    monkeypatch.setattr(runner, "stage", lambda out, title, cmd, env=None: stages.append(title))
    monkeypatch.setattr(runner, "select", lambda t, trained: "trained-model")
    stats = runner.run_dir / "iter1" / "pairs" / "data" / "stats.json"
    stats.parent.mkdir(parents=True)
    stats.write_text(json.dumps({"dpo": {"rows": rows, "prompts": prompts}, "kto": {"rows": 2 * rows, "prompts": 5}}))
    model = runner.iteration(1, "current-model", "sft-model")
    assert model == ("trained-model" if trained else "current-model")
    assert any("MDPO" in s for s in stages) is trained
    assert (runner.run_dir / "iter1" / "train" / "NO_DATA").exists() is not trained
