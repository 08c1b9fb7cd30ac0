"""Reading the preference stage's datasets: validated rows, and prompts held out whole for evaluation."""

from __future__ import annotations

import pytest
from alignment_testdata import pair_rows, unpaired_rows
from datasets import Dataset

from alignment_algorithms.preference_data import load_preference_dataset, split_heldout_prompts
from formats._common import FormatError


def test_valid_datasets_load(tmp_path, trajectories):
    Dataset.from_list(pair_rows(trajectories[:6])).save_to_disk(tmp_path / "dpo")
    Dataset.from_list(unpaired_rows(trajectories[:6])).save_to_disk(tmp_path / "kto")
    assert len(load_preference_dataset(tmp_path / "dpo", "pairs")) == 6
    assert len(load_preference_dataset(tmp_path / "kto", "unpaired")) == 6


def test_bad_row_names_directory_row_and_field(tmp_path, trajectories):
    rows = pair_rows(trajectories[:6])
    rows[4]["rejected"] = rows[4]["rejected"][:-1]  # now ends with an observation
    Dataset.from_list(rows).save_to_disk(tmp_path / "dpo")
    with pytest.raises(FormatError) as error:
        load_preference_dataset(tmp_path / "dpo", "pairs")
    assert str(tmp_path / "dpo") in str(error.value) and "line 4" in str(error.value)
    assert "rejected" in str(error.value)


def test_wrong_kind_of_dataset_is_refused(tmp_path, trajectories):
    Dataset.from_list(unpaired_rows(trajectories[:6])).save_to_disk(tmp_path / "kto")
    with pytest.raises(FormatError, match="chosen"):
        load_preference_dataset(tmp_path / "kto", "pairs")
    with pytest.raises(FileNotFoundError, match="no such dataset"):
        load_preference_dataset(tmp_path / "missing", "pairs")


def test_heldout_split_keeps_prompts_whole_and_is_stable(trajectories):
    rows = pair_rows(trajectories[:40])
    rows += [dict(r) for r in rows[:20]]  # a second pair for half of the prompts
    data = Dataset.from_list(rows)
    train, heldout = split_heldout_prompts(data, 0.1, seed=42)
    assert set(train["idx"]).isdisjoint(heldout["idx"])
    assert len(set(heldout["idx"])) == 4 and len(train) + len(heldout) == len(data)
    again_train, again_heldout = split_heldout_prompts(data, 0.1, seed=42)
    assert again_heldout["idx"] == heldout["idx"] and again_train["idx"] == train["idx"]
    assert split_heldout_prompts(data, 0.1, seed=7)[1]["idx"] != heldout["idx"]
    # Not the first rows of the training data (the reference's eval set, SPEC §8 item 36).
    assert set(heldout["idx"]) != {str(i) for i in range(4)}
