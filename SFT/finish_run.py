"""Check that an SFT run finished and left a usable model, then mark its output directory done.

axolotl exits 0 even when interrupted (its SIGINT handler saves the half-trained weights into the
output directory and exits cleanly), so neither the exit status nor the weights prove the run is
complete. The newest checkpoint's trainer state does: the trainer saves one at the last step.
Only then is the marker written, and `train.sh` skips a directory holding it.

    python -m SFT.finish_run <output_dir> [--wall-seconds S]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

MARKER = "sft_complete.json"


class UnfinishedRun(RuntimeError):
    pass


def last_checkpoint(out: Path) -> Path | None:
    steps = [(int(p.name.split("-")[-1]), p) for p in out.glob("checkpoint-*")
             if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()]
    return max(steps)[1] if steps else None


def training_summary(out: Path) -> dict:
    """Step, epoch and last logged loss of a run that reached its last step; else UnfinishedRun."""
    ckpt = last_checkpoint(out)
    if ckpt is None:
        raise UnfinishedRun(f"{out}: no checkpoint-*/trainer_state.json, so nothing shows the run "
                            "finished (keep saves_per_epoch or save_steps set)")
    state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    step, max_steps = state.get("global_step", 0), state.get("max_steps", 0)
    if not max_steps or step < max_steps:
        raise UnfinishedRun(f"{out}: training stopped at step {step} of {max_steps} (interrupted?); "
                            f"run train.sh again to resume from {ckpt.name}")
    losses = [e for e in state.get("log_history", []) if "loss" in e]
    return {"global_step": step, "epoch": state.get("epoch"),
            "first_loss": losses[0]["loss"] if losses else None,
            "final_loss": losses[-1]["loss"] if losses else None}


def check_model(out: Path) -> None:
    """The final weights as safetensors, and a tokenizer that carries its chat template."""
    from transformers import AutoConfig, AutoTokenizer

    if not ((out / "model.safetensors").exists() or (out / "model.safetensors.index.json").exists()):
        raise UnfinishedRun(f"{out}: no model.safetensors (or its index): the final save did not happen")
    AutoConfig.from_pretrained(out)
    if not AutoTokenizer.from_pretrained(out).chat_template:
        raise UnfinishedRun(f"{out}: the saved tokenizer has no chat template")


def finish(out: Path, wall_seconds: float | None = None) -> dict:
    summary = training_summary(out)
    check_model(out)
    summary.update(finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), wall_seconds=wall_seconds)
    (out / MARKER).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output_dir", type=Path)
    ap.add_argument("--wall-seconds", type=float, default=None, help="training time, for the record")
    args = ap.parse_args(argv)
    try:
        summary = finish(args.output_dir, args.wall_seconds)
    except UnfinishedRun as exc:
        print(f"finish_run: {exc}", file=sys.stderr)
        return 1
    print(f"SFT finished: {args.output_dir} ({json.dumps(summary)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
