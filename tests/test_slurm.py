"""The SLURM templates (scripts/slurm/) on this CPU machine, with a stand-in `srun` and `scontrol`
for a one-node allocation of this host: each passes shellcheck, an M-DPO step runs through
`on_each_node.sh`, `train.sh` and `accelerate launch` (one CPU process: see CPU_ACCELERATE),
generation runs against a CPU `vllm serve` the template starts and stops, and the pipeline puts
each stage behind its prefix."""

import json
import os
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
from datasets import Dataset
from test_lora_vllm import pairs

ROOT = Path(__file__).resolve().parents[1]
SLURM = ROOT / "scripts" / "slurm"
FAKE_SRUN = """#!/usr/bin/env bash
# stand-in srun: a one-node allocation of this host; srun's own options are dropped
while [ $# -gt 0 ]; do case $1 in --*) shift ;; *) break ;; esac; done
export SLURM_NODEID=0 SLURM_PROCID=0 SLURM_LOCALID=0
exec "$@"
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
[ "$1 $2" = "show hostnames" ] && echo 127.0.0.1
"""
# The GPU launcher (torchrun) with the trainer's use_cpu=true: 2 processes, DDP over gloo. With `use_cpu:
# true` here accelerate's CPU launcher would start one process (several need mpirun).
CPU_ACCELERATE = """compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: 1
num_processes: 2
use_cpu: false
mixed_precision: 'no'
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def allocation(tmp_path) -> dict:
    """Environment of a one-node SLURM job on this host, 2 "GPUs" (processes) per node."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": "n1",
            "SLURM_SUBMIT_DIR": str(ROOT), "SLURM_CPUS_PER_TASK": "1", "GPUS_PER_NODE": "2",
            "MASTER_PORT": str(free_port()), "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_templates_pass_shellcheck():
    files = sorted(SLURM.glob("*.sh")) + sorted(SLURM.glob("*.sbatch"))
    assert {f.name for f in files} >= {"on_each_node.sh", "with_vllm_servers.sh", "sft.sbatch", "train.sbatch",
                                       "generate.sbatch", "pipeline.sbatch"}
    done = subprocess.run(["shellcheck", *map(str, files)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_on_each_node_needs_an_allocation():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = subprocess.run(["bash", str(SLURM / "on_each_node.sh"), "true"], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "srun" in done.stderr


def test_on_each_node_gives_torchrun_and_accelerate_their_ranks(allocation):
    env = {**allocation, "SLURM_NNODES": "4", "SLURM_NODEID": "2", "MASTER_PORT": "29511"}
    shown = subprocess.run(["bash", str(SLURM / "on_each_node.sh"), "bash", "-c", 'echo "$NPROC|$TORCHRUN_ARGS"'],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert shown == "2|--nnodes 4 --node_rank 2 --master_addr 127.0.0.1 --master_port 29511"
    env["LAUNCHER"] = "accelerate launch --config_file z.yaml"
    shown = subprocess.run(["bash", str(SLURM / "on_each_node.sh"), "bash", "-c", 'echo "$LAUNCHER"'],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert shown == ("accelerate launch --num_machines 4 --machine_rank 2 --num_processes 8 --main_process_ip "
                     "127.0.0.1 --main_process_port 29511 --config_file z.yaml")


@pytest.mark.slow
def test_train_template_runs_an_mdpo_step_through_accelerate(allocation, tiny_world, tmp_path):
    Dataset.from_list(pairs(tiny_world)).save_to_disk(tmp_path / "dpo")
    (tmp_path / "cpu.yaml").write_text(CPU_ACCELERATE)
    out = tmp_path / "model"
    env = {**allocation, "ALGORITHM": "mdpo", "ACCELERATE_CONFIG": str(tmp_path / "cpu.yaml")}
    done = subprocess.run(
        ["bash", str(SLURM / "train.sbatch"), "--config", "alignment_algorithms/configs/mdpo_tiny_cpu.yaml",
         f"model_name_or_path={tiny_world / 'model'}", f"dataset_path={tmp_path / 'dpo'}", f"output_dir={out}",
         "max_steps=1", "eval_strategy=no", "report_to=none", "log_level=info", "use_cpu=true"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "node 0 of 1, 2 process(es) here" in log
    record = json.loads((out / "alignment_finished.json").read_text())
    assert (record["steps"], record["processes"], record["device"]) == (1, 2, "cpu")


@pytest.mark.slow
def test_generate_template_serves_the_model_and_stops_the_server(allocation, tiny_world, tmp_path):
    port = free_port()
    env = {**allocation, "GPUS_PER_NODE": "1", "VLLM_PORT": str(port), "VLLM_CPU_KVCACHE_SPACE": "1",
           "VLLM_SERVE_ARGS": "--enforce-eager --max-model-len 2048 --no-enable-chunked-prefill",
           "SERVER_START_S": "600"}
    common = [f"model={tiny_world / 'model'}", f"data.path={tiny_world / 'data' / 'test.jsonl'}",
              "sampling.max_tokens_per_turn=32", "progress=false", "sandbox.prestarted=1", "backend.dtype=float32"]
    outs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    done = subprocess.run(
        ["bash", str(SLURM / "generate.sbatch"), "--config", "inference/configs/generate_tiny.yaml", *common,
         "data.limit=3", "sampling.n=1", f"output={outs[0]}",
         "--and", "--config", "inference/configs/generate_tiny.yaml", *common,
         "data.limit=2", "sampling.n=2", f"output={outs[1]}"],
        env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"1 server(s) up for {tiny_world / 'model'} (float32): http://127.0.0.1:{port}/v1" in done.stderr
    for out, n in zip(outs, (3, 4), strict=True):
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(records) == n and all(r["stop_reason"] != "failed" for r in records)
    with pytest.raises(OSError):  # the template stopped its server
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5)


def test_pipeline_template_puts_every_stage_behind_its_prefix(allocation, tmp_path):
    done = subprocess.run(["bash", str(SLURM / "pipeline.sbatch"), "configs/tiny_cpu.yaml", f"runs_dir={tmp_path}",
                           "--dry-run"], env=allocation, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    commands = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    every_node = "srun --ntasks-per-node=1 --cpus-per-task=1 --kill-on-bad-exit=1 bash scripts/slurm/on_each_node.sh "
    one_task = "srun --nodes=1 --ntasks=1 --cpus-per-task=1 "
    expected = {"SFT/train.sh": every_node + "bash SFT/train.sh",
                "inference/generate.sh": "bash scripts/slurm/with_vllm_servers.sh bash inference/generate.sh",
                "inference/grade.sh": one_task + "bash inference/grade.sh",
                "inference/pairs.sh": one_task + "bash inference/pairs.sh",
                "alignment_algorithms/train.sh": "LAUNCHER='accelerate launch --config_file alignment_algorithms/"
                                                 "accelerate/zero3_multinode.yaml' " + every_node
                                                 + "bash alignment_algorithms/train.sh mdpo"}
    seen = set()
    for line in commands:
        for marker, start in expected.items():
            if marker in line:
                assert line.startswith(start), line
                seen.add(marker)
    assert seen == set(expected)
