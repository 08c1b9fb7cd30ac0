"""RAFT on the real trainer with a tiny model: the loss is the summed NLL of the model-generated
tokens of each chosen trajectory, averaged over trajectories (SPEC 5.3 `raft`), observation tokens
have no gradient, gradient accumulation changes nothing, and the entry point saves a loadable model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from alignment_testdata import pair_rows
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment_algorithms.raft_trainer import RAFTConfig, RAFTTrainer
from alignment_algorithms.training_run import FINISHED_MARKER, main

pytestmark = pytest.mark.slow
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CPU = {"bf16": False, "activation_checkpointing": False, "report_to": "none", "save_strategy": "no",
       "dataloader_pin_memory": False, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4,
       "logging_steps": 1, "seed": 0, "max_length": 1024}


def raft(tmp_path, model, data, **options) -> RAFTTrainer:
    return RAFTTrainer(str(model), args=RAFTConfig(output_dir=str(tmp_path), **{**CPU, **options}),
                       train_dataset=data)


def first_batch(trainer, n: int = 4) -> dict:
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


def summed_nll(model, batch: dict) -> torch.Tensor:
    """Per sequence, -sum log p(token) over the tokens whose label is kept (plain transformers forward)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    kept = labels != -100
    logps = logits.float().log_softmax(-1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return -(logps * kept).sum(-1)


def test_trains_the_chosen_models_tokens_only(tmp_path, tiny_model, tiny_tokenizer, trajectories):
    rows = pair_rows(trajectories[:4])
    trainer = raft(tmp_path, tiny_model, Dataset.from_list(rows))
    batch = first_batch(trainer)
    for i, row in enumerate(rows):
        ids = batch["input_ids"][i][batch["attention_mask"][i].bool()]
        labels = batch["labels"][i][batch["attention_mask"][i].bool()]
        whole = tiny_tokenizer.apply_chat_template(row["prompt"] + row["chosen"], tokenize=False)
        assert tiny_tokenizer.decode(ids).startswith(whole)  # the chosen trajectory, not the rejected
        trained = tiny_tokenizer.decode(ids[labels != -100])
        for message in row["chosen"]:
            if message["role"] == "assistant":
                assert message["content"] in trained
            else:  # an observation turn: in the input, not in the loss
                assert message["content"] in tiny_tokenizer.decode(ids) and message["content"] not in trained
        assert row["prompt"][0]["content"] not in trained


def test_loss_is_the_summed_nll_per_trajectory_averaged(tmp_path, tiny_model, trajectories):
    trainer = raft(tmp_path, tiny_model, Dataset.from_list(pair_rows(trajectories[:4])))
    batch = first_batch(trainer)
    trainer.model.train()
    count = trainer._get_num_items_in_batch([batch], torch.device("cpu"))
    loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=count)
    with torch.no_grad():
        expected = summed_nll(AutoModelForCausalLM.from_pretrained(tiny_model), batch)
    assert int(count) == 4
    torch.testing.assert_close(loss, expected.mean(), rtol=1e-5, atol=1e-4)
    assert expected.mean() > 10 * (expected / (batch["labels"][:, 1:] != -100).sum(-1)).mean()  # a sum, not a mean
    with torch.no_grad():  # evaluation (no count from the training loop) reports the same quantity
        torch.testing.assert_close(trainer.compute_loss(trainer.model, dict(batch)), expected.mean(),
                                   rtol=1e-5, atol=1e-4)


def hidden_state_grads(trainer, batch) -> torch.Tensor:
    """d loss / d (final hidden state): position p feeds only the prediction of token p + 1."""
    captured = []

    def keep(module, inputs, output):
        output.retain_grad()
        captured.append(output)

    handle = trainer.model.model.norm.register_forward_hook(keep)
    trainer.model.train()
    count = trainer._get_num_items_in_batch([batch], torch.device("cpu"))
    trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=count).backward()
    handle.remove()
    return captured[0].grad.abs().sum(-1)


def test_observation_tokens_have_no_gradient(tmp_path, tiny_model, trajectories):
    data = Dataset.from_list(pair_rows(trajectories[:4]))
    masked = raft(tmp_path / "masked", tiny_model, data)
    batch = first_batch(masked)
    grads = hidden_state_grads(masked, batch)[:, :-1]
    trained = batch["labels"][:, 1:] != -100
    assert (grads[~trained] == 0).all() and (grads[trained] > 0).all()
    first = trained.int().argmax(1)
    last = trained.shape[1] - trained.flip(1).int().argmax(1)
    positions = torch.arange(trained.shape[1])
    observation = (positions > first[:, None]) & (positions < last[:, None]) & ~trained
    assert observation.any(1).all()  # every trajectory has an observation turn inside its completion

    unmasked = raft(tmp_path / "unmasked", tiny_model, data, mask_observations=False)
    grads = hidden_state_grads(unmasked, first_batch(unmasked))[:, :-1]
    assert (grads[observation] > 0).all()  # with the switch off, observations are trained on


def one_sgd_step(tmp_path, model, data, batch_size: int, accumulation: int) -> dict:
    trainer = raft(tmp_path, model, data, optim="sgd", learning_rate=1e-3, lr_scheduler_type="constant",
                   warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0, max_steps=1,
                   per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation)
    trainer.train()
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


def test_one_step_follows_the_mean_summed_nll_whatever_the_accumulation(tmp_path, tiny_model, trajectories):
    """One SGD step from the training loop equals w - lr * grad(mean over the 4 trajectories of each one's
    summed NLL), for 4 x 1 and for 2 x 2 accumulation (a token mean or a per-micro-batch mean would not)."""
    data = Dataset.from_list(pair_rows(trajectories[:4]))
    whole = one_sgd_step(tmp_path / "4x1", tiny_model, data, 4, 1)
    accumulated = one_sgd_step(tmp_path / "2x2", tiny_model, data, 2, 2)

    probe = raft(tmp_path / "probe", tiny_model, data)
    batch = probe.data_collator([probe.train_dataset[i] for i in range(4)])
    reference = AutoModelForCausalLM.from_pretrained(tiny_model)
    summed_nll(reference, batch).mean().backward()
    for name, p in reference.named_parameters():
        expected = p.detach() - 1e-3 * p.grad
        torch.testing.assert_close(whole[name], expected, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(accumulated[name], expected, rtol=1e-4, atol=1e-6)


def test_config_refuses_what_would_change_the_loss():
    with pytest.raises(ValueError, match="packing"):
        RAFTConfig(output_dir="o", bf16=False, packing=True)
    with pytest.raises(ValueError, match="completion"):
        RAFTConfig(output_dir="o", bf16=False, completion_only_loss=False)


def test_run_raft_trains_and_saves_a_loadable_model(tmp_path, tiny_model, tiny_tokenizer, trajectories):
    pairs = tmp_path / "pairs" / "dpo"
    Dataset.from_list(pair_rows(trajectories[:24])).save_to_disk(pairs)
    out = tmp_path / "raft"
    main("raft", ["--config", str(CONFIGS / "raft_tiny_cpu.yaml"), f"model_name_or_path={tiny_model}",
                  f"dataset_path={pairs}", f"output_dir={out}", "max_steps=2", "save_steps=2", "eval_steps=2"])
    assert (out / "model.safetensors").is_file()
    record = json.loads((out / FINISHED_MARKER).read_text())
    assert record["stage"] == "raft" and record["reference"] is None and record["steps"] == 2
    assert record["train_rows"] + record["eval_rows"] == 24 and record["eval_rows"] > 0
    trained = AutoModelForCausalLM.from_pretrained(out)
    initial = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert not torch.equal(trained.lm_head.weight, initial.lm_head.weight)
    assert AutoTokenizer.from_pretrained(out).chat_template == tiny_tokenizer.chat_template
    with pytest.raises(ValueError, match="no reference model"):
        main("raft", ["--config", str(CONFIGS / "raft_tiny_cpu.yaml"), f"model_name_or_path={tiny_model}",
                      f"dataset_path={pairs}", f"output_dir={tmp_path / 'again'}",
                      f"ref_model_name_or_path={tiny_model}"])
