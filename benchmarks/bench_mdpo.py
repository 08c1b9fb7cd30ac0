"""M-DPO against TRL's DPO on the same batches of the tiny world's model, in one process run.

Measures (1) the training step: rows read from the prepared dataset, collation, forward, backward and
AdamW step, interleaving the two trainers batch by batch so machine noise hits both alike (goal: M-DPO
at most 5% slower); (2) peak memory of each trainer's steps, each in a fresh process (peak RSS on CPU,
peak allocated on GPU); (3) preprocessing throughput, pairs per second, of each `_prepare_dataset`.

    .venv-alignment/bin/python benchmarks/bench_mdpo.py [--steps 60] [--batch-size 4] [--pairs 512]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import resource
import statistics
import tempfile
import time
from pathlib import Path

import datasets
import torch
from datasets import Dataset
from transformers import AutoTokenizer
from trl import DPOTrainer

from alignment_algorithms.mdpo_trainer import MultiTurnDPOConfig, MultiTurnDPOTrainer

WORLD = Path(os.environ.get("TINY_WORLD", Path(__file__).resolve().parents[1] / "runs" / "test_world"))


def pairs(n: int) -> Dataset:
    """Chosen: a real multi-turn trajectory; rejected: the same with every number in it shifted."""
    def shift(text: str) -> str:
        return re.sub(r"\d+", lambda m: str(int(m.group()) + 1), text)

    rows = []
    with open(WORLD / "data" / "sft.jsonl") as fh:
        for line in fh:
            t = json.loads(line)["messages"]
            rejected = [{**m, "content": shift(m["content"])} for m in t[1:]]
            rows.append({"prompt": t[:1], "chosen": t[1:], "rejected": rejected})
            if len(rows) == n:
                break
    return Dataset.from_list(rows)


def make_trainer(name: str, data: Dataset, out: str, batch_size: int):
    common = {"bf16": False, "activation_checkpointing": False, "report_to": "none", "save_strategy": "no",
              "dataloader_pin_memory": False, "per_device_train_batch_size": batch_size, "max_length": 2048,
              "learning_rate": 1e-5, "seed": 0}
    tokenizer = AutoTokenizer.from_pretrained(WORLD / "model")
    trainer_class = {"trl_dpo": DPOTrainer, "m_dpo": MultiTurnDPOTrainer}[name]
    # No appended EOS, so both trainers see the very same token ids and only the masks differ.
    args = MultiTurnDPOConfig(output_dir=f"{out}/{name}", append_eos=False, **common)
    trainer = trainer_class(str(WORLD / "model"), args=args, train_dataset=data, processing_class=tokenizer)
    trainer.model.train()
    trainer.create_optimizer()
    return trainer


def step(trainer, rows: list[int]) -> float:
    start = time.perf_counter()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in rows])
    trainer.compute_loss(trainer.model, batch).backward()
    trainer.optimizer.step()
    trainer.optimizer.zero_grad()
    return time.perf_counter() - start


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_memory(name: str, steps: int, batch_size: int, threads: int, queue) -> None:
    """In a fresh process: build one trainer, run its steps, report (peak, peak minus before the steps)."""
    torch.set_num_threads(threads)
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as out:
        trainer = make_trainer(name, pairs(batch_size * steps), out, batch_size)
        before = rss_mib()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated() / 2**20
        for k in range(steps):
            step(trainer, list(range(k * batch_size, (k + 1) * batch_size)))
        if torch.cuda.is_available():
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        queue.put((peak, peak - before))


def throughput(trainer, data: Dataset, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer._prepare_dataset(data, trainer.processing_class, trainer.args, "bench")
        rates.append(len(data) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per trainer (+5 warm-up)")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per step")
    parser.add_argument("--pairs", type=int, default=512, help="pairs to tokenise for the throughput figure")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()

    data = pairs(args.pairs)
    names = ("trl_dpo", "m_dpo")
    with tempfile.TemporaryDirectory() as out:
        subset = data.select(range(args.batch_size * (args.steps + 5)))
        all_trainers = {name: make_trainer(name, subset, out, args.batch_size) for name in names}
        order = torch.randperm(len(subset), generator=torch.Generator().manual_seed(0)).tolist()
        batches = [order[i * args.batch_size:(i + 1) * args.batch_size] for i in range(args.steps + 5)]
        ours, theirs = (all_trainers[n].data_collator([all_trainers[n].train_dataset[i] for i in batches[0]])
                        for n in ("m_dpo", "trl_dpo"))
        assert torch.equal(ours["input_ids"], theirs["input_ids"]), "both trainers must see the same tokens"
        share = ours["completion_mask"].sum().item() / theirs["completion_mask"].sum().item()

        times = {name: [] for name in names}
        for k, rows in enumerate(batches):
            for name in (names if k % 2 else names[::-1]):
                elapsed = step(all_trainers[name], rows)
                if k >= 5:  # warm-up
                    times[name].append(elapsed)
        rates = {name: throughput(trainer, data, repeats=3) for name, trainer in all_trainers.items()}

    memory = {}
    context = multiprocessing.get_context("spawn")
    for name in names:
        queue = context.Queue()
        child = context.Process(target=peak_memory, args=(name, 10, args.batch_size, args.threads, queue))
        child.start()
        memory[name] = queue.get()
        child.join()

    median = {name: statistics.median(t) * 1000 for name, t in times.items()}
    unit = "MiB allocated (GPU)" if torch.cuda.is_available() else "MiB RSS"
    print(f"{time.strftime('%Y-%m-%d')}: tiny world model {WORLD / 'model'}, batch {args.batch_size} pairs, "
          f"{args.steps} interleaved steps, {args.threads} torch thread(s); M-DPO trains {share:.0%} of the "
          "completion tokens TRL's DPO trains")
    for name in names:
        print(f"{name:8s} step {median[name]:7.2f} ms (median)   peak {memory[name][0]:7.1f} {unit} "
              f"(+{memory[name][1]:.1f} during the steps)   preprocessing {rates[name]:7.1f} pairs/s")
    print(f"step time   M-DPO / TRL DPO = {median['m_dpo'] / median['trl_dpo']:.3f}  (goal <= 1.05)")
    print(f"peak memory M-DPO / TRL DPO = {memory['m_dpo'][0] / memory['trl_dpo'][0]:.3f}")
    print(f"preprocessing M-DPO / TRL DPO = {rates['m_dpo'] / rates['trl_dpo']:.3f}")

if __name__ == "__main__":
    main()
