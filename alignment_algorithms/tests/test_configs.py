"""The shipped configs parse into the installed TRL / accelerate / DeepSpeed classes and carry the paper's values."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignment_algorithms.lora import LoraArguments
from alignment_algorithms.training_run import STAGES, RunArguments
from formats.config import ConfigError, load

ROOT = Path(__file__).resolve().parents[1]
PAPER = {  # config: (stage, learning rate); paper App. B
    "mdpo_gemma-1.1-7b-it.yaml": ("mdpo", 4e-7),
    "mdpo_gemma-2-9b-it.yaml": ("mdpo", 2e-7),
    "mdpo_mistral-7b-v0.3.yaml": ("mdpo", 2e-7),
    "mkto_gemma-1.1-7b-it.yaml": ("mkto", 4e-7),
    "mdpo_codegemma-1.1-7b-it.yaml": ("mdpo", 4e-7),
    "mkto_codegemma-1.1-7b-it.yaml": ("mkto", 4e-7),
    "mkto_gemma-2-9b-it.yaml": ("mkto", 2e-7),
    "mkto_mistral-7b-v0.3.yaml": ("mkto", 2e-7),
    "raft_gemma-1.1-7b-it.yaml": ("raft", 4e-7),
    "raft_codegemma-1.1-7b-it.yaml": ("raft", 4e-7),
    "raft_gemma-2-9b-it.yaml": ("raft", 2e-7),
    "raft_mistral-7b-v0.3.yaml": ("raft", 2e-7),
}
TINY = {"mdpo_tiny_cpu.yaml": "mdpo", "mkto_tiny_cpu.yaml": "mkto", "raft_tiny_cpu.yaml": "raft"}
ONE_GPU = {"mdpo_gemma-1.1-7b-it_1gpu.yaml": "mdpo", "mkto_gemma-1.1-7b-it_1gpu.yaml": "mkto"}
GPUS_PER_NODE = 8


def parse(name: str, stage: str, *extra: str, gpu: bool = True):
    """What run_<stage>.py builds from the file and its overrides (formats/config.py)."""
    # use_cpu only lets this CPU machine build bf16 arguments; nothing else depends on it.
    run, _, args = load((RunArguments, LoraArguments, STAGES[stage][0]), ROOT / "configs" / name,
                        ["model_name_or_path=m", "dataset_path=d", "output_dir=o", *(["use_cpu=true"] * gpu),
                         *extra])
    return run, args


def test_every_config_is_listed():
    assert {p.name for p in (ROOT / "configs").glob("*.yaml")} == set(PAPER) | set(TINY) | set(ONE_GPU)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_configs(name):
    stage, lr = PAPER[name]
    run, args = parse(name, stage)
    assert args.learning_rate == lr and args.warmup_steps == 40
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps * GPUS_PER_NODE == 32
    assert args.num_train_epochs == 1 and args.max_steps == -1 and args.lr_scheduler_type == "cosine"
    assert args.max_length == 2048 and args.bf16 and run.dtype == "bfloat16"
    assert args.save_steps == 50 and args.eval_steps == 50 and args.eval_strategy == "steps"
    assert not args.save_only_model  # resumable
    assert args.mask_observations
    if stage == "mdpo":
        assert args.loss_type == ["sigmoid"] and args.nll_coefficient == 0 and args.beta == 0.1
    elif stage == "mkto":
        assert args.loss_type == "kto" and args.desirable_weight == args.undesirable_weight == 1.0
        assert args.beta == 0.1
        assert args.per_device_train_batch_size > 1  # TRL's KL pairs live inside one per-device batch
    else:  # RAFT: the NLL of the completion only, one trajectory per sequence
        assert args.loss_type == "nll" and args.completion_only_loss and not args.packing


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_cpu_configs_build_on_this_cpu_machine_as_written(name):
    parse(name, TINY[name], gpu=False)  # TRL refuses bf16 here without use_cpu (the paper configs need it)


@pytest.mark.parametrize("name", sorted(ONE_GPU))
def test_one_gpu_configs(name):
    """LoRA on one GPU keeps the paper's batch, horizon, masking and checkpoint interval."""
    _, lora, args = load((RunArguments, LoraArguments, STAGES[ONE_GPU[name]][0]), ROOT / "configs" / name,
                         ["model_name_or_path=m", "dataset_path=d", "output_dir=o", "use_cpu=true"])
    assert lora.use_peft and lora.lora_r > 0 and args.activation_checkpointing
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 32  # one GPU
    assert args.max_length == 2048 and args.bf16 and args.mask_observations and args.beta == 0.1
    assert args.save_steps == 50 and not args.save_only_model


def test_unknown_key_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "configs" / "mdpo_tiny_cpu.yaml").read_text() + "mask_user_turn: true\n")
    with pytest.raises(ConfigError, match=rf"{bad}, line \d+: unknown key 'mask_user_turn' \(did you mean "
                                          r"'mask_observations'\?\)"):
        load((RunArguments, LoraArguments, STAGES["mdpo"][0]), bad, ["model_name_or_path=m", "dataset_path=d",
                                                                     "output_dir=o"])


def test_cli_overrides_yaml():
    run, args = parse("mdpo_gemma-1.1-7b-it.yaml", "mdpo", "learning_rate=1e-6", "ref_model_name_or_path=sft",
                      "mask_observations=false", "eval_strategy=no", "report_to.0=none")
    assert args.learning_rate == 1e-6 and run.ref_model_name_or_path == "sft" and not args.mask_observations
    assert args.eval_strategy.value == "no" and args.report_to == []  # TRL's own reading of "none"


ACCELERATE = {"zero2.yaml": (2, 1), "zero3.yaml": (3, 1), "zero3_multinode.yaml": (3, 2)}


@pytest.mark.parametrize("name", sorted(ACCELERATE))
def test_accelerate_configs(name, monkeypatch):
    """accelerate reads the file as `accelerate launch` would, and DeepSpeed's plugin builds from it."""
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    stage, machines = ACCELERATE[name]
    path = ROOT / "accelerate" / name
    config = ClusterConfig.from_yaml_file(path)  # unknown top-level keys raise
    launch_keys = {action.dest for action in launch_command_parser()._actions}
    assert set(config.deepspeed_config) <= launch_keys
    assert config.distributed_type == "DEEPSPEED"
    assert config.num_machines == machines and config.num_processes == GPUS_PER_NODE * machines
    assert config.mixed_precision == "bf16"

    args = launch_command_parser().parse_args(["--config_file", str(path), "run_mdpo.py"])
    args, defaults, _ = _validate_launch_command(args)
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)
    for key, value in env.items():
        if key.startswith("ACCELERATE_"):
            monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()
    assert plugin.zero_stage == stage
    if stage == 3:  # the final save gathers one 16-bit model that transformers and vLLM load
        assert plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
