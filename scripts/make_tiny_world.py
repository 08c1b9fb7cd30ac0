"""Build the tiny offline world: a tokenizer, a random small Llama, GSM8K-format arithmetic word
problems, and tool-integrated SFT trajectories in the RLHF4MATH/SFT_510K message format.

Nothing here touches a hub, so every machine (a laptop, CI) can run the whole pipeline. The same
seed gives byte-identical files.

The task is built so that preference learning has something to learn (issue 9): every problem
template has an operator that the SFT data sometimes gets wrong. On "hard" templates most SFT
trajectories use the wrong operator (so the SFT model's greedy answer is usually wrong there,
while sampling finds the right one at times); on "easy" templates few do. The tool output never
tells the model which operator was meant, so only the reward can.

Runs in the alignment environment (torch, transformers, tokenizers):
    .venv-alignment/bin/python scripts/make_tiny_world.py --seed 0 --out runs/tiny_world
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]


@dataclass(frozen=True)
class Template:
    """A word problem: `text` with {a} {b} {c} {item} {name}, answer = `expr` over a, b, c."""

    name: str
    text: str
    expr: str
    wrong: str  # the operator mistake the SFT data makes on this template
    hard: bool  # hard: the SFT data mostly makes the mistake


TEMPLATES = [
    Template("sell", "{name} has {a} {item}. {name} sells {b} of them. How many {item} are left?",
             "a - b", "a + b", False),
    Template("buy", "{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?",
             "a + b", "a - b", False),
    Template("boxes", "There are {a} boxes with {b} {item} in each box. How many {item} are there?",
             "a * b", "a + b", False),
    Template("lose", "{name} collected {a} {item} but lost {b} on the way home. How many {item} "
             "does {name} still have?", "a - b", "a + b", True),
    Template("rows", "A garden has {a} rows of {item}. Each row holds {b} {item}. How many {item} "
             "grow in the garden?", "a * b", "a + b", True),
    Template("gift", "{name} had {a} {item} and received {b} as a gift. How many {item} does "
             "{name} have?", "a + b", "a - b", True),
    Template("boxes_give", "{name} packs {a} boxes with {b} {item} each and gives away {c} {item}. "
             "How many {item} are left?", "a * b - c", "a * b + c", False),
    Template("buy_share", "{name} buys {a} {item} and then {b} more, and shares them with {c} "
             "friends. How many {item} in all were shared?", "a + b", "a + b + c", True),
    Template("weeks", "{name} saves {a} coins every week for {b} weeks and then spends {c} coins. "
             "How many coins are left?", "a * b - c", "a * b + c", True),
    Template("two_shops", "One shop sold {a} {item} and another sold {b} {item}. Together they "
             "returned {c} {item}. How many {item} were kept?", "a + b - c", "a + b + c", False),
]
NAMES = ["Ava", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun"]
ITEMS = ["apples", "pens", "books", "stamps", "shells", "cards", "marbles", "cookies"]
INTROS = ["Let's compute this with Python.", "I will write a short program.",
          "We can calculate it in Python."]
TYPOS = {"a": "aa", "b": "bb", "c": "cc"}  # a misspelt variable: NameError, fixed next turn


def make_problem(rng: random.Random, template: Template, digits: int) -> dict:
    a, b, c = (rng.randint(10 ** (digits - 1) + 1, 10 ** digits - 1) for _ in "abc")
    if template.expr == "a - b" and a < b:
        a, b = b, a
    text = template.text.format(a=a, b=b, c=c, name=rng.choice(NAMES), item=rng.choice(ITEMS))
    answer = eval(template.expr, {}, {"a": a, "b": b, "c": c})  # noqa: S307 - fixed templates
    worked = template.expr.replace("a", str(a)).replace("b", str(b)).replace("c", str(c))
    return {"question": text, "answer": f"{worked} = {answer}\n#### {answer}",
            "values": {"a": a, "b": b, "c": c}, "template": template.name}


def code_for(expr: str, values: dict, typo: str | None = None) -> str:
    names = [v for v in "abc" if v in expr]
    shown = expr if typo is None else expr.replace(typo, TYPOS[typo], 1)
    return f"{', '.join(names)} = {', '.join(str(values[v]) for v in names)}\nprint({shown})"


def trajectory(rng: random.Random, problem: dict, template: Template, wrong_rate: float,
               error_rate: float) -> list[dict]:
    expr = template.wrong if rng.random() < wrong_rate else template.expr
    values = problem["values"]
    answer = eval(expr, {}, values)  # noqa: S307 - fixed templates
    intro = rng.choice(INTROS)
    messages = [{"role": "user", "content": problem["question"]}]
    if rng.random() < error_rate:
        typo = rng.choice([v for v in "abc" if v in expr])
        messages += [
            {"role": "assistant", "content": f"{intro}\n```python\n{code_for(expr, values, typo)}\n```"},
            {"role": "user", "content": "```output\nNameError: name '" + TYPOS[typo]
             + "' is not defined\n```"},
            {"role": "assistant", "content": "The variable name was wrong. Let me fix it.\n"
             f"```python\n{code_for(expr, values)}\n```"},
        ]
    else:
        program = code_for(expr, values)
        messages.append({"role": "assistant", "content": f"{intro}\n```python\n{program}\n```"})
    messages += [{"role": "user", "content": f"```output\n{answer}\n```"},
                 {"role": "assistant", "content": f"The answer is $\\boxed{{{answer}}}$."}]
    return messages


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def build_data(out: Path, seed: int, n_train: int, n_test: int, n_sft: int, hard_wrong: float,
               easy_wrong: float, error_rate: float, digits: int) -> list[dict]:
    rng = random.Random(seed)
    sft, seen = [], set()
    for _ in range(n_sft):
        t = rng.choice(TEMPLATES)
        p = make_problem(rng, t, digits)
        seen.add(p["question"])
        sft.append({"messages": trajectory(rng, p, t, hard_wrong if t.hard else easy_wrong, error_rate)})

    def fresh(n: int) -> list[dict]:
        rows = []
        while len(rows) < n:
            t = rng.choice(TEMPLATES)
            p = make_problem(rng, t, digits)
            if p["question"] in seen:
                continue
            seen.add(p["question"])
            rows.append({"idx": str(len(rows)), "question": p["question"], "answer": p["answer"],
                         "type": t.name, "level": "hard" if t.hard else "easy"})
        return rows

    write_jsonl(out / "data" / "sft.jsonl", sft)
    write_jsonl(out / "data" / "train.jsonl", fresh(n_train))
    write_jsonl(out / "data" / "test.jsonl", fresh(n_test))
    return sft


def build_tokenizer(out: Path, corpus: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
        chat_template=GEMMA_CHAT_TEMPLATE, model_max_length=2048, padding_side="left",
    )
    fast.save_pretrained(out / "model")
    return fast


def build_model(out: Path, tokenizer, seed: int, hidden: int, layers: int, heads: int) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if hidden // heads < 32:
        sys.exit(f"head_dim = {hidden}/{heads} < 32: vLLM's CPU attention needs head_dim >= 32")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 4,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")])
    model.save_pretrained(out / "model")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="folder to write (model/, data/)")
    ap.add_argument("--n-train", type=int, default=3000, help="prompts for the online iterations")
    ap.add_argument("--n-test", type=int, default=400, help="held-out test problems")
    ap.add_argument("--n-sft", type=int, default=4000, help="SFT trajectories")
    ap.add_argument("--hard-wrong", type=float, default=0.6,
                    help="share of SFT trajectories on hard templates using the wrong operator")
    ap.add_argument("--easy-wrong", type=float, default=0.1,
                    help="share of SFT trajectories on easy templates using the wrong operator")
    ap.add_argument("--error-rate", type=float, default=0.15,
                    help="share of SFT trajectories whose first program fails and is fixed")
    ap.add_argument("--digits", type=int, default=2, help="digits of the numbers in a problem")
    ap.add_argument("--vocab-size", type=int, default=384)
    # Wide heads (64 dims) over two layers learn to copy numbers within ~300 steps; 128 dims over
    # four layers did not within 900 (benchmarks/RESULTS.md, "tiny world").
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    args = ap.parse_args(argv)

    sft = build_data(args.out, args.seed, args.n_train, args.n_test, args.n_sft,
                     args.hard_wrong, args.easy_wrong, args.error_rate, args.digits)
    corpus = [m["content"] for row in sft for m in row["messages"]]
    tokenizer = build_tokenizer(args.out, corpus, args.vocab_size)
    build_model(args.out, tokenizer, args.seed, args.hidden, args.layers, args.heads)
    recipe = {k: v for k, v in vars(args).items() if k != "out"}  # the same world wherever it lies
    (args.out / "WORLD.json").write_text(json.dumps(recipe, indent=1, sort_keys=True) + "\n")
    print(f"tiny world written to {args.out}")


if __name__ == "__main__":
    main()
