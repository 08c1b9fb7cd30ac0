"""Each stage's script, as a user runs it: its own environment, a config plus key=value overrides
read by the one loader (formats/config.py), and the same error for the same mistake everywhere."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["model_name_or_path=m", "dataset_path=d", "output_dir=/nonexistent/out"]

# (command, a mistake, the one line it must end with)
CASES = {
    "pipeline": (["bash", "scripts/run_iterative.sh", "configs/tiny_cpu.yaml", "--dry-run"], "train.refrence=sft",
                 "error: override 'train.refrence=sft': unknown key 'train.refrence' "
                 "(did you mean 'train.reference'?)"),
    "sft": (["bash", "SFT/train.sh", "SFT/configs/tiny_cpu.yaml", "output_dir=/nonexistent/sft"], "datasets.0.pth=x",
            "error: override 'datasets.0.pth=x': unknown key 'datasets.0.pth' (did you mean 'datasets.0.path'?)"),
    "generate": (["bash", "inference/generate.sh", "--config", "inference/configs/generate_tiny.yaml"],
                 "sampling.temprature=0", "error: override 'sampling.temprature=0': unknown key 'sampling.temprature' "
                 "(did you mean 'sampling.temperature'?)"),
    "grade": (["bash", "inference/grade.sh", "--config", "inference/configs/evaluate.yaml", "x.jsonl"], "headlin=paper",
              "error: override 'headlin=paper': unknown key 'headlin' (did you mean 'headline'?)"),
    "pairs": (["bash", "inference/pairs.sh", "--config", "inference/configs/pairs_tiny.yaml", "output=/nonexistent/p"],
              "filters.max_tokns=5", "error: override 'filters.max_tokns=5': unknown key 'filters.max_tokns' "
              "(did you mean 'filters.max_tokens'?)"),
    "train": (["bash", "alignment_algorithms/train.sh", "mdpo", "--config",
               "alignment_algorithms/configs/mdpo_tiny_cpu.yaml", *TRAIN], "betta=0.2",
              "error: override 'betta=0.2': unknown key 'betta' (did you mean 'beta'?)"),
}


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_cli_rejects_an_unknown_key_the_same_way(name):
    cmd, mistake, expected = CASES[name]
    done = run([*cmd[:-1], mistake, cmd[-1]] if name == "pipeline" else [*cmd, mistake])
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == expected


@pytest.mark.parametrize("name, cmd, expected", [
    ("pairs: list index, typed", ["bash", "inference/pairs.sh", "--config", "inference/configs/pairs_tiny.yaml",
                                  "output=/nonexistent/p", "runs.0.path=a.jsonl", "runs.0.max_samples_per_prompt=two"],
     "error: override 'runs.0.max_samples_per_prompt=two': key 'runs.0.max_samples_per_prompt': expected int, "
     "got 'two'"),
    ("generate: typed", ["bash", "inference/generate.sh", "--config", "inference/configs/generate_tiny.yaml",
                         "data.limit=ten"],
     "error: override 'data.limit=ten': key 'data.limit': expected int, got 'ten'"),
    ("train: list index past the end", ["bash", "alignment_algorithms/train.sh", "mkto", "--config",
                                        "alignment_algorithms/configs/mkto_tiny_cpu.yaml", *TRAIN, "report_to.3=none"],
     "error: override 'report_to.3=none': 'report_to' is a list of 1: '3' is not an index of it (0..1)"),
    ("train: typed", ["bash", "alignment_algorithms/train.sh", "mdpo", "--config",
                      "alignment_algorithms/configs/mdpo_tiny_cpu.yaml", *TRAIN, "mask_observations=maybe"],
     "error: override 'mask_observations=maybe': key 'mask_observations': expected true or false, got 'maybe'"),
])
def test_list_indices_and_types_are_checked_before_any_work(name, cmd, expected):
    done = run(cmd)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == expected


def test_train_sh_names_the_algorithms():
    done = run(["bash", "alignment_algorithms/train.sh", "dpo"])
    assert done.returncode == 2 and "first argument: the algorithm, one of: mdpo mkto" in done.stderr
