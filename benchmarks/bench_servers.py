"""Generation throughput over one vs two `vllm serve` servers (the `openai` backend spreading
trajectories by least outstanding requests), same workload, same process run.

Two CPU servers of the same model start once, each pinned to its own core
(VLLM_CPU_OMP_THREADS_BIND), so one server has one core of compute and two have two; the
generator and its sandbox share those cores with them. Each run clears both servers' prefix
caches first; the runs alternate (one server, two servers, ...). The model is bench_generate.py's
tuned tiny model (it writes programs), cached under --work.

    .venv-inference/bin/python benchmarks/bench_servers.py --problems 48 --n 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench_generate import ROOT, summary, tune_tiny_model

from formats import trajectory
from formats.config import build
from inference.generate import GenerateConfig, generate_async


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, core: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": str(core),
           "VLLM_SERVER_DEV_MODE": "1"}  # dev mode: POST /reset_prefix_cache
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--enforce-eager", "--dtype", "float32", "--max-model-len", "2048", "--seed", "0",
         "--no-enable-chunked-prefill"],
        env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + 600
    while True:
        if proc.poll() is not None:
            sys.exit(f"vllm serve exited:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{url}/v1/models", timeout=5)
            return
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"vllm serve at {url} did not start in 600 s")
            time.sleep(2)


async def main_async(args) -> None:
    world, work = Path(args.world), Path(args.work)
    model = Path(args.model) if args.model else tune_tiny_model(world, work / "tuned_model", args.tune_steps, 0)
    servers = [start_server(model, core, work / f"server{core}.log") for core in range(2)]
    try:
        for (proc, url), core in zip(servers, range(2), strict=True):
            wait_ready(proc, url, work / f"server{core}.log")
        urls = [url for _, url in servers]
        base = {"model": str(model), "progress": False, "max_active": args.problems * args.n,
                "data": {"path": str(world / "data" / "test.jsonl"), "name": "gsm8k", "limit": args.problems},
                "sampling": {"temperature": 1.0, "n": args.n, "seed": 0},
                "sandbox": {"workers": 2}}
        results: dict[str, list[dict]] = {}
        for rnd in range(args.rounds):
            for name, used in (("1 server", urls[:1]), ("2 servers", urls)):
                for url in urls:
                    urllib.request.urlopen(urllib.request.Request(f"{url}/reset_prefix_cache", method="POST"))
                out = work / f"servers_{len(used)}.jsonl"
                out.unlink(missing_ok=True)
                backend = {"kind": "openai", "base_urls": [f"{u}/v1" for u in used]}
                cfg = build(GenerateConfig, {**base, "backend": backend, "output": str(out)}, "bench")
                start = time.perf_counter()
                await generate_async(cfg)
                seconds = time.perf_counter() - start
                results.setdefault(name, []).append(summary(name, seconds, list(trajectory.read(out))))
            print(f"round {rnd + 1}: two servers / one server throughput = "
                  f"{results['1 server'][-1]['seconds'] / results['2 servers'][-1]['seconds']:.2f}x", flush=True)
        load = os.getloadavg()
        print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    finally:
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            proc.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default=os.environ.get("TINY_WORLD", str(ROOT / "runs" / "test_world")))
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench_generate"))
    ap.add_argument("--model", default=None, help="a model that writes programs (default: tune the tiny one)")
    ap.add_argument("--tune-steps", type=int, default=300)
    ap.add_argument("--problems", type=int, default=48)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
