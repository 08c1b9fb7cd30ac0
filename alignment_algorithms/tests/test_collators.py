"""The collators put the turn masks into `completion_mask`, truncated and padded like the ids; the KTO
KL sequences carry the masks of the completions they borrow."""

from __future__ import annotations

import pytest
from alignment_testdata import unpaired_rows
from datasets import Dataset

from alignment_algorithms.collators import (
    CHOSEN_MASK,
    COMPLETION_MASK,
    KL_COMPLETION_MASK,
    REJECTED_MASK,
    MultiTurnPreferenceCollator,
    MultiTurnUnpairedCollator,
)
from alignment_algorithms.mkto_trainer import MultiTurnKTOConfig, MultiTurnKTOTrainer

PAIRS = [
    {"prompt_ids": [1, 2], "chosen_ids": [3, 4, 5, 6], CHOSEN_MASK: [1, 0, 0, 1],
     "rejected_ids": [7, 8], REJECTED_MASK: [1, 1]},
    {"prompt_ids": [9], "chosen_ids": [10, 11], CHOSEN_MASK: [1, 1],
     "rejected_ids": [12, 13, 14], REJECTED_MASK: [1, 0, 1]},
]


def test_preference_masks_replace_completion_mask():
    batch = MultiTurnPreferenceCollator(pad_token_id=0)(PAIRS)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6], [9, 10, 11, 0, 0, 0],
                                           [1, 2, 7, 8, 0, 0], [9, 12, 13, 14, 0, 0]]
    assert batch["completion_mask"].tolist() == [[0, 0, 1, 0, 0, 1], [0, 1, 1, 0, 0, 0],
                                                 [0, 0, 1, 1, 0, 0], [0, 1, 0, 1, 0, 0]]


@pytest.mark.parametrize(("mode", "first_row"), [("keep_start", [0, 0, 1, 0]), ("keep_end", [1, 0, 0, 1])])
def test_preference_masks_truncate_like_the_ids(mode, first_row):
    batch = MultiTurnPreferenceCollator(pad_token_id=0, max_length=4, truncation_mode=mode)(PAIRS)
    assert batch["input_ids"][0].tolist() == ([1, 2, 3, 4] if mode == "keep_start" else [3, 4, 5, 6])
    assert batch["completion_mask"][0].tolist() == first_row


def test_misaligned_mask_is_an_error():
    bad = [dict(PAIRS[0], **{CHOSEN_MASK: [1, 0]}), PAIRS[1]]
    with pytest.raises(ValueError, match="misaligned"):
        MultiTurnPreferenceCollator(pad_token_id=0)(bad)


def test_unpaired_masks_cover_kl_sequences():
    rows = [{"prompt_ids": [1], "completion_ids": [2, 3, 4], COMPLETION_MASK: [1, 0, 1],
             "KL_completion_ids": [5, 6], KL_COMPLETION_MASK: [1, 1], "label": True},
            {"prompt_ids": [7, 8], "completion_ids": [5, 6], COMPLETION_MASK: [1, 1],
             "KL_completion_ids": [2, 3, 4], KL_COMPLETION_MASK: [1, 0, 1], "label": False}]
    batch = MultiTurnUnpairedCollator(pad_token_id=0, max_length=4)(rows)
    assert batch["completion_mask"].tolist() == [[0, 1, 0, 1], [0, 0, 1, 1]]
    assert batch["KL_input_ids"].tolist() == [[1, 5, 6, 0], [7, 8, 2, 3]]
    assert batch["KL_completion_mask"].tolist() == [[0, 1, 1, 0], [0, 0, 1, 0]]


@pytest.mark.slow
def test_kl_completions_carry_their_own_masks(tmp_path, tiny_model, tiny_tokenizer, trajectories):
    args = MultiTurnKTOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, bf16=False,
                              activation_checkpointing=False, report_to="none", dataloader_pin_memory=False)
    trainer = MultiTurnKTOTrainer(str(tiny_model), args=args,
                                  train_dataset=Dataset.from_list(unpaired_rows(trajectories[:8])))
    data = trainer.train_dataset
    for i in range(len(data)):
        donor = i - 1 if i % 4 else i + 3  # TRL rotates by one inside each per-device batch
        assert data[i]["KL_completion_ids"] == data[donor]["completion_ids"]
        assert data[i][KL_COMPLETION_MASK] == data[donor][COMPLETION_MASK]
    batch = trainer.data_collator([data[i] for i in range(4)])
    for row in range(4):
        ids, mask = batch["KL_input_ids"][row], batch["KL_completion_mask"][row]
        n_prompt = len(data[row]["prompt_ids"])
        gaps = [tok for tok, m in zip(ids[n_prompt:].tolist(), mask[n_prompt:].tolist(), strict=True) if not m]
        masked_text = tiny_tokenizer.decode(gaps)
        assert "```output" in masked_text and "<start_of_turn>user" in masked_text
        trained_text = tiny_tokenizer.decode(ids[mask.bool()].tolist())
        assert "```output" not in trained_text and "```python" in trained_text
