"""What the multi-turn loop costs over plain vLLM: generated tokens per second of
`inference.generate` (turns, stop strings, the sandbox between turns, re-rendering and
re-tokenising each prompt) against `vllm.LLM.generate` producing the same number of tokens in
single-turn requests, same engine settings, one process run.

Ours first runs the workload (a real model, e.g. SmolLM2-135M-Instruct after its SFT, on GSM8K
test problems, T=1, H=6); then the baseline sends, for each of its trajectories, one request with
the trajectory's first prompt and max_tokens = the tokens that trajectory generated over all its
turns (ignore_eos), all at once: the same tokens to decode, none of the loop's work. Each round
runs a new seed; prefix caches are cleared before each run; both engines are started outside
the clock. The loop's run also reports where its time went: programs in the sandbox, prompt
rendering and tokenisation (on the event loop), and the number of engine requests (turns).

    .venv-inference/bin/python benchmarks/bench_loop_overhead.py --model runs/smollm2_cpu/sft/model
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter
from pathlib import Path

from formats import trajectory
from formats.config import build
from inference.backends import BackendConfig, VLLMBackend
from inference.generate import GenerateConfig, Tools, generate_async, load_tokenizer
from inference.prompts import PromptFormat

ROOT = Path(__file__).resolve().parents[1]


class Profile:
    """Wall seconds inside the sandbox calls (summed over trajectories) and inside prompt
    rendering and tokenisation, by wrapping those functions for the loop's runs."""

    def __init__(self):
        self.seconds: Counter = Counter()
        for owner, name in ((Tools, "_run"), (PromptFormat, "encode"), (PromptFormat, "next_prompt")):
            self._wrap(owner, name)

    def _wrap(self, owner, name: str) -> None:
        inner = getattr(owner, name)
        seconds = self.seconds

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                seconds[f"{owner.__name__}.{name}"] += time.perf_counter() - start

        setattr(owner, name, timed)


def engine_kwargs(cfg: BackendConfig, model: str, seed: int) -> dict:
    """The engine settings VLLMBackend uses, for vllm.LLM."""
    kwargs = {"model": model, "seed": seed, "dtype": cfg.dtype, "enforce_eager": cfg.enforce_eager,
              "max_model_len": cfg.max_model_len, "enable_prefix_caching": cfg.enable_prefix_caching,
              "disable_log_stats": True}
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        kwargs["enable_chunked_prefill"] = False  # as VLLMBackend on CPU
    return kwargs


def plain(llm, recs: list[dict], tokenizer, fmt_name: str, temperature: float) -> tuple[float, int]:
    """The baseline: one single-turn request per trajectory, the same number of tokens each."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from inference.prompts import make_format

    fmt = make_format(fmt_name, tokenizer)
    prompts = [TokensPrompt(prompt_token_ids=fmt.encode(fmt.render(r["messages"][:1]))) for r in recs]
    params = [SamplingParams(temperature=temperature, max_tokens=max(1, r["generated_tokens"]), ignore_eos=True,
                             seed=r["seed"]) for r in recs]
    llm.reset_prefix_cache()
    start = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - start
    return seconds, sum(len(o.outputs[0].token_ids) for o in outs)


async def main_async(args) -> None:
    from vllm import LLM

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base = {"model": args.model, "progress": False, "max_active": args.problems * args.n,
            "data": {"path": args.data, "name": "gsm8k", "limit": args.problems},
            "sampling": {"temperature": 1.0, "n": args.n, "seed": 0},
            "backend": {"dtype": "float32", "enforce_eager": True, "max_model_len": 2048, "cpu_kvcache_space_gib": 2}}
    cfg0 = build(GenerateConfig, {**base, "output": "-"}, "bench")
    tokenizer = load_tokenizer(cfg0)[0]
    backend = VLLMBackend(cfg0.backend, args.model, None, tokenizer, 0)
    llm = LLM(**engine_kwargs(cfg0.backend, args.model, 0))
    profile = Profile()
    rows = []
    try:
        warm = work / "warmup.jsonl"
        warm.unlink(missing_ok=True)
        await generate_async(build(GenerateConfig, {**base, "output": str(warm), "data": {**base["data"], "limit": 4}},
                                   "bench"), backend)
        for rnd in range(args.rounds):
            out = work / f"loop{rnd}.jsonl"
            out.unlink(missing_ok=True)
            cfg = build(GenerateConfig, {**base, "output": str(out), "sampling": {**base["sampling"], "seed": rnd}},
                        "bench")
            await backend.engine.reset_prefix_cache()
            profile.seconds.clear()
            start = time.perf_counter()
            await generate_async(cfg, backend)
            seconds_loop = time.perf_counter() - start
            recs = list(trajectory.read(out))
            prof = dict(profile.seconds)
            seconds_plain, tokens_plain = plain(llm, recs, tokenizer, cfg.prompt_format, 1.0)
            tokens = sum(r["generated_tokens"] for r in recs)
            turns = sum(r["turns"] for r in recs)
            row = {"recs": recs, "loop_tok_s": tokens / seconds_loop, "plain_tok_s": tokens_plain / seconds_plain}
            rows.append(row)
            print(f"round {rnd + 1}: loop {len(recs)} trajectories, {turns} turns, {tokens} tokens in "
                  f"{seconds_loop:.1f} s = {row['loop_tok_s']:.0f} tok/s; plain vLLM {tokens_plain} tokens in "
                  f"{seconds_plain:.1f} s = {row['plain_tok_s']:.0f} tok/s; ratio "
                  f"{row['loop_tok_s'] / row['plain_tok_s']:.2f}; stop reasons "
                  f"{dict(Counter(r['stop_reason'] for r in recs))}", flush=True)
            print("          loop profile (wall s): sandbox calls (summed over trajectories) "
                  f"{prof.get('Tools._run', 0):.1f}, "
                  f"prompt re-rendering {prof.get('PromptFormat.next_prompt', 0):.2f}, "
                  f"tokenisation {prof.get('PromptFormat.encode', 0):.2f}", flush=True)
        ratios = [r["loop_tok_s"] / r["plain_tok_s"] for r in rows]
        print("loop / plain vLLM tokens per second: " + ", ".join(f"{r:.2f}" for r in ratios))
    finally:
        backend.close()
        del llm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a model that writes programs (e.g. runs/smollm2_cpu/sft/model)")
    ap.add_argument("--data", default=str(ROOT / "inference" / "data" / "gsm8k" / "test.jsonl"))
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench_loop_overhead"))
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
