"""LoRA through PEFT, so M-DPO / M-KTO of a 7B model fits one 80 GB GPU.

TRL does the training side: given a `peft_config` and no reference model, DPOTrainer and KTOTrainer
wrap the policy with the adapter and compute the reference log-probabilities with the adapter
disabled (`trl.trainer.utils.use_adapter(model, None)`), on the same batch and the same
`completion_mask`, so the observation masks apply to policy and reference alike. In the iterative
loop the policy starts from the previous iteration's merged model, so "adapter disabled" is exactly
the paper's reference (§3.2) with no second copy in memory.

What TRL leaves to us: saving a model that the next stage loads as a plain model. The adapter is
merged into the weights (`merge_and_unload`) and the merged model saved in the output directory;
the adapter itself goes to `<output>/adapter` (never beside the merged weights: transformers would
then load the folder as a PEFT model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ADAPTER_DIR = "adapter"


@dataclass
class LoraArguments:
    """Field names as TRL's `ModelConfig`. Defaults: the alignment-handbook's Zephyr-7B DPO recipe
    (recipes/zephyr-7b-beta/dpo/config_qlora.yaml: r 16, alpha 16, dropout 0.05, every attention and
    MLP projection); not the paper's (it trained every weight) and not tuned here."""

    use_peft: bool = field(default=False, metadata={
        "help": "Train a LoRA adapter instead of every weight (one GPU for a 7B model). The reference is then "
                "the model with the adapter disabled, unless ref_model_name_or_path names another model; the "
                "adapter is merged into the saved model."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={
        "help": "Dropout on the adapter's input. TRL's disable_dropout (default true) sets it to 0 in training."})
    lora_target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], metadata={
        "help": "Module names that get an adapter (Llama / Gemma / Mistral projection names), or all-linear."})

    def peft_config(self) -> Any:
        """The `peft.LoraConfig` for the trainer, or None when LoRA is off."""
        if not self.use_peft:
            return None
        from peft import LoraConfig

        targets = self.lora_target_modules
        return LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=targets[0] if targets == ["all-linear"] else targets,
                          task_type="CAUSAL_LM")

    def record(self) -> dict | None:
        return asdict(self) if self.use_peft else None


def check_supported(args: Any) -> None:
    """The merge needs whole weights on one process: ZeRO-3 shards them."""
    plugin = args.deepspeed_plugin
    if plugin is not None and plugin.zero_stage == 3:
        raise ValueError("use_peft with DeepSpeed ZeRO-3 is not supported here (the adapter is merged into "
                         "whole weights at the end): use one process or alignment_algorithms/accelerate/zero2.yaml")


def save_merged(trainer: Any, out: Path) -> None:
    """Adapter to `out/adapter`, merged plain model (+ tokenizer) to `out`."""
    trainer.save_model(str(out / ADAPTER_DIR))
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        merged.save_pretrained(str(out))
        trainer.processing_class.save_pretrained(str(out))
