"""The Mistral padding-token step on a tiny stand-in for Mistral-7B-v0.3 (a tokenizer with no pad
token and no chat template), and the Mistral config's masking recipe on the template it installs."""

from __future__ import annotations

import itertools

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from formats import sft as sft_format
from SFT.add_pad_token import add_pad_token
from SFT.add_pad_token import main as add_pad_main
from SFT.tests.helpers import CONFIGS
from SFT.tests.labels import expected_labels


@pytest.fixture(scope="module")
def padded(tiny_world, tmp_path_factory):
    """A base model like Mistral's: BOS/EOS only, then `add_pad_token` applied to it."""
    src = tmp_path_factory.mktemp("nopad")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(tiny_world / "model" / "tokenizer.json"),
                                  bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")
    assert tok.pad_token is None and not tok.chat_template
    tok.save_pretrained(src)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                 num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(src)
    dst = tmp_path_factory.mktemp("pad")
    assert add_pad_main([str(src), str(dst)]) == 0
    return src, dst, len(tok)


def test_pad_token_added_embeddings_grown_ids_recorded(padded):
    _, dst, old_vocab = padded
    tok = AutoTokenizer.from_pretrained(dst)
    model = AutoModelForCausalLM.from_pretrained(dst)
    assert tok.pad_token == "[PAD]" and tok.pad_token_id == old_vocab
    assert model.get_input_embeddings().num_embeddings == old_vocab + 1 == len(tok)
    assert model.config.pad_token_id == model.generation_config.pad_token_id == old_vocab
    assert model(input_ids=torch.tensor([[tok.bos_token_id, tok.pad_token_id]])).logits.shape[-1] == len(tok)


def test_running_twice_adds_nothing(padded, tmp_path):
    _, dst, old_vocab = padded
    assert add_pad_token(str(dst), tmp_path) == old_vocab
    assert len(AutoTokenizer.from_pretrained(tmp_path)) == old_vocab + 1


def test_installed_template_is_fastchat_mistral(padded):
    tok = AutoTokenizer.from_pretrained(padded[1])
    text = tok.apply_chat_template([{"role": "user", "content": "q?"}, {"role": "assistant", "content": "code"},
                                    {"role": "user", "content": "```output\n3\n```"},
                                    {"role": "assistant", "content": "\\boxed{3}"}], tokenize=False)
    assert text == "<bos>[INST] q? [/INST] code<eos>[INST] ```output\n3\n``` [/INST] \\boxed{3}<eos>"


def test_mistral_recipe_masks_user_and_observation_turns(padded, tiny_world):
    from axolotl.prompt_strategies import load as load_strategy
    from axolotl.utils.dict import DictDefault

    cfg = yaml.safe_load((CONFIGS / "mistral-7b-v0.3.yaml").read_text())
    tok = AutoTokenizer.from_pretrained(padded[1])
    strategy = load_strategy("chat_template", tok, DictDefault(cfg), cfg["datasets"][0])
    for row in itertools.islice(sft_format.read(tiny_world / "data" / "sft.jsonl"), 50):
        got = strategy.tokenize_prompt(row)
        ids, labels = expected_labels(tok, row["messages"], tok.eos_token)
        assert got["input_ids"] == ids
        assert got["labels"] == labels, tok.convert_ids_to_tokens(ids)
