"""Trajectory generation throughput: every trajectory on its own (ours) vs the reference's turn
barrier, same workload, same vLLM engine, same sandbox, one process run.

Baseline (SPEC 1.3, re-implemented): all unfinished trajectories send their turn together, the
next step starts only when every one of them has come back, then all their programs run, then
the next turn. Ours: `inference.generate`, where each trajectory sends its next turn as soon as
its own observation is back, so a long turn or a slow program holds back nobody else.

The workload needs a model that writes programs: the tiny world's random model never does. So the
tiny model is first fine-tuned for a few minutes on the tiny world's own SFT trajectories (cached
under --work; `--model` takes any other model folder instead). Both sides then sample the same
problems with the same per-sample seeds (T=1, H=6, 512 tokens per turn), and the prefix cache is
cleared between runs.

    .venv-inference/bin/python benchmarks/bench_generate.py --problems 96 --n 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import time
import zlib
from collections import Counter
from pathlib import Path

from formats import trajectory
from formats.config import build
from inference.backends import BackendConfig, VLLMBackend
from inference.cpus import usable_cpus
from inference.generate import (
    GenerateConfig,
    Limits,
    Tools,
    Trajectory,
    generate_async,
    load_tokenizer,
    sample_seed,
)
from inference.problems import load_problems
from inference.prompts import make_format
from inference.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]


def tune_tiny_model(world: Path, out: Path, steps: int, seed: int) -> Path:
    """Teach the random tiny model the tool format (full-sequence LM loss on the SFT data)."""
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(world / "model")
    model = AutoModelForCausalLM.from_pretrained(world / "model", dtype=torch.float32)
    rows = [json.loads(line) for line in (world / "data" / "sft.jsonl").read_text().splitlines()]
    seqs = [tok(tok.apply_chat_template(r["messages"], tokenize=False), add_special_tokens=False)["input_ids"]
            for r in rows]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(seed)
    for step in range(steps):
        batch = rng.sample(seqs, 16)
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        for i, s in enumerate(batch):
            ids[i, :len(s)] = labels[i, :len(s)] = torch.tensor(s)
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        for group in opt.param_groups:
            group["lr"] = 3e-3 * (1 - step / steps)
        if step % 50 == 0:
            print(f"  tuning step {step}/{steps}: loss {loss.item():.3f}", flush=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    shutil.copy(world / "model" / "generation_config.json", out)
    return out


class SlowCells:
    """Workload knob: programs of real models take time (a sympy solve, a loop that hits the 20 s
    timeout); the tiny model's take a millisecond. With it, a fixed share of program runs, chosen by
    a hash of trajectory and turn so both sides get the same ones, first sleep `seconds` in the
    sandbox, in a cell of its own: observations are unchanged (persistent mode)."""

    def __init__(self, share: float, seconds: float):
        self.share, self.seconds, self.calls = share, seconds, Counter()
        run = Tools._run

        def slow_run(tools: Tools, key: str, programs: list[str]) -> str:
            self.calls[key] += 1
            if zlib.crc32(f"{key}/{self.calls[key]}".encode()) / 2**32 < self.share:
                programs = [f"import time\ntime.sleep({self.seconds})", *programs]
            return run(tools, key, programs)

        Tools._run = slow_run

    def reset(self) -> None:
        self.calls.clear()


async def barrier(cfg: GenerateConfig, backend, phases: Counter) -> list[Trajectory]:
    """The reference's strategy: one batched call per turn, then every program, then repeat.
    `phases` gets the seconds spent generating and running programs: what overlap can reclaim."""
    tokenizer, eos = load_tokenizer(cfg)
    fmt = make_format(cfg.prompt_format, tokenizer, eos)
    limits = Limits(cfg.horizon, cfg.sampling.max_tokens_per_turn,
                    cfg.sampling.max_tokens_per_trajectory, backend.max_model_len)
    trajs = [Trajectory(p, k, sample_seed(cfg.sampling.seed, p.idx, k), fmt, limits)
             for p in load_problems(cfg.data) for k in range(cfg.sampling.n)]
    with Sandbox(cfg.sandbox) as sandbox:
        tools = Tools(sandbox, len(trajs))
        active = trajs
        while active:
            calls = [(t, r) for t in active if (r := t.request(cfg.sampling)) is not None]
            start = time.perf_counter()
            done = await asyncio.gather(*(backend.complete(r) for _, r in calls))
            phases["generate"] += time.perf_counter() - start
            ran = [(t, programs) for (t, _), c in zip(calls, done, strict=True) if (programs := t.take_turn(c))]
            start = time.perf_counter()
            outputs = await asyncio.gather(*(tools.run(t.id, p) for t, p in ran))
            phases["programs"] += time.perf_counter() - start
            for (t, _), text in zip(ran, outputs, strict=True):
                t.observe(text)
            await asyncio.gather(*(tools.close(t.id) for t in active if t.done))
            active = [t for t in active if not t.done]
        tools.shutdown()
    return trajs


def cpu_seconds() -> dict[str, float]:
    """CPU time so far of this process, of vLLM's engine processes, and the machine's idle time:
    what overlapping can reclaim is only what the machine leaves idle."""
    import psutil

    def used(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system

    me = psutil.Process()
    out = {"this process": used(me), "idle": psutil.cpu_times().idle}
    for child in me.children(recursive=True):
        if child.name().startswith("VLLM::"):
            out[child.name().removeprefix("VLLM::")] = used(child)
    return out


def summary(name: str, seconds: float, trajs: list[dict]) -> dict:
    tokens = sum(t["generated_tokens"] for t in trajs)
    turns = sum(t["turns"] for t in trajs)
    print(f"{name:>8}: {len(trajs)} trajectories, {turns} turns, {tokens} tokens in {seconds:.1f} s = "
          f"{len(trajs) / seconds:.2f} traj/s, {tokens / seconds:.0f} tok/s; "
          f"{dict(Counter(t['stop_reason'] for t in trajs))}", flush=True)
    return {"seconds": seconds, "tokens": tokens, "turns": turns}


async def main_async(args) -> None:
    world = Path(args.world)
    model = Path(args.model) if args.model else tune_tiny_model(world, Path(args.work) / "tuned_model",
                                                               args.tune_steps, 0)
    work = Path(args.work)
    base = {"model": str(model), "progress": False, "max_active": args.problems * args.n,
            "data": {"path": str(world / "data" / "test.jsonl"), "name": "gsm8k", "limit": args.problems},
            "sampling": {"temperature": 1.0, "n": args.n, "seed": 0},
            "backend": {"dtype": "float32", "enforce_eager": True, "max_model_len": 2048,
                        "cpu_kvcache_space_gib": 2},
            "sandbox": {"mode": args.sandbox_mode, "workers": args.sandbox_workers or usable_cpus()}}
    backend = VLLMBackend(build(BackendConfig, base["backend"], "bench"), str(model), None,
                          load_tokenizer(build(GenerateConfig, {**base, "output": "-"}, "bench"))[0], 0)
    try:
        warm = build(GenerateConfig, {**base, "output": str(work / "warmup.jsonl"),
                                      "data": {**base["data"], "limit": 8}}, "bench")
        (work / "warmup.jsonl").unlink(missing_ok=True)
        await generate_async(warm, backend)
        slow = SlowCells(args.slow_share, args.slow_seconds)
        results, bounds = {}, []
        for rnd in range(args.rounds):
            order = ["barrier", "ours"] if rnd % 2 == 0 else ["ours", "barrier"]
            for name in order:
                await backend.engine.reset_prefix_cache()
                slow.reset()
                out = work / f"{name}.jsonl"
                out.unlink(missing_ok=True)
                cfg = build(GenerateConfig, {**base, "output": str(out)}, "bench")
                cpu = cpu_seconds()
                start = time.perf_counter()
                if name == "ours":
                    await generate_async(cfg, backend)
                    recs = list(trajectory.read(out))
                else:
                    phases = Counter()
                    recs = [t.record(cfg.model, {}, "bench") for t in await barrier(cfg, backend, phases)]
                seconds = time.perf_counter() - start
                results.setdefault(name, []).append(summary(name, seconds, recs))
                print("          CPU seconds: " + ", ".join(f"{k} {v - cpu[k]:.1f}" for k, v in cpu_seconds().items()
                                                          if k in cpu), flush=True)
                if name == "barrier":
                    g, p = phases["generate"], phases["programs"]
                    bounds.append(seconds / (seconds - min(g, p)))  # overlap hides the shorter phase at most
                    print(f"          generation {g:.1f} s, programs {p:.1f} s, the rest {seconds - g - p:.1f} s: "
                          f"overlapping the two gains {bounds[-1]:.2f}x at most", flush=True)
                results.setdefault(name + "_msgs", {}).update({r["id"]: r["messages"] for r in recs})
        same = sum(results["ours_msgs"][i] == m for i, m in results["barrier_msgs"].items())
        ratios = [b["seconds"] / o["seconds"] for b, o in zip(results["barrier"], results["ours"], strict=True)]
        print(f"identical trajectories in both runs: {same}/{len(results['barrier_msgs'])}")
        print("speed-up (barrier time / ours): " + ", ".join(f"{r:.2f}x" for r in ratios))
        print("most that overlapping programs with generation could gain: " + ", ".join(f"{b:.2f}x" for b in bounds))
    finally:
        backend.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default=os.environ.get("TINY_WORLD", str(ROOT / "runs" / "test_world")))
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench_generate"))
    ap.add_argument("--model", default=None, help="a model that writes programs (default: tune the tiny one)")
    ap.add_argument("--tune-steps", type=int, default=300)
    ap.add_argument("--problems", type=int, default=96)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="each round runs both; the order alternates")
    ap.add_argument("--sandbox-mode", default="persistent", choices=["persistent", "replay"],
                    help="replay: the reference's executor semantics (every turn re-runs earlier cells)")
    ap.add_argument("--slow-share", type=float, default=0.0,
                    help="share of program runs that also take --slow-seconds (see SlowCells)")
    ap.add_argument("--slow-seconds", type=float, default=2.0)
    ap.add_argument("--sandbox-workers", type=int, default=0,
                    help="cells running at once (default: one per core); a GPU node has ~100 cores for them")
    args = ap.parse_args()
    if args.slow_share and args.sandbox_mode == "replay":
        ap.error("--slow-share needs --sandbox-mode persistent (replay would re-run the slow cells)")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
