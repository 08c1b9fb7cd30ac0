"""How many CPUs this process may use: what worker and thread counts are sized by.

`os.cpu_count()` is the machine's total. Under a scheduler or in a container the process gets
fewer: a CPU set (taskset, cgroup cpuset, SLURM's binding), a SLURM grant (SLURM_CPUS_PER_TASK),
or a cgroup v2 CPU quota (`docker --cpus`, Kubernetes limits). The smallest of these counts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _quota(path: Path = CGROUP_CPU_MAX) -> int | None:
    """cgroup v2 `cpu.max`: "<quota> <period>" in microseconds, or "max <period>" for none."""
    try:
        quota, period = path.read_text().split()
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    counts = [len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1]
    granted = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if granted.isdigit() and int(granted) > 0:
        counts.append(int(granted))
    if (quota := _quota()) is not None:
        counts.append(quota)
    return max(1, min(counts))
