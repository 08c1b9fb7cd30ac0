"""Every row of the paper's Table 1 has an experiment config: it loads, its dry run prints the stage
commands, its training command resolves to the paper's learning rate and method, and the tables put
the paper's published number beside ours."""

import dataclasses
import json
import shlex
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import make_tables  # noqa: E402
import pipeline  # noqa: E402

# arXiv 2409.02392 App. B / SPEC 5.5: the learning rate per base model.
LEARNING_RATE = {"gemma-1.1-it-7b": 4e-7, "codegemma-1.1-it-7b": 4e-7, "mistral-7b-v0.3": 2e-7, "gemma-2-it-9b": 2e-7}
SFT_CONFIG = {"gemma-1.1-it-7b": "gemma-1.1-7b-it", "codegemma-1.1-it-7b": "codegemma-1.1-7b-it",
              "mistral-7b-v0.3": "mistral-7b-v0.3", "gemma-2-it-9b": "gemma-2-9b-it"}
METHOD = {  # method: (training script, observations masked)
    "mdpo": ("mdpo", True), "mkto": ("mkto", True), "raft": ("raft", True),
    "single-turn-dpo": ("mdpo", False), "single-turn-kto": ("mkto", False),
}
# SPEC §9, the paper's Table 1 (GSM8K, MATH): SFT, then each method's final model.
TABLE1 = {
    "gemma-1.1-it-7b": {"sft": (77.5, 46.1), "raft": (79.2, 47.3), "single-turn-dpo": (81.7, 48.9),
                        "single-turn-kto": (80.6, 49.0), "mdpo": (83.9, 51.2), "mkto": (82.1, 49.5)},
    "codegemma-1.1-it-7b": {"sft": (77.3, 46.4), "raft": (78.8, 48.4), "single-turn-dpo": (79.1, 48.9),
                            "single-turn-kto": (80.2, 48.6), "mdpo": (81.5, 50.1), "mkto": (81.6, 49.6)},
    "mistral-7b-v0.3": {"sft": (77.8, 42.7), "raft": (79.8, 43.7), "single-turn-dpo": (79.8, 45.1),
                        "single-turn-kto": (81.3, 46.3), "mdpo": (82.3, 47.5), "mkto": (81.7, 46.7)},
    "gemma-2-it-9b": {"sft": (84.1, 51.0), "raft": (84.2, 52.6), "single-turn-dpo": (85.2, 53.1),
                      "single-turn-kto": (85.4, 52.9), "mdpo": (86.3, 54.5), "mkto": (86.1, 54.5)},
}
ROWS = [(model, method) for model in LEARNING_RATE for method in METHOD]


def config_path(model: str, method: str) -> Path:
    return ROOT / "configs" / f"{model}_{method}.yaml"


def train_commands(out: str) -> list[list[str]]:
    return [shlex.split(line) for line in out.splitlines() if "--config alignment_algorithms/configs/" in line]


def algorithm(command: list[str]) -> str:
    """run_<algorithm>.py, called directly or through alignment_algorithms/train.sh <algorithm>."""
    if "alignment_algorithms/train.sh" in command:
        return command[command.index("alignment_algorithms/train.sh") + 1]
    [script] = [c for c in command if c.startswith("alignment_algorithms/run_")]
    return script.removeprefix("alignment_algorithms/run_").removesuffix(".py")


def resolved(command: list[str], key: str):
    """A training option as the trainer resolves it: the YAML value, then the last key=value override."""
    value = yaml.safe_load((ROOT / command[command.index("--config") + 1]).read_text()).get(key)
    for token in command:
        if token.startswith(f"{key}="):
            value = yaml.safe_load(token.split("=", 1)[1])
    return value


@pytest.mark.parametrize("model,method", ROWS, ids=[f"{m}_{x}" for m, x in ROWS])
def test_table1_row_dry_run_trains_with_the_papers_settings(model, method, tmp_path, capsys):
    cfg = pipeline.load(str(config_path(model, method)), [f"runs_dir={tmp_path}"])
    pipeline.Runner(cfg, dry_run=True).run()
    out = capsys.readouterr().out
    assert cfg.paper_model == model and cfg.iterations == 3
    sft = next(line for line in out.splitlines() if line.startswith("bash SFT/train.sh"))
    assert f"SFT/configs/{SFT_CONFIG[model]}.yaml" in sft

    script, masked = METHOD[method]
    commands = train_commands(out)
    assert len(commands) == 3  # one training per iteration
    for t, command in enumerate(commands, start=1):
        assert algorithm(command) == script
        assert float(resolved(command, "learning_rate")) == LEARNING_RATE[model]
        assert resolved(command, "mask_observations") is masked
        data = next(c for c in command if c.startswith("dataset_path="))
        assert data.endswith(f"iter{t}/pairs/data/" + ("kto" if script == "mkto" else "dpo"))
        has_reference = any(c.startswith("ref_model_name_or_path=") for c in command)
        assert has_reference is (script != "raft")  # RAFT is fine-tuning: no reference model


def fake_run(root: Path, model: str, method: str, ours: float) -> Path:
    """A finished run of the config as the pipeline resolves it, every evaluation at `ours` %."""
    cfg = pipeline.load(str(config_path(model, method)), [f"runs_dir={root}"])
    run = root / cfg.name
    run.mkdir(parents=True)
    (run / "config.resolved.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    for tag in ["sft", *(f"iter{t}" for t in range(1, cfg.iterations + 1))]:
        for s in cfg.evaluate.sets:
            d = run / "eval" / tag / s.name / "generate"
            d.mkdir(parents=True)
            (d / "trajectories.metrics.json").write_text(json.dumps({"accuracy": {"paper": ours, "strict": ours}}))
    return run


@pytest.mark.parametrize("model", list(LEARNING_RATE))
def test_tables_place_the_papers_number_beside_each_of_ours(model, tmp_path):
    methods = list(METHOD)  # the first run gives SFT and the iterations, each further run its final row
    runs = [fake_run(tmp_path, model, m, 10.0 + i) for i, m in enumerate(methods)]
    text, _ = make_tables.table(runs, "paper")
    lines = text.splitlines()
    assert lines[0].endswith("| paper GSM8K | paper MATH |")

    def row(label: str) -> str:
        [line] = [x for x in lines if x.startswith(f"| {label} |")]
        return line

    gsm8k, math = TABLE1[model]["sft"]
    assert row("SFT").endswith(f"| {gsm8k:.1f} | {math:.1f} |")
    labels = [yaml.safe_load((r / "config.resolved.yaml").read_text())["label"] for r in runs]
    labels[0] = f"{labels[0]} iteration 3"
    for i, (method, label) in enumerate(zip(methods, labels, strict=True)):
        gsm8k, math = TABLE1[model][method]
        assert row(label).startswith(f"| {label} | {10.0 + i:.1f} |")  # ours, from this method's run
        assert row(label).endswith(f"| {gsm8k:.1f} | {math:.1f} |"), (method, row(label))
