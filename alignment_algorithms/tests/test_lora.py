"""LoRA through PEFT (alignment_algorithms/lora.py), the one-GPU path: the policy is scored over the
same masks as without LoRA, the reference is the adapter-free model, and the saved model is the
merged plain model that vLLM and the next iteration's trainer load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from alignment_testdata import pair_rows, unpaired_rows
from datasets import Dataset
from peft import PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from transformers import AutoModelForCausalLM

from alignment_algorithms.lora import ADAPTER_DIR, LoraArguments
from alignment_algorithms.mdpo_trainer import MultiTurnDPOConfig, MultiTurnDPOTrainer
from alignment_algorithms.mkto_trainer import MultiTurnKTOConfig, MultiTurnKTOTrainer
from alignment_algorithms.training_run import FINISHED_MARKER, main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CPU = {"bf16": False, "activation_checkpointing": False, "report_to": "none", "save_strategy": "no",
       "dataloader_pin_memory": False, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4,
       "seed": 0, "max_length": 1024}
LORA = LoraArguments(use_peft=True, lora_r=8, lora_alpha=16, lora_target_modules=["all-linear"])
KINDS = {"mdpo": (MultiTurnDPOConfig, MultiTurnDPOTrainer, pair_rows),
         "mkto": (MultiTurnKTOConfig, MultiTurnKTOTrainer, unpaired_rows)}


def trainer(algorithm: str, tmp_path: Path, model, data: Dataset, ref=None, peft_config=None, **options):
    config_class, trainer_class, _ = KINDS[algorithm]
    args = config_class(output_dir=str(tmp_path), **{**CPU, **options})
    return trainer_class(model, ref_model=ref, args=args, train_dataset=data, peft_config=peft_config)


def batch_of(t, n: int = 4) -> dict:
    return t.data_collator([t.train_dataset[i] for i in range(n)])


def loss(t, batch: dict) -> torch.Tensor:
    t.model.train()  # TRL disables dropout, so train mode is deterministic
    with torch.no_grad():
        return t.compute_loss(t.model, batch)


def merged_copy(base: Path, lora_trainer) -> torch.nn.Module:
    """The base model with the trainer's adapter merged in: what `save_merged` writes."""
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LORA.peft_config())
    set_peft_model_state_dict(model, get_peft_model_state_dict(lora_trainer.model))
    return model.merge_and_unload()


@pytest.mark.parametrize("algorithm", ["mdpo", "mkto"])
def test_lora_policy_over_the_same_masks_against_the_adapter_free_reference(algorithm, tmp_path, tiny_model,
                                                                           trajectories):
    """A LoRA trainer (no reference given) gives exactly the loss of a plain trainer whose policy is the
    merged model and whose reference is the base model: same masked log-probabilities, and the
    reference is the model with the adapter disabled. Its reference is not the merged model."""
    data = Dataset.from_list(KINDS[algorithm][2](trajectories[:4]))
    lora = trainer(algorithm, tmp_path / "lora", str(tiny_model), data, peft_config=LORA.peft_config())
    assert lora.ref_model is None  # no second copy
    torch.manual_seed(0)
    with torch.no_grad():  # a trained-looking adapter: the policy now differs from the base model
        for name, param in lora.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    plain = trainer(algorithm, tmp_path / "plain", merged_copy(tiny_model, lora), data,
                    ref=AutoModelForCausalLM.from_pretrained(tiny_model))
    batches = batch_of(lora), batch_of(plain)
    for key in batches[0]:
        assert torch.equal(batches[0][key], batches[1][key]), key
    assert batches[0]["completion_mask"].sum() < batches[0]["attention_mask"].sum()  # observations masked
    torch.testing.assert_close(loss(lora, batches[0]), loss(plain, batches[1]))

    wrong_reference = trainer(algorithm, tmp_path / "wrong", merged_copy(tiny_model, lora), data,
                              ref=merged_copy(tiny_model, lora))
    assert not torch.allclose(loss(wrong_reference, batches[1]), loss(lora, batches[0]))


@pytest.mark.parametrize("algorithm", ["mdpo", "mkto"])
def test_lora_gets_no_gradient_through_observation_tokens(algorithm, tmp_path, tiny_model, trajectories):
    data = Dataset.from_list(KINDS[algorithm][2](trajectories[:4]))
    lora = trainer(algorithm, tmp_path, str(tiny_model), data, peft_config=LORA.peft_config())
    with torch.no_grad():
        for name, param in lora.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    captured = []

    def keep(module, inputs, output):
        if output.requires_grad:  # the policy's forward, not the no-grad reference / KL ones
            output.retain_grad()
            captured.append(output)

    batch = batch_of(lora)
    handle = lora.model.get_base_model().model.norm.register_forward_hook(keep)
    lora.model.train()
    lora.compute_loss(lora.model, batch).backward()
    handle.remove()
    (hidden,) = captured
    grads = hidden.grad.abs().sum(-1)[:, :-1]  # position p predicts token p + 1
    trained = batch["completion_mask"][:, 1:].bool()
    assert (grads[~trained] == 0).all()
    assert (grads[trained] > 0).all()
    assert all(p.grad is None for n, p in lora.model.named_parameters() if "lora_" not in n)


def cli(stage: str, model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", str(ROOT / "alignment_algorithms" / "configs" / f"{stage}_tiny_cpu.yaml"),
            f"model_name_or_path={model}", f"dataset_path={data}", f"output_dir={out}", "use_peft=true",
            "lora_r=8", "lora_alpha=16", "lora_target_modules=[all-linear]", "learning_rate=1e-3",
            "eval_strategy=no", "report_to=none", *extra]


@pytest.mark.parametrize("algorithm", ["mdpo", "mkto"])
def test_saved_model_is_the_merged_plain_model_and_the_next_iteration_trains_from_it(algorithm, tmp_path,
                                                                                      tiny_model, trajectories):
    rows = KINDS[algorithm][2](trajectories[:16])
    data = tmp_path / "data"
    Dataset.from_list(rows).save_to_disk(data)
    first = tmp_path / "iter1"
    main(algorithm, cli(algorithm, tiny_model, data, first, "max_steps=2"))

    assert (first / "model.safetensors").is_file() and not (first / "adapter_config.json").exists()
    assert (first / ADAPTER_DIR / "adapter_config.json").is_file()
    record = json.loads((first / FINISHED_MARKER).read_text())
    assert record["lora"]["lora_r"] == 8 and record["steps"] == 2
    saved = AutoModelForCausalLM.from_pretrained(first)
    assert not isinstance(saved, PeftModel) and not hasattr(saved, "peft_config")
    expected = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model),
                                         first / ADAPTER_DIR).merge_and_unload().state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    changed = 0
    for name, tensor in saved.state_dict().items():
        torch.testing.assert_close(tensor, expected[name])
        changed += not torch.equal(tensor, base[name])
    assert changed > 0  # training moved the adapter, and the merge moved the weights

    second = tmp_path / "iter2"  # iteration 2: policy and reference = iteration 1's merged model
    main(algorithm, cli(algorithm, first, data, second, "max_steps=1", f"ref_model_name_or_path={first}"))
    record = json.loads((second / FINISHED_MARKER).read_text())
    assert record["model"] == record["reference"] == str(first) and record["steps"] == 1
    AutoModelForCausalLM.from_pretrained(second)


def test_zero3_is_refused_with_lora():
    from types import SimpleNamespace

    from alignment_algorithms.lora import check_supported

    with pytest.raises(ValueError, match="ZeRO-3"):
        check_supported(SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=3)))
    check_supported(SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=2)))
    check_supported(SimpleNamespace(deepspeed_plugin=None))
