"""Worker counts follow the CPUs this process may use, not the machine's total."""

import os
import subprocess
import sys

from inference.cpus import _quota, usable_cpus

COUNT = "from inference.cpus import usable_cpus; print(usable_cpus())"


def run(env: dict, pin: set[int] | None = None) -> int:
    def pin_it() -> None:
        if pin is not None:
            os.sched_setaffinity(0, pin)

    env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    out = subprocess.run([sys.executable, "-c", COUNT], env=env, preexec_fn=pin_it, capture_output=True,
                         text=True, check=True)
    return int(out.stdout)


def test_affinity_and_slurm_grant_bound_the_count():
    everything = len(os.sched_getaffinity(0))
    assert usable_cpus() <= everything
    assert run({"SLURM_CPUS_PER_TASK": None}, pin={min(os.sched_getaffinity(0))}) == 1  # taskset / cpuset
    assert run({"SLURM_CPUS_PER_TASK": "1"}) == 1  # srun --cpus-per-task=1
    assert run({"SLURM_CPUS_PER_TASK": "999"}) == run({"SLURM_CPUS_PER_TASK": None})  # a grant adds no CPUs


def test_cgroup_quota(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")  # docker --cpus=1.5
    assert _quota(cpu_max) == 2
    cpu_max.write_text("max 100000\n")
    assert _quota(cpu_max) is None
    assert _quota(tmp_path / "missing") is None


def test_pools_default_to_usable_cpus(monkeypatch):
    from inference.grading.pool import GradingPool
    from inference.sandbox import SandboxConfig

    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert SandboxConfig().workers == 1
    pool = GradingPool()
    assert pool.n_workers == 1
    pool.close()
