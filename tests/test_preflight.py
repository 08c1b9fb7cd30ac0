"""scripts/preflight.sh: the tiny config passes here; the paper config fails with a precise list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import pipeline  # noqa: E402
import preflight  # noqa: E402

PAPER = str(ROOT / "configs" / "gemma-1.1-it-7b_mdpo.yaml")


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts" / "preflight.sh"), *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "CUDA_VISIBLE_DEVICES": "", **env})


def test_the_tiny_config_passes_here_quickly(tmp_path):
    start = time.time()
    out = run("configs/tiny_cpu.yaml", f"runs_dir={tmp_path}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all" in out.stdout and "checks passed" in out.stdout and "[FAIL]" not in out.stdout
    assert time.time() - start < 120


def test_the_paper_config_fails_here_with_each_item_and_its_fix(tmp_path):
    out = run(PAPER, f"runs_dir={tmp_path}", "sft.overrides=[wandb_project=x]", HF_HUB_OFFLINE="1",
              WANDB_API_KEY="", WANDB_MODE="", NETRC=str(tmp_path / "none"))
    assert out.returncode == 1
    assert "[FAIL] GPUs: 0 visible, 8 needed (vLLM data parallel 8" in out.stdout
    assert "google/gemma-1.1-7b-it" in out.stdout and "RLHF4MATH/SFT_510K" in out.stdout
    assert "[FAIL] reporting: wandb for SFT" in out.stdout
    assert "[ok  ] data evaluate.sets.math: inference/data/math/test.jsonl: 5000 problems" in out.stdout
    assert "disk:" in out.stdout
    fixes = out.stderr
    assert "checks failed" in fixes and "unset HF_HUB_OFFLINE" in fixes and "WANDB_API_KEY" in fixes


def cfg(*overrides: str):
    return pipeline.load(PAPER, list(overrides))


def test_gpu_needs_follow_the_config():
    assert preflight.gpu_needs(pipeline.load(str(ROOT / "configs" / "tiny_cpu.yaml"), []))[0] == 0
    assert preflight.gpu_needs(cfg())[0] == 8
    wide = cfg("generate.overrides=[backend.data_parallel_size=4,backend.tensor_parallel_size=4]")
    assert preflight.gpu_needs(wide)[0] == 16


def test_a_rehearsal_that_keeps_bf16_needs_no_gpu_where_the_cpu_has_bf16(tmp_path, monkeypatch):
    """Found by rehearsing on a CPU with avx512_bf16: the rehearsal kept the config's bf16 and
    preflight then asked for a GPU, so the rehearsal stopped before its first stage."""
    import rehearsal

    monkeypatch.setattr(rehearsal, "cpu_bf16", lambda: True)
    rehearsed, _, _ = rehearsal.rehearse(cfg(f"runs_dir={tmp_path}", "rehearse=true"))
    # The accelerate file's 2 processes run on the CPU (the trainer's use_cpu); SFT runs in float32.
    assert preflight.gpu_needs(rehearsed) == (1, ["training in bf16/fp16 mixed precision"])
    assert preflight.gpu_needs(rehearsed, cpu_bf16=True) == (0, [])
    assert preflight.gpu_needs(cfg(), cpu_bf16=True)[0] == 8  # the GPU config itself still needs its GPUs


def test_disk_estimate_counts_checkpoints(tmp_path):
    base = sum(b for _, b in preflight.disk_estimate(cfg()))
    assert 100e9 < base < 2e12  # a 8.5B model: hundreds of GB, not a terabyte per iteration
    assert sum(b for _, b in preflight.disk_estimate(cfg("keep_checkpoints=true"))) > base
    assert sum(b for _, b in preflight.disk_estimate(cfg("sft.overrides=[save_only_model=true]"))) < base


def test_hub_errors_say_what_to_do(monkeypatch):
    import httpx
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def gated(repo, repo_type=None, **_):
        if repo.startswith("google/"):
            raise GatedRepoError("gated", response=httpx.Response(403, request=httpx.Request("GET", repo)))

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "auth_check", gated)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo, timeout=None: None)
    monkeypatch.setattr(preflight, "hub_columns", lambda api, repo, split: {"messages"} if "SFT" in repo else
                        {"question", "gt", "gt_cot", "idx"})
    items = {i.name: i for i in preflight.check_hub(cfg())}
    assert items["Hub sft.base_model"].ok is False
    assert "accept the licence at https://huggingface.co/google/gemma-1.1-7b-it" in items["Hub sft.base_model"].fix
    assert items["Hub sft.data"].ok and items["Hub prompts.0"].ok


@pytest.mark.parametrize(("key", "ok"), [("present", True), ("", False)])
def test_wandb_needs_a_key(monkeypatch, tmp_path, key, ok):
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    assert preflight.check_reporting(cfg("sft.overrides=[wandb_project=x]"))[0].ok is ok
    assert preflight.check_reporting(cfg())[0].ok  # the default: tensorboard


def test_the_disk_estimate_measures_another_runs_sft_model(tmp_path):
    """Found by rehearse_all: the Mistral variants start from `{runs}/mistral-7b-v0.3_mdpo/sft/model`; preflight
    guessed "7b" from the run's name and wanted 145 GB for a 2-layer stand-in (and, without a size in the
    name, counted no weights at all for a 7B model on the GPU node). The folder is measured once written."""
    model = tmp_path / "base" / "sft" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    (model / "model.safetensors").write_bytes(b"\0" * 2000)
    run = cfg(f"runs_dir={tmp_path}", "sft.model={runs}/base/sft/model")
    assert preflight.model_params(run, run.sft.model) == 1000
    assert preflight.model_params(run, "{runs}/mistral-7b-v0.3_mdpo/sft/model") == 7.25e9  # not written: by name
