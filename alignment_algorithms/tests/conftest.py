"""Session fixtures: the tiny world's trajectories, tiny models, and the chat-template tokenizers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from alignment_testdata import FAMILIES, TEMPLATES, save_tiny_model, train_family_tokenizer

WORLD = Path(os.environ.get("TINY_WORLD", Path(__file__).resolve().parents[2] / "runs" / "test_world"))

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def world() -> Path:
    if not (WORLD / "data" / "sft.jsonl").is_file():
        pytest.fail(f"no tiny world at {WORLD}: scripts/test.sh builds it (scripts/make_tiny_world.py)")
    return WORLD


@pytest.fixture(scope="session")
def trajectories(world) -> list[list[dict]]:
    """Real multi-turn trajectories: question, then assistant / observation turns, ending with an answer."""
    with open(world / "data" / "sft.jsonl") as fh:
        rows = [json.loads(line)["messages"] for line in fh]
    return [r for r in rows if len(r) >= 4][:64]


@pytest.fixture(scope="session")
def tiny_tokenizer(world):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(world / "model")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_tokenizer) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny_model"), tiny_tokenizer, seed=0)


@pytest.fixture(scope="session")
def other_tiny_model(tmp_path_factory, tiny_tokenizer) -> Path:
    """Same architecture, other weights: a reference that differs from the policy."""
    return save_tiny_model(tmp_path_factory.mktemp("other_tiny_model"), tiny_tokenizer, seed=1)


@pytest.fixture(scope="session")
def family_tokenizers(trajectories) -> dict:
    corpus = [m["content"] for t in trajectories for m in t]
    corpus += [(TEMPLATES / f.template).read_text() for f in FAMILIES.values()]
    corpus += ["You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
               "User: Assistant: system"]
    return {name: train_family_tokenizer(family, corpus) for name, family in FAMILIES.items()}
