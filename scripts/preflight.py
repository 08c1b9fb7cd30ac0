"""Check, in about a minute and before any long stage, everything a pipeline run will need.

    bash scripts/preflight.sh CONFIG [key=value ...]

A checklist: GPUs visible against the config's vLLM data/tensor parallel sizes and process counts;
each stage environment importing its packages (with CUDA on a GPU config); Hub access to every
model and data set the config names (token present, gated models accepted) and each data set's
columns; free disk against an estimate of what the run writes; reporting that never prompts; free
ports for the distributed launchers. Exit 1 with each failing item and its fix. The config is loaded
exactly as scripts/pipeline.py loads it. run_iterative.sh runs this first (`--skip-preflight` skips).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import pipeline  # noqa: E402
import yaml  # noqa: E402

GB = 1e9
# Parameter counts (safetensors metadata on the models' Hub pages); other names: the "<N>b" in the name.
PARAMS = {"codegemma": 8.54e9, "gemma-2-9b": 9.24e9, "gemma-1.1-7b": 8.54e9, "gemma-7b": 8.54e9,
          "mistral-7b": 7.25e9}
PAPER_PROMPTS_PER_ITERATION = 20_000  # paper: 60K prompts in 3 disjoint sets (FIELD.md, Recipe)
PAIRS_PER_PROMPT = 0.75  # paper: 92.5% of prompts covered at N=30, then filters; 15-20K samples per iteration
TRAJECTORY_BYTES = 4_000  # one generated trajectory as JSONL with its scores, about 2048 tokens at most


@dataclass
class Item:
    name: str
    ok: bool | None  # None: a warning, not a failure
    detail: str
    fix: str = ""


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


# --- what the config asks for --------------------------------------------------------------------------
def stage_yaml(path: str, overrides: list[str]) -> dict:
    """A stage config with its `key=value` overrides (top level and dotted), as far as preflight needs."""
    file = ROOT / path
    data = yaml.safe_load(file.read_text(encoding="utf-8")) if file.is_file() else {}
    data = data or {}
    for item in overrides:
        key, sep, raw = item.lstrip("-").partition("=")
        if not sep:
            continue
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[last] = yaml.safe_load(raw)
    return data


def train_overrides(cfg) -> list[str]:
    """The training overrides as key=value (the pipeline also accepts `--key value` pairs)."""
    out, words = [], list(cfg.train.overrides)
    while words:
        word = words.pop(0)
        if word.startswith("--") and "=" not in word and words:
            out.append(f"{word[2:]}={words.pop(0)}")
        else:
            out.append(word.lstrip("-"))
    return out


def accelerate_config(cfg) -> dict:
    launcher = cfg.train.launcher
    if "--config_file" in launcher and launcher.index("--config_file") + 1 < len(launcher):
        return stage_yaml(launcher[launcher.index("--config_file") + 1], [])
    return {}


def engines(cfg) -> list[dict]:
    """The backend section of every generation run (sampling and evaluation)."""
    return [stage_yaml(c, o).get("backend") or {} for c, o in
            ((cfg.generate.config, cfg.generate.overrides), (cfg.evaluate.config, cfg.evaluate.overrides))]


def trains_sft(cfg) -> bool:
    return not cfg.sft.model


def gpu_needs(cfg, cpu_bf16: bool = False) -> tuple[int, list[str]]:
    """GPUs the run needs (0: it runs on CPU) and why. `cpu_bf16`: bf16 training runs on this CPU (a
    rehearsal keeps a config's bf16 where the CPU has it natively, scripts/rehearsal.py; its SFT is
    always float32), so bf16 alone needs no GPU; fp16 and flash attention always do."""
    reasons, need = [], 0
    for b in engines(cfg):
        if b.get("kind", "vllm") == "vllm" and not cfg.rehearse:  # a rehearsal's engines: vLLM's CPU build
            n = int(b.get("data_parallel_size", 1)) * int(b.get("tensor_parallel_size", 1))
            if n > 1 and n > need:
                reasons.append(f"vLLM data parallel {b.get('data_parallel_size', 1)} x tensor parallel "
                               f"{b.get('tensor_parallel_size', 1)}")
                need = max(need, n)
    acc = accelerate_config(cfg)
    train = stage_yaml(cfg.train.config, train_overrides(cfg))
    if acc and not acc.get("use_cpu", False) and not train.get("use_cpu"):  # the trainer's use_cpu: CPU processes
        n = int(acc.get("num_processes", 1)) // max(1, int(acc.get("num_machines", 1)))
        reasons.append(f"accelerate {acc.get('num_processes', 1)} processes over {acc.get('num_machines', 1)} node(s)")
        need = max(need, n)
    if train.get("fp16") or (train.get("bf16") and not cpu_bf16):
        reasons.append("training in bf16/fp16 mixed precision")
        need = max(need, 1)
    if trains_sft(cfg):
        sft = stage_yaml(cfg.sft.config, cfg.sft.overrides)
        if sft.get("bf16") not in (False, None) or sft.get("fp16") or \
                str(sft.get("attn_implementation", "")).startswith("flash"):
            reasons.append("SFT in bf16 / flash attention")
            need = max(need, 1)
    return need, reasons


def visible_gpus() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    n = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU")) if out.returncode == 0 else 0
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask is not None:
        n = min(n, len([d for d in mask.split(",") if d.strip() and d.strip() != "-1"]))
    return n


# --- checks --------------------------------------------------------------------------------------------
def check_gpus(cfg, need: int, reasons: list[str]) -> list[Item]:
    have = visible_gpus()
    if need == 0:
        return [Item("GPUs", True, f"none needed (CPU run); {have} visible")]
    items = [Item("GPUs", have >= need, f"{have} visible, {need} needed ({'; '.join(reasons)})",
                  "run on a node with that many GPUs (check CUDA_VISIBLE_DEVICES and `nvidia-smi`), or lower "
                  "backend.data_parallel_size / the accelerate config's num_processes")]
    if trains_sft(cfg) and have:
        sft = stage_yaml(cfg.sft.config, cfg.sft.overrides)
        nproc = int(os.environ.get("NPROC", have))
        batch = int(sft.get("micro_batch_size", 1)) * int(sft.get("gradient_accumulation_steps", 1)) * nproc
        items.append(Item("SFT processes", True if batch == 64 or "tiny" in cfg.sft.config else None,
                          f"{nproc} (one per GPU): global batch {batch} (paper: 64)",
                          "set gradient_accumulation_steps in sft.overrides so that micro x accumulation x GPUs = 64"))
    return items


def check_envs(cfg, need: int, have: int) -> list[Item]:
    """Real imports (and CUDA) on a GPU node; where no GPU is visible, only that the packages are there."""
    sft = stage_yaml(cfg.sft.config, cfg.sft.overrides)
    flash = trains_sft(cfg) and sft.get("attn_implementation") == "flash_attention_2"
    stages = ["inference", "alignment"] + (["sft"] if trains_sft(cfg) else [])
    procs = {}
    for stage in stages:
        python = pipeline.VENV[stage] / "bin" / "python"
        if not python.exists():
            continue
        args = [str(python), str(ROOT / "scripts" / "check_env.py"), stage]
        args += ["--gpus", str(need)] if need and have else ["--find-only"]
        if stage == "sft" and flash:
            args.append("--flash-attn")
        procs[stage] = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    items = []
    for stage in stages:
        name = f"environment .venv-{stage}"
        if stage not in procs:
            items.append(Item(name, False, "missing", f"bash scripts/setup_envs.sh {stage}"))
            continue
        try:
            out, _ = procs[stage].communicate(timeout=240)
        except subprocess.TimeoutExpired:
            procs[stage].kill()
            out = "the import check did not finish in 240 s"
        what = ("imports its packages" + f", torch sees {need} GPU(s)" if need and have else
                "packages installed" + ("; imports and CUDA not checked: no GPU visible" if need else " (CPU run)"))
        problems = "; ".join(line for line in out.splitlines() if line.startswith(".venv-")) or out.strip()
        ok = procs[stage].returncode == 0
        items.append(Item(name, ok, what if ok else problems,
                          "" if ok else "see the message; scripts/setup_envs.sh installs and checks each environment"))
    return items


def local_path(cfg, value: str) -> Path | None:
    """A config value as a local path (None: a Hub id, or written by the run itself)."""
    if "{world}" in value or value.startswith("{run"):
        return None
    p = Path(value)
    p = p if p.is_absolute() else ROOT / p
    return None if pipeline.is_hub_id(value) else p


def named_repos(cfg) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, str]]]:
    """(models, data sets) the run takes from the Hub: (what, id) and (what, id, data name, split)."""
    models, data = [], []

    if trains_sft(cfg):
        if pipeline.is_hub_id(cfg.sft.base_model):
            models.append(("sft.base_model", cfg.sft.base_model))
        if pipeline.is_hub_id(cfg.sft.data):
            data.append(("sft.data", cfg.sft.data, "sft", "train"))
    for key in ("model", "mixture_model"):
        value = getattr(cfg.sft, key, "")
        if pipeline.is_hub_id(value):
            models.append((f"sft.{key}", value))
    for i, p in enumerate(cfg.prompts):
        if pipeline.is_hub_id(p):
            data.append((f"prompts.{i}", p, cfg.prompts_data_name, cfg.prompts_split))
    for s in cfg.evaluate.sets:
        if pipeline.is_hub_id(s.path):
            data.append((f"evaluate.sets.{s.name}", s.path, s.data_name, s.split))
    return models, data


def expected_columns(data_name: str) -> list[set[str]]:
    """Column sets any one of which the stage reading this data name accepts (inference/grading/extract.py)."""
    if data_name == "sft":
        return [{"messages"}]
    if data_name in ("math", "ocw"):
        return [{"problem", "solution"}]
    if data_name == "gsm8k":
        return [{"question", "answer"}]
    return [{q, "gt"} for q in ("question", "problem", "input")]


def check_local_data(cfg) -> list[Item]:
    from inference.problems import DataConfig, DataError, load_problems

    items = []
    sources = [(f"prompts.{i}", p, cfg.prompts_data_name) for i, p in enumerate(cfg.prompts)]
    sources += [(f"evaluate.sets.{s.name}", s.path, s.data_name) for s in cfg.evaluate.sets]
    for what, value, data_name in sources:
        path = local_path(cfg, value)
        if path is None:
            continue
        if not path.is_file():
            items.append(Item(f"data {what}", False, f"{value}: no such file", "fix the path in the config"))
            continue
        try:
            n = len(load_problems(DataConfig(path=str(path), name=data_name)))
            items.append(Item(f"data {what}", n > 0, f"{value}: {n} problems ({data_name})",
                              "the file has no rows"))
        except DataError as exc:
            items.append(Item(f"data {what}", False, str(exc), f"rows of data name {data_name} need "
                              f"{' or '.join('+'.join(sorted(c)) for c in expected_columns(data_name))}"))
    return items


def hub_columns(api, repo: str, split: str) -> set[str] | None:
    """The data set's columns from its card (dataset_info features), or the datasets-server's first rows."""
    info = api.dataset_info(repo, timeout=20)
    card = (info.card_data or {}).get("dataset_info") if info.card_data else None
    for entry in card if isinstance(card, list) else [card] if card else []:
        if entry.get("features"):
            return {f["name"] for f in entry["features"]}
    import requests
    from huggingface_hub import get_token

    token = get_token()
    r = requests.get("https://datasets-server.huggingface.co/first-rows",
                     params={"dataset": repo, "config": "default", "split": split},
                     headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=20)
    if r.ok:
        return {f["name"] for f in r.json().get("features", [])}
    return None


def check_hub(cfg) -> list[Item]:
    models, data = named_repos(cfg)
    if not models and not data:
        return [Item("Hugging Face Hub", True, "the config names no Hub model or data set")]
    names = ", ".join(r[1] for r in [*models, *data])
    if truthy(os.environ.get("HF_HUB_OFFLINE")):
        return [Item("Hugging Face Hub", False, f"HF_HUB_OFFLINE is set; the config names Hub repositories: {names}",
                     "unset HF_HUB_OFFLINE on a node with network, or download them first and name the local folders")]
    from huggingface_hub import HfApi, auth_check, get_token
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    items = [Item("Hub token", get_token() is not None, "present" if get_token() else "none found",
                  "`hf auth login` (or export HF_TOKEN=hf_...) with an account that accepted the gated models' "
                  "licences (Gemma: https://huggingface.co/google/gemma-1.1-7b-it)")]
    api = HfApi()

    def probe(kind: str, what: str, repo: str, data_name: str = "", split: str = "") -> Item:
        url = f"https://huggingface.co/{'datasets/' if kind == 'dataset' else ''}{repo}"
        try:
            auth_check(repo, repo_type=kind)
            if kind == "model":
                api.model_info(repo, timeout=20)
                return Item(f"Hub {what}", True, f"{repo}: accessible")
            columns = hub_columns(api, repo, split)
        except GatedRepoError:
            return Item(f"Hub {what}", False, f"{repo}: gated, and this token has no access",
                        f"accept the licence at {url} (same account as the token), then re-run")
        except RepositoryNotFoundError:
            return Item(f"Hub {what}", False, f"{repo}: not found (or private and the token cannot see it)",
                        f"check the id at {url}")
        except HfHubHTTPError as exc:
            return Item(f"Hub {what}", False, f"{repo}: {exc}".splitlines()[0], "check the token (`hf auth whoami`)")
        except Exception as exc:  # connection errors come in many types (requests, httpx, OSError)
            return Item(f"Hub {what}", False, f"{repo}: cannot reach the Hub ({type(exc).__name__}: "
                        f"{str(exc)[:160]})", "check the network / proxy (HF_ENDPOINT, HTTPS_PROXY) to huggingface.co")
        if columns is None:
            return Item(f"Hub {what}", None, f"{repo}: accessible; columns not published, not checked")
        wanted = expected_columns(data_name)
        ok = any(c <= columns for c in wanted)
        return Item(f"Hub {what}", ok, f"{repo}: columns {sorted(columns)}",
                    f"rows for data name {data_name!r} need {' or '.join('+'.join(sorted(c)) for c in wanted)}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(probe, "model", w, r) for w, r in models]
        jobs += [pool.submit(probe, "dataset", w, r, n, s) for w, r, n, s in data]
        items += [j.result() for j in jobs]
    return items


def model_params(cfg, model: str) -> float:
    """Parameters of the base model: a local folder's weights, else known counts, else '<N>b' in the name."""
    path = local_path(cfg, model)
    if path is None and model.startswith("{runs}/"):  # another run's model (an SFT model): measured once written
        path = ROOT / cfg.runs_dir / model.removeprefix("{runs}/")
    if path is not None and path.is_dir():
        config = json.loads((path / "config.json").read_text()) if (path / "config.json").exists() else {}
        width = 4 if str(config.get("torch_dtype", config.get("dtype", "float32"))) == "float32" else 2
        return sum(f.stat().st_size for f in path.glob("*.safetensors")) / width
    name = model.lower()
    for key, n in PARAMS.items():
        if key in name:
            return n
    m = re.search(r"(\d+(?:\.\d+)?)b\b", name)
    return float(m.group(1)) * 1e9 if m else 0.0


def prompts_per_iteration(cfg) -> int:
    if cfg.prompts_per_iteration > 0:
        return cfg.prompts_per_iteration
    path = local_path(cfg, cfg.prompts[0]) if cfg.prompts else None
    if path is not None and path.is_file():
        with open(path) as fh:
            rows = sum(1 for line in fh if line.strip())
        return rows if len(cfg.prompts) == cfg.iterations else rows // cfg.iterations
    return PAPER_PROMPTS_PER_ITERATION


def disk_estimate(cfg) -> list[tuple[str, float]]:
    """(what, bytes) the run writes at its peak, from the model size and the configs' save settings."""
    base = cfg.sft.base_model if trains_sft(cfg) else cfg.sft.model
    p = model_params(cfg, base)
    weights = 2 * p  # bf16 safetensors (the tiny world: float32, counted from its files)
    parts = []
    if trains_sft(cfg):
        sft = stage_yaml(cfg.sft.config, cfg.sft.overrides)
        saves = int(sft.get("saves_per_epoch") or 0) * int(sft.get("num_epochs", 1))
        kept = min(saves, int(sft.get("save_total_limit") or saves)) if saves else int(sft.get("save_total_limit") or 1)
        optimizer = 0 if sft.get("save_only_model") else (12 * p if sft.get("deepspeed") else 8 * p)
        # SFT/plugin.py: the optimizer state only in the newest checkpoint
        pruned = "SFT.plugin.KeepResumeStateInNewestCheckpoint" in (sft.get("plugins") or [])
        with_state = min(kept, 1) if pruned else kept
        parts.append((f"SFT: {kept} checkpoint(s) of weights, {with_state} with optimizer state, and the final model",
                      kept * weights + with_state * optimizer + weights))
    train = stage_yaml(cfg.train.config, train_overrides(cfg))
    acc = accelerate_config(cfg)
    batch = int(train.get("per_device_train_batch_size", 1)) * int(train.get("gradient_accumulation_steps", 1)) * \
        max(1, int(acc.get("num_processes", 1)))
    prompts = prompts_per_iteration(cfg)
    steps = max(1, int(prompts * PAIRS_PER_PROMPT) // batch)
    every = int(train.get("save_steps", steps)) if train.get("save_strategy", "steps") == "steps" else steps
    checkpoints = max(1, steps // max(1, every))
    optimizer = 0 if train.get("save_only_model") else 12 * p  # DeepSpeed: fp32 master weights + Adam moments
    kept_models = cfg.iterations * (checkpoints if getattr(cfg, "keep_checkpoints", False) else 1)
    parts.append((f"training: {cfg.iterations} selected model(s) kept"
                  + (" with every checkpoint" if getattr(cfg, "keep_checkpoints", False) else ""),
                  kept_models * weights))
    parts.append((f"training, peak of one iteration: ~{checkpoints} checkpoint(s) of weights (~{steps} steps, "
                  f"save every {every}) + the newest optimizer state", checkpoints * weights + optimizer))
    samples = cfg.generate.samples_current + cfg.generate.samples_previous
    parts.append((f"trajectories: {cfg.iterations} x {prompts} prompts x {samples} samples",
                  cfg.iterations * prompts * samples * TRAJECTORY_BYTES))
    return parts


def check_disk(cfg) -> list[Item]:
    parts = disk_estimate(cfg)
    need = sum(b for _, b in parts)
    where = ROOT / cfg.runs_dir / cfg.name
    probe = where
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    detail = f"{free / GB:.0f} GB free at {probe}, the run writes up to ~{need / GB:.0f} GB (estimate: " + \
        "; ".join(f"{w} {b / GB:.1f} GB" for w, b in parts) + ")"
    return [Item("disk", free >= need, detail, f"free space under {where}, or set runs_dir= to a larger disk "
                 "(Hub downloads go to HF_HOME, ~/.cache/huggingface by default, on top of this)")]


def wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace")


def check_reporting(cfg) -> list[Item]:
    """wandb asks for a login on a terminal (or fails without one) hours into a run: only with a key."""
    users = []
    if trains_sft(cfg):
        sft = stage_yaml(cfg.sft.config, cfg.sft.overrides)
        if sft.get("wandb_project") or sft.get("use_wandb"):
            users.append(f"SFT ({cfg.sft.config}: wandb_project)")
    report = stage_yaml(cfg.train.config, train_overrides(cfg)).get("report_to") or []
    report = [report] if isinstance(report, str) else report
    if "wandb" in report or "all" in report:
        users.append(f"training ({cfg.train.config}: report_to {report})")
    if not users:
        return [Item("reporting", True, "tensorboard / none: nothing can prompt")]
    mode = os.environ.get("WANDB_MODE", "")
    if mode in ("offline", "disabled") or wandb_key():
        return [Item("reporting", True, f"wandb for {', '.join(users)}: "
                     + (f"WANDB_MODE={mode}" if mode else "API key present"))]
    return [Item("reporting", False, f"wandb for {', '.join(users)}, and no WANDB_API_KEY (nor ~/.netrc entry): "
                 "wandb would ask for a login mid-run", "export WANDB_API_KEY=..., or WANDB_MODE=offline, or drop "
                 "the wandb keys (the default configs report to tensorboard)")]


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check_ports(cfg, need: int) -> list[Item]:
    ports = {}
    acc = accelerate_config(cfg)
    if acc and not acc.get("use_cpu", False) and int(acc.get("num_processes", 1)) > 1:
        ports[int(acc.get("main_process_port") or 29500)] = "accelerate's main process (training)"
    if trains_sft(cfg) and need > 1:
        ports.setdefault(int(os.environ.get("MASTER_PORT", 29500)), "torchrun (SFT)")
    items = [Item(f"port {port}", port_free(port), f"{what}: " + ("free" if port_free(port) else "in use"),
                  "stop the process that holds it (`ss -ltnp`), or set main_process_port in the accelerate config")
             for port, what in sorted(ports.items())]
    for b in engines(cfg):
        if b.get("kind") == "openai":
            for url in b.get("base_urls") or [b.get("base_url", "http://localhost:8000/v1")]:
                m = re.match(r"https?://([^/:]+):?(\d+)?", url)
                host, port = (m.group(1), int(m.group(2) or 80)) if m else ("localhost", 8000)
                try:
                    socket.create_connection((host, port), timeout=5).close()
                    items.append(Item(f"server {url}", True, "answers"))
                except OSError as exc:
                    items.append(Item(f"server {url}", False, f"no answer ({exc})", "start the vLLM server first"))
    if not items:
        items.append(Item("ports", True, "no fixed port needed (vLLM engines pick free ports themselves)"))
    return items


def run_checks(cfg, cpu_bf16: bool = False) -> list[Item]:
    need, reasons = gpu_needs(cfg, cpu_bf16)
    items = check_gpus(cfg, need, reasons)
    items += check_envs(cfg, need, visible_gpus())
    items += check_local_data(cfg)
    items += check_hub(cfg)
    items += check_disk(cfg)
    items += check_reporting(cfg)
    items += check_ports(cfg, need)
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="experiment YAML, e.g. configs/gemma-1.1-it-7b_mdpo.yaml")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="the same overrides as the run")
    args = ap.parse_args(argv)
    cfg = pipeline.load(args.config, [o for o in args.overrides if o != "--dry-run"])
    rehearsing = getattr(cfg, "rehearse", False)
    if rehearsing:
        from rehearsal import cpu_bf16, rehearse

        cfg, _, _ = rehearse(cfg)
    print(f"preflight: {args.config} -> {cfg.runs_dir}/{cfg.name}", flush=True)
    items = run_checks(cfg, cpu_bf16=rehearsing and cpu_bf16())
    for it in items:
        mark = {True: "ok  ", False: "FAIL", None: "warn"}[it.ok]
        print(f"  [{mark}] {it.name}: {it.detail}")
    failed = [it for it in items if it.ok is False]
    if failed:
        print(f"preflight: {len(failed)} of {len(items)} checks failed; fix them, then run again:", file=sys.stderr)
        for it in failed:
            print(f"  - {it.name}: {it.fix}", file=sys.stderr)
        return 1
    print(f"preflight: all {len(items)} checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
