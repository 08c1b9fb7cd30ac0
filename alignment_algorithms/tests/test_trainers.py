"""M-DPO and M-KTO on a tiny model: TRL's DPO when there is nothing to mask, exactly zero gradient
through observation tokens, the paper's variants, and learning."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from alignment_testdata import pair_rows, single_turn_pair_rows, unpaired_rows
from datasets import Dataset
from transformers import AutoModelForCausalLM
from trl import DPOTrainer

from alignment_algorithms.mdpo_trainer import MultiTurnDPOConfig, MultiTurnDPOTrainer
from alignment_algorithms.mkto_trainer import MultiTurnKTOConfig, MultiTurnKTOTrainer

pytestmark = pytest.mark.slow
CPU = {"bf16": False, "activation_checkpointing": False, "report_to": "none", "save_strategy": "no",
       "dataloader_pin_memory": False, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4,
       "logging_steps": 1, "seed": 0, "max_length": 1024}


def dpo(tmp_path, model, data, ref=None, tokenizer=None, **options) -> MultiTurnDPOTrainer:
    args = MultiTurnDPOConfig(output_dir=str(tmp_path), **{**CPU, **options})
    return MultiTurnDPOTrainer(str(model), ref_model=ref, args=args, train_dataset=data, eval_dataset=data,
                               processing_class=tokenizer)


def kto(tmp_path, model, data, ref=None, **options) -> MultiTurnKTOTrainer:
    args = MultiTurnKTOConfig(output_dir=str(tmp_path), **{**CPU, **options})
    return MultiTurnKTOTrainer(str(model), ref_model=ref, args=args, train_dataset=data, eval_dataset=data)


def first_batch(trainer, n: int = 4) -> dict:
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


def test_equals_trl_dpo_without_observation_turns(tmp_path, tiny_model, other_tiny_model, tiny_tokenizer,
                                                  trajectories):
    """No observation turn, no appended EOS: the same ids, masks, loss and gradients as TRL's DPOTrainer."""
    data = Dataset.from_list(single_turn_pair_rows(trajectories[:8]))
    ours = dpo(tmp_path / "ours", tiny_model, data, ref=str(other_tiny_model), append_eos=False)
    trl_args = MultiTurnDPOConfig(output_dir=str(tmp_path / "trl"), **CPU)
    theirs = DPOTrainer(str(tiny_model), ref_model=AutoModelForCausalLM.from_pretrained(other_tiny_model),
                        args=trl_args, train_dataset=data, processing_class=tiny_tokenizer)
    for column in ("prompt_ids", "chosen_ids", "rejected_ids"):
        assert ours.train_dataset[column] == theirs.train_dataset[column]
    batches = first_batch(ours), first_batch(theirs)
    assert batches[0].keys() == batches[1].keys()
    for key in batches[0]:
        assert torch.equal(batches[0][key], batches[1][key]), key
    losses = []
    for trainer, batch in zip((ours, theirs), batches, strict=True):
        trainer.model.train()
        loss = trainer.compute_loss(trainer.model, batch)
        loss.backward()
        losses.append(loss)
    assert torch.equal(losses[0], losses[1]) and abs(losses[0].item() - math.log(2)) > 1e-4
    for (name, ours_p), (_, theirs_p) in zip(ours.model.named_parameters(), theirs.model.named_parameters(),
                                             strict=True):
        assert torch.equal(ours_p.grad, theirs_p.grad), name


def hidden_state_grads(trainer, batch) -> torch.Tensor:
    """d loss / d (final hidden state): position p feeds only the prediction of token p + 1."""
    captured = []

    def keep(module, inputs, output):
        if output.requires_grad:  # the policy's forward, not KTO's no-grad KL forward
            output.retain_grad()
            captured.append(output)

    handle = trainer.model.model.norm.register_forward_hook(keep)
    trainer.model.train()
    trainer.compute_loss(trainer.model, batch).backward()
    handle.remove()
    (hidden,) = captured
    return hidden.grad.abs().sum(-1)


@pytest.mark.parametrize("algorithm", ["mdpo", "mkto"])
def test_no_gradient_through_observation_tokens(algorithm, tmp_path, tiny_model, trajectories):
    if algorithm == "mdpo":
        make, data = dpo, Dataset.from_list(pair_rows(trajectories[:4]))
    else:
        make, data = kto, Dataset.from_list(unpaired_rows(trajectories[:4]))
    masked = make(tmp_path / "masked", tiny_model, data)
    batch = first_batch(masked)
    grads = hidden_state_grads(masked, batch)[:, :-1]
    trained = batch["completion_mask"][:, 1:].bool()
    assert (grads[~trained] == 0).all()  # prompt, observations and padding: exactly zero
    assert (grads[trained] > 0).all()
    # Observation turns lie inside the completion: masked tokens between trained ones.
    first = trained.int().argmax(1)
    inside = torch.arange(trained.shape[1]) > first[:, None]
    inside &= torch.arange(trained.shape[1]) < (trained.shape[1] - trained.flip(1).int().argmax(1))[:, None]
    observation = inside & ~trained
    assert observation.any(1).all()

    baseline = make(tmp_path / "single_turn", tiny_model, data, mask_observations=False)
    grads = hidden_state_grads(baseline, first_batch(baseline))[:, :-1]
    assert (grads[observation] > 0).all()  # the single-turn baseline trains on observations


@pytest.mark.parametrize("algorithm", ["mdpo", "mkto"])
def test_a_few_steps_raise_the_margin(algorithm, tmp_path, tiny_model, trajectories):
    if algorithm == "mdpo":
        trainer = dpo(tmp_path, tiny_model, Dataset.from_list(pair_rows(trajectories[:16])),
                      learning_rate=2e-3, max_steps=8, warmup_steps=0, lr_scheduler_type="constant")
    else:
        trainer = kto(tmp_path, tiny_model, Dataset.from_list(unpaired_rows(trajectories[:16])),
                      learning_rate=2e-3, max_steps=8, warmup_steps=0, lr_scheduler_type="constant")
    before = trainer.evaluate()["eval_rewards/margins"]
    trainer.train()
    after = trainer.evaluate()["eval_rewards/margins"]
    assert before == pytest.approx(0, abs=1e-6)  # the policy starts as its own reference
    assert after > 0.2, (before, after)


@pytest.mark.parametrize("algorithm", ["mdpo", "mkto"])
def test_precomputed_reference_matches_live_reference(algorithm, tmp_path, tiny_model, other_tiny_model,
                                                      trajectories):
    make = dpo if algorithm == "mdpo" else kto
    rows = pair_rows if algorithm == "mdpo" else unpaired_rows
    data = Dataset.from_list(rows(trajectories[:8]))
    losses = []
    for precompute in (False, True):
        trainer = make(tmp_path / str(precompute), tiny_model, data, ref=str(other_tiny_model),
                       precompute_ref_log_probs=precompute)
        trainer.model.train()
        with torch.no_grad():
            losses.append(trainer.compute_loss(trainer.model, first_batch(trainer)))
    torch.testing.assert_close(losses[0], losses[1])


def test_nll_coefficient_adds_the_masked_nll_of_chosen(tmp_path, tiny_model, trajectories):
    args = MultiTurnDPOConfig(output_dir=str(tmp_path), nll_coefficient=0.5, **CPU)
    assert args.loss_type == ["sigmoid", "sft"] and args.loss_weights == [1.0, 0.5]
    again = dataclasses.replace(args)  # a second __post_init__ must not add the term twice
    assert again.loss_type == ["sigmoid", "sft"] and again.loss_weights == [1.0, 0.5]

    data = Dataset.from_list(pair_rows(trajectories[:4]))
    plain, with_nll = dpo(tmp_path / "a", tiny_model, data), dpo(tmp_path / "b", tiny_model, data, nll_coefficient=0.5)
    batch = first_batch(plain)
    with torch.no_grad():
        difference = with_nll.compute_loss(with_nll.model, batch) - plain.compute_loss(plain.model, batch)
        reference = AutoModelForCausalLM.from_pretrained(tiny_model)
        logits = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    token_logps = logits[:, :-1].log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    chosen = batch["completion_mask"][:4, 1:].bool()
    torch.testing.assert_close(difference, 0.5 * -token_logps[:4][chosen].mean(), rtol=1e-4, atol=1e-5)


def test_reference_path_loaded_in_the_policy_dtype(tmp_path, tiny_model, other_tiny_model, trajectories):
    """The fixed-reference ablation: a reference given by path, in the policy's dtype (SPEC §8 item 35)."""
    trainer = dpo(tmp_path, tiny_model, Dataset.from_list(pair_rows(trajectories[:4])), ref=str(other_tiny_model),
                  model_init_kwargs={"dtype": "bfloat16"})
    assert trainer.model.dtype == trainer.ref_model.dtype == torch.bfloat16
    loaded = AutoModelForCausalLM.from_pretrained(other_tiny_model, dtype=torch.bfloat16)
    assert torch.equal(trainer.ref_model.lm_head.weight, loaded.lm_head.weight)


def test_loss_type_passes_through(tmp_path, tiny_model, trajectories):
    trainer = dpo(tmp_path, tiny_model, Dataset.from_list(pair_rows(trajectories[:4])), loss_type="ipo")
    assert trainer.loss_types == ["ipo"]
    assert torch.isfinite(trainer.compute_loss(trainer.model, first_batch(trainer)))
