"""Sandbox throughput: ours (isolated, pre-warmed workers) vs the official executor's strategy.

    .venv-inference/bin/python benchmarks/bench_sandbox.py            # both workloads, 2 cores

(a) 1000 single-cell trajectories; (b) 200 trajectories of 4 cells driven turn by turn (all
trajectories' turn 1, then all turn 2, ...), as generation drives them. The baseline re-implements
the official strategy (SPEC 2.1): a new process pool per batch, and every execution builds a fresh
IPython shell and re-runs all earlier cells of its trajectory, with no isolation. To be fair to it,
its parent has IPython and sympy imported before it forks (the official wrapper imports them in
every fresh pool worker). Both sides' observations are compared, so the speed-up is for the same
answers. Prints executions per second for each side and the ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from inference.sandbox import Sandbox, SandboxConfig


def trajectory(i: int, turns: int) -> list[str]:
    """Cells typical of the model's code: arithmetic, fractions, sympy, state across turns."""
    cells = [f"a = {i}\nb = a * 3 + 1\nprint(b)",
             "from sympy import Rational\nc = Rational(b, 7) + Rational(1, 3)\nc",
             "total = sum(k * k for k in range(100))\nprint(total + a)",
             "import math\nresult = math.comb(10, 3) + b\nprint(f'answer: {result}')"]
    return cells[:turns]


# -- the official strategy ------------------------------------------------------------------------
def _official_execute(cells: list[str]) -> str:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils import io

    main_module = sys.modules["__main__"]  # a shell replaces it; the pool must find this function
    try:
        shell = InteractiveShell()
        for cell in cells:
            with io.capture_output() as captured:
                result = shell.run_cell(cell)
    finally:
        sys.modules["__main__"] = main_module
    output = (captured.stdout + captured.stderr).strip().replace("Out[0]: ", "").replace("Out[1]: ", "")
    if result.error_in_exec or result.error_before_exec:
        return output.split("\n\n")[-1]
    return output or "Result is not defined"


def official_batch(batch: list[list[str]], cores: int, timeout_s: float = 20.0) -> list[str]:
    with ProcessPoolExecutor(max_workers=min(len(batch), cores), mp_context=get_context("fork")) as pool:
        futures = [pool.submit(_official_execute, cells) for cells in batch]
        return [f.result(timeout=timeout_s) for f in futures]


def run_official(n: int, turns: int, cores: int) -> tuple[float, list[list[str]]]:
    import IPython.core.interactiveshell  # noqa: F401  (fork from a warm parent: favours the baseline)
    import sympy  # noqa: F401

    observations: list[list[str]] = [[] for _ in range(n)]
    start = time.perf_counter()
    for turn in tqdm(range(1, turns + 1), desc="official", leave=False):
        results = official_batch([trajectory(i, turn) for i in range(n)], cores)
        for i, text in enumerate(results):
            observations[i].append(text)
    return time.perf_counter() - start, observations


def tree_cpu_s(root: int) -> float:
    """CPU seconds used by a process tree so far, reaped descendants included."""
    tick, total, todo = os.sysconf("SC_CLK_TCK"), 0, [root]
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            todo += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def own_cpu_s() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


# -- ours -----------------------------------------------------------------------------------------
def run_ours(sandbox: Sandbox, n: int, turns: int, threads: int) -> tuple[float, list[list[str]]]:
    observations: list[list[str]] = [[] for _ in range(n)]
    start = time.perf_counter()
    sessions = [sandbox.session() for _ in range(n)]
    with ThreadPoolExecutor(threads) as pool:
        for turn in tqdm(range(turns), desc="ours", leave=False):
            cells = [trajectory(i, turn + 1)[-1] for i in range(n)]
            for i, obs in enumerate(pool.map(lambda s, c: s.run(c), sessions, cells)):
                observations[i].append(obs.text)
        list(pool.map(lambda s: s.close(), sessions))
    return time.perf_counter() - start, observations


def measure_ours(cfg: SandboxConfig, n: int, turns: int, threads: int,
                 prestart: bool) -> tuple[float, float, list[list[str]]]:
    """(seconds, CPU seconds per execution, observations). The clock starts once the sandbox is up
    with its standing stock ready; with `prestart`, also one worker per trajectory, forked,
    isolated and warmed before the clock (as while the model generates the first turn)."""
    with Sandbox(cfg) as sandbox:
        if prestart:
            sandbox.prestart(n)
        if not sandbox.wait_stocked():
            raise RuntimeError("the sandbox's stock did not fill")
        cpu = own_cpu_s() + tree_cpu_s(sandbox.pid)
        seconds, observations = run_ours(sandbox, n, turns, threads)
        cpu = own_cpu_s() + tree_cpu_s(sandbox.pid) - cpu
    return seconds, cpu / (n * turns), observations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", type=int, default=2, help="CPUs to pin this run to (the issue: 2)")
    ap.add_argument("--single", type=int, default=1000, help="trajectories in workload (a)")
    ap.add_argument("--multi", type=int, default=200, help="trajectories in workload (b)")
    ap.add_argument("--turns", type=int, default=4, help="cells per trajectory in workload (b)")
    ap.add_argument("--threads", type=int, default=32, help="threads driving our sessions")
    ap.add_argument("--mode", default="persistent", choices=["persistent", "replay"])
    ap.add_argument("--workers", type=int, default=8, help="cells executing at once (SandboxConfig.workers)")
    ap.add_argument("--max-prestart", type=int, default=1000,
                    help="largest batch to prestart a worker per trajectory for (memory: ~5 MB each)")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))[: args.cores]
    os.sched_setaffinity(0, cpus)
    print(f"pinned to CPUs {cpus}; mode={args.mode}; workers={args.workers}")

    for name, n, turns in (("(a) single-cell", args.single, 1), ("(b) turn by turn", args.multi, args.turns)):
        cpu = own_cpu_s()
        base_s, base_obs = run_official(n, turns, args.cores)
        base_cpu = (own_cpu_s() - cpu) / (n * turns)
        base_rate = n * turns / base_s
        print(f"{name}: {n} x {turns} executions\n"
              f"  official strategy         {base_rate:7.1f}/s ({base_s:6.2f} s; {1e3 * base_cpu:5.2f} ms CPU each)")
        # Prestarting a whole batch holds one idle worker per trajectory (about 5 MB each).
        for prestart in (False, True) if n <= args.max_prestart else (False,):
            cfg = SandboxConfig(mode=args.mode, workers=args.workers)
            ours_s, ours_cpu, ours_obs = measure_ours(cfg, n, turns, args.threads, prestart)
            mismatches = sum(a != b for a, b in zip(ours_obs, base_obs, strict=True))
            ours_rate = n * turns / ours_s
            label = "ours, workers prestarted" if prestart else "ours, workers on demand "
            print(f"  {label} {ours_rate:7.1f}/s ({ours_s:6.2f} s; {1e3 * ours_cpu:5.2f} ms CPU each) | "
                  f"ratio {ours_rate / base_rate:.1f}x (CPU: {base_cpu / ours_cpu:.1f}x) | "
                  f"trajectories with other observations: {mismatches}")


if __name__ == "__main__":
    main()
