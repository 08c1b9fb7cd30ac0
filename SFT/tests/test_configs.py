"""The shipped configs: axolotl's schema accepts them, they hold the paper's recipe (SPEC §6), and
a mistyped key anywhere fails the check instead of being dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from SFT.check_config import check, gpu_node, load, this_machine
from SFT.check_config import main as check_main
from SFT.tests.helpers import CONFIGS, ROOT, run_train

GPU_CONFIGS = ["gemma-1.1-7b-it", "codegemma-1.1-7b-it", "gemma-2-9b-it", "mistral-7b-v0.3"]

# SPEC §6: (base model, lr, epochs, micro batch, grad accumulation, warm-up steps); 8 GPUs.
PAPER = {
    "gemma-1.1-7b-it": ("google/gemma-1.1-7b-it", 5e-6, 4, 4, 2, 50),
    "codegemma-1.1-7b-it": ("google/codegemma-1.1-7b-it", 5e-6, 4, 4, 2, 50),
    "gemma-2-9b-it": ("google/gemma-2-9b-it", 5e-6, 4, 1, 8, 100),
    "mistral-7b-v0.3": ("runs/models/mistral-7b-v0.3-pad", 1e-5, 3, 4, 2, 50),
}


def raw(name: str) -> dict:
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


def validated(name: str, capabilities: tuple[dict, dict] | None = None) -> dict:
    """The config as axolotl's own validation hands it to training (on 8 A100s unless told)."""
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    cfg, _ = load(CONFIGS / f"{name}.yaml")
    caps, env = capabilities or gpu_node(8)
    return validate_config(DictDefault(json.loads(json.dumps(cfg))), capabilities=caps, env_capabilities=env)


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_gpu_config_passes_schema_on_8_a100(name):
    cfg, lines = load(CONFIGS / f"{name}.yaml")
    assert check(cfg, name, lines, gpu_node(8)) == []


def test_tiny_config_passes_schema_here():
    cfg, lines = load(CONFIGS / "tiny_cpu.yaml")
    assert check(cfg, "tiny_cpu", lines, this_machine()) == []


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_gpu_config_is_the_papers_recipe(name):
    cfg = validated(name)
    base, lr, epochs, micro, accum, warmup = PAPER[name]
    assert (cfg["base_model"], cfg["learning_rate"], cfg["num_epochs"]) == (base, lr, epochs)
    assert (cfg["micro_batch_size"], cfg["gradient_accumulation_steps"], cfg["warmup_steps"]) == (micro, accum, warmup)
    assert micro * accum * 8 == 64
    assert cfg["sequence_len"] == 4096 and cfg["sample_packing"] is True and cfg["lr_scheduler"] == "cosine"
    assert cfg["weight_decay"] == 0.0 and cfg["max_grad_norm"] == 1.0 and cfg["val_set_size"] == 0
    assert cfg["attn_implementation"] == "flash_attention_2" and cfg["gradient_checkpointing"] is True
    assert cfg["bf16"] == "auto" and cfg["logging_steps"] == 2 and cfg["auto_resume_from_checkpoints"]
    assert cfg["datasets"][0]["path"] == "RLHF4MATH/SFT_510K"
    assert cfg["output_dir"].endswith(f"/{name}")  # SPEC §8.46: the reference swapped two of these
    assert cfg["use_tensorboard"] is True and not any(k.startswith("wandb") for k in cfg)  # no login prompt


MASKING = ("type", "chat_template", "field_messages", "message_property_mappings", "roles_to_train",
           "train_on_eos", "train_on_eot")


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_gpu_configs_mask_turns_as_the_checked_tiny_run(name):
    """test_tiny_run checks the labels of the tiny config against the chat template (model turns and
    their end-of-turn trained, everything else masked); each GPU config, as axolotl reads it, asks
    for the same masking. Mistral has no <end_of_turn>: its turns close with </s>, trained as EOS."""
    gpu, tiny = validated(name), validated("tiny_cpu", this_machine())
    keys = MASKING if "gemma" in name else [k for k in MASKING if k != "train_on_eot"]  # no eot token to train
    assert {k: gpu["datasets"][0][k] for k in keys} == {k: tiny["datasets"][0][k] for k in keys}
    assert (gpu["train_on_inputs"], gpu["chat_template"]) == (tiny["train_on_inputs"], tiny["chat_template"])
    assert gpu.get("eot_tokens") == (tiny["eot_tokens"] if "gemma" in name else None)


def test_memory_hungry_gemma2_uses_zero3_and_deepspeed_reads_the_references_settings():
    """DeepSpeed's own ZeRO config class (it refuses unknown keys) reads the reference's sft_ds2 / sft_ds3
    settings (SPEC section 6) from our files; ZeRO-3 saves one 16-bit model that transformers loads."""
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    assert raw("gemma-2-9b-it")["deepspeed"] == "SFT/deepspeed/zero3.json"
    z2, z3 = (DeepSpeedZeroConfig(**json.loads((ROOT / f"SFT/deepspeed/{name}.json").read_text())["zero_optimization"])
              for name in ("zero2", "zero3"))
    assert z2.stage == 2 and z2.offload_optimizer.device == "cpu" and z2.contiguous_gradients and z2.overlap_comm
    assert z3.stage == 3 and z3.offload_optimizer is None and z3.gather_16bit_weights_on_model_save
    assert (z3.max_live_parameters, z3.max_reuse_distance, z3.sub_group_size) == (0, 0, 0)


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_gpu_config_with_zero2_or_zero3_passes(name):
    for ds_file in ("SFT/deepspeed/zero2.json", "SFT/deepspeed/zero3.json"):
        cfg, lines = load(CONFIGS / f"{name}.yaml", [f"deepspeed={ROOT / ds_file}"])
        assert check(cfg, name, lines, gpu_node(8)) == []


TYPO_CONFIG = """\
base_model: some/model
learning_rat: 1.0e-5
datasets:
  - path: data.jsonl
    type: chat_template
    field_mesages: messages
    roles_to_train: [assistant]
special_tokens:
  pad_tokn: "[PAD]"
micro_batch_size: 1
num_epochs: 1
learning_rate: 1.0e-5
output_dir: out
"""


def test_typos_at_every_level_fail_with_line_and_suggestion(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(TYPO_CONFIG)
    cfg, lines = load(path)
    problems = check(cfg, str(path), lines)
    assert any(f"{path}, line 2: unknown key 'learning_rat' (did you mean 'learning_rate'?)" in p for p in problems)
    assert any("line 6: unknown key 'datasets.0.field_mesages' (did you mean 'datasets.0.field_messages'?)" in p
               for p in problems)
    assert any("line 9: unknown key 'special_tokens.pad_tokn'" in p for p in problems)
    assert len(problems) == 3, problems
    # axolotl alone accepts it: the typo would have been dropped silently.
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    assert "learning_rat" not in validate_config(DictDefault(yaml.safe_load(TYPO_CONFIG)))


def test_typo_in_an_override_and_bad_values_are_located():
    cfg, lines = load(CONFIGS / "tiny_cpu.yaml", ["datasets.0.roles_to_trian=[assistant]"])
    [problem] = check(cfg, "tiny_cpu.yaml", lines, this_machine())
    assert "override 'datasets.0.roles_to_trian=[assistant]'" in problem and "roles_to_train" in problem
    cfg, lines = load(CONFIGS / "tiny_cpu.yaml", ["datasets.0.train_on_eos=sometimes"])
    [problem] = check(cfg, "tiny_cpu.yaml", lines, this_machine())
    assert "datasets.0.train_on_eos" in problem and "'sometimes'" in problem
    cfg, lines = load(CONFIGS / "tiny_cpu.yaml", ["micro_batch_size=many"])
    [problem] = check(cfg, "tiny_cpu.yaml", lines, this_machine())
    assert "micro_batch_size" in problem


def test_deprecated_key_and_missing_deepspeed_file_are_reported():
    cfg, lines = load(CONFIGS / "tiny_cpu.yaml", ["attn_implementation=null", "sdp_attention=true",
                                                 "deepspeed=SFT/deepspeed/nonexistent.json"])
    problems = check(cfg, "tiny_cpu.yaml", lines, this_machine())
    assert any("'sdp_attention' is deprecated" in p for p in problems)
    assert any("cannot read SFT/deepspeed/nonexistent.json" in p for p in problems)


def test_cli_exit_status(tmp_path, capsys):
    path = tmp_path / "typo.yaml"
    path.write_text(TYPO_CONFIG)
    assert check_main([str(path)]) == 1
    assert "learning_rat" in capsys.readouterr().err
    assert check_main([str(CONFIGS / "gemma-2-9b-it.yaml"), "--gpus", "8"]) == 0


@pytest.mark.slow
def test_train_sh_refuses_a_typo_before_launching(tmp_path):
    out = tmp_path / "never"
    proc = run_train(str(CONFIGS / "tiny_cpu.yaml"), f"output_dir={out}", "num_epoch=2", timeout=300)
    assert proc.returncode != 0
    assert "unknown key 'num_epoch' (did you mean 'num_epochs'?)" in proc.stderr
    assert not out.exists() and "training with" not in proc.stdout


def test_train_sh_rejects_a_bad_data_line(tmp_path, tiny_world):
    bad = tmp_path / "bad.jsonl"
    lines = (tiny_world / "data" / "sft.jsonl").read_text().splitlines()[:3]
    bad.write_text("\n".join([*lines, json.dumps({"messages": [{"role": "user", "content": "q"}]})]) + "\n")
    proc = run_train(str(CONFIGS / "tiny_cpu.yaml"), f"output_dir={tmp_path / 'o'}",
                     f"datasets.0.path={bad}", timeout=300)
    assert proc.returncode != 0
    assert f"{bad}, line 4: field 'messages': must start with user and end with assistant" in proc.stderr


def test_train_sh_usage():
    proc = run_train(timeout=60)
    assert proc.returncode == 2 and "CONFIG" in proc.stdout
    proc = run_train(str(CONFIGS / "tiny_cpu.yaml"), "stray", timeout=60)
    assert proc.returncode == 2 and "neither key=value" in proc.stderr


def test_paths_in_configs_exist_or_are_hub_ids():
    for name in GPU_CONFIGS:
        ds = raw(name).get("deepspeed")
        assert ds is None or (ROOT / ds).is_file()
    assert Path(raw("mistral-7b-v0.3")["base_model"]).parts[0] == "runs"
