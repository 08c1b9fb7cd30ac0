"""The shared body of `run_mdpo.py`, `run_mkto.py` and `run_raft.py`: TRL's config dataclasses from
YAML + `key=value` overrides (formats/config.py, shared by every CLI), read and split the
preference data, train (resuming from the last checkpoint in the output directory), save
a model that transformers and vLLM load, and mark the directory finished so a re-run is a no-op."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer
from transformers.trainer_utils import get_last_checkpoint

from formats import heldout
from formats.config import parse_cli

from .checkpoints import ResumeStateOnlyInNewestCheckpoint
from .lora import LoraArguments, check_supported, save_merged
from .mdpo_trainer import MultiTurnDPOConfig, MultiTurnDPOTrainer
from .mkto_trainer import MultiTurnKTOConfig, MultiTurnKTOTrainer
from .preference_data import load_preference_dataset, split_heldout_prompts
from .raft_trainer import RAFTConfig, RAFTTrainer

logger = logging.getLogger(__name__)
FINISHED_MARKER = "alignment_finished.json"
STAGES = {  # name: (config class, trainer class, dataset kind)
    "mdpo": (MultiTurnDPOConfig, MultiTurnDPOTrainer, "pairs"),
    "mkto": (MultiTurnKTOConfig, MultiTurnKTOTrainer, "unpaired"),
    "raft": (RAFTConfig, RAFTTrainer, "pairs"),  # trains on the chosen side (raft_trainer.py)
}
NO_REFERENCE = {"raft"}


@dataclass
class RunArguments:
    model_name_or_path: str = field(metadata={
        "help": "Policy initialisation: the SFT model in iteration 1, else the previous iteration's model."})
    dataset_path: str = field(metadata={
        "help": "save_to_disk directory of the preference stage: <pairs out>/dpo for M-DPO, <pairs out>/kto "
                "for M-KTO, <pairs out>/dpo for RAFT (its chosen trajectories) (formats/preference.py)."})
    ref_model_name_or_path: str | None = field(default=None, metadata={
        "help": "Reference model. Default: the policy initialisation, i.e. the previous iteration (the "
                "paper's updated reference, §3.2). The SFT model here gives the fixed-reference ablation."})
    eval_dataset_path: str | None = field(default=None, metadata={
        "help": "Held-out preference data. Default: hold out eval_fraction of the prompts of dataset_path."})
    eval_fraction: float = field(default=0.02, metadata={
        "help": "Share of prompts (by idx) held out for evaluation when eval_dataset_path is not given "
                "(paper App. B: 1K of 60K prompts held out for model selection). Unused when "
                "eval_strategy=no."})
    dtype: str = field(default="float32", metadata={
        "help": "Weights dtype of policy and reference alike (SPEC §8 item 35). bfloat16 for DeepSpeed runs, "
                "which keep fp32 master weights; plain runs need float32 (+ bf16 autocast) or tiny "
                "learning rates underflow.", "choices": ["bfloat16", "float16", "float32", "auto"]})
    attn_implementation: str | None = field(default=None, metadata={
        "help": "Attention kernel, e.g. sdpa or flash_attention_2; default: transformers' choice."})


def _finished(out: Path) -> dict | None:
    marker = out / FINISHED_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


def _datasets(run: RunArguments, args: Any, kind: str) -> tuple[Any, Any]:
    train = load_preference_dataset(run.dataset_path, kind)
    if args.eval_strategy == "no":
        return train, None
    if run.eval_dataset_path:
        return train, load_preference_dataset(run.eval_dataset_path, kind)
    return split_heldout_prompts(train, run.eval_fraction, args.seed)


def _warn_low_precision(run: RunArguments, args: Any, lora: LoraArguments) -> None:
    sharded = args.distributed_state.distributed_type in ("DEEPSPEED", "FSDP")
    if run.dtype in ("bfloat16", "float16") and not sharded and not lora.use_peft:  # PEFT: fp32 adapters
        logger.warning("weights in %s without DeepSpeed/FSDP master weights: AdamW steps of lr %.1e "
                       "are below %s resolution and may not move the weights: use dtype float32, bf16: true",
                       run.dtype, args.learning_rate, run.dtype)


def main(stage: str, argv: list[str] | None = None) -> Path:
    config_class, trainer_class, kind = STAGES[stage]
    run, lora, args = parse_cli((RunArguments, LoraArguments, config_class), argv, (
        f"{stage.upper()} training, one iteration (alignment_algorithms/run_{stage}.py):\n"
        f"  run_{stage}.py --config FILE model_name_or_path=M dataset_path=D output_dir=OUT [key=value ...]\n"
        "Every field below (ours and TRL's) is a key of the YAML file and a key=value override."))
    out = Path(args.output_dir)
    if (done := _finished(out)) is not None:
        print(f"{out} already holds a finished {done.get('stage', stage)} model ({FINISHED_MARKER}): "
              "nothing to do")
        return out
    args.model_init_kwargs = {**(args.model_init_kwargs or {}), "dtype": run.dtype}
    if run.attn_implementation:
        args.model_init_kwargs["attn_implementation"] = run.attn_implementation
    _warn_low_precision(run, args, lora)
    if lora.use_peft:
        check_supported(args)

    train, evaluation = _datasets(run, args, kind)
    if evaluation is not None and args.should_save:
        # The pipeline evaluates each checkpoint on these prompts to choose the iteration's model.
        out.mkdir(parents=True, exist_ok=True)
        heldout.write(out / heldout.FILE_NAME, sorted(set(evaluation["idx"])), run.eval_fraction, args.seed)
    if stage == "mkto":
        # TRL's KTO samples in order (its KL pairs are fixed neighbours); the reference shuffled (SPEC 5.4).
        train = train.shuffle(seed=args.seed).flatten_indices()
    ref = run.ref_model_name_or_path
    if stage in NO_REFERENCE and ref is not None:
        raise ValueError(f"ref_model_name_or_path={ref}: {stage} has no reference model")
    reference = {} if stage in NO_REFERENCE else {"ref_model": None if ref in (None, run.model_name_or_path) else ref}
    trainer = trainer_class(run.model_name_or_path, **reference,
                            args=args, train_dataset=train, eval_dataset=evaluation,
                            processing_class=AutoTokenizer.from_pretrained(run.model_name_or_path),
                            peft_config=lora.peft_config())
    trainer.add_callback(ResumeStateOnlyInNewestCheckpoint())
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if last:
        print(f"resuming from {last}")
    trainer.train(resume_from_checkpoint=last)
    if lora.use_peft:
        save_merged(trainer, out)
    else:
        trainer.save_model(str(out))
    if trainer.accelerator.is_main_process:
        record = {"stage": stage, "model": run.model_name_or_path,
                  "reference": None if stage in NO_REFERENCE else ref or run.model_name_or_path,
                  "dataset": run.dataset_path, "train_rows": len(train),
                  "eval_rows": len(evaluation) if evaluation is not None else 0,
                  "mask_observations": args.mask_observations, "lora": lora.record(),
                  "steps": trainer.state.global_step,
                  "processes": trainer.accelerator.num_processes, "device": trainer.args.device.type,
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (out / FINISHED_MARKER).write_text(json.dumps(record, indent=1) + "\n")
    trainer.accelerator.wait_for_everyone()
    trainer.end()
    return out
