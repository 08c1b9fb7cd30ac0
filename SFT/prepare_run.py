"""Resolve an SFT run before launching it: config + `key=value` overrides -> a checked config saved
in the output directory; a finished output directory is reported instead of trained again.

Local paths become absolute, so the saved config says exactly what was trained; the prepared
(tokenised) data set goes to `<output_dir>/prepared` unless the config names a place. A local
JSONL data set is read through `formats.sft` first: a bad line fails here, naming file and line,
not an hour into tokenisation.

Called by SFT/train.sh; prints one tab-separated line on stdout:
    done    <output_dir>                        a finished model is there already
    train   <resolved config>   <output_dir>    ready to launch
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from formats import FormatError
from formats import sft as sft_format
from formats.config import ConfigError
from SFT.check_config import check, load, this_machine
from SFT.finish_run import MARKER

RESOLVED_NAME = "sft_config.yaml"


def _local(path: str) -> str:
    """An existing local path made absolute; anything else (a Hub id) unchanged."""
    return str(Path(path).resolve()) if Path(path).exists() else path


def resolve_paths(cfg: dict) -> dict:
    for key in ("base_model", "base_model_config", "tokenizer_config", "deepspeed"):
        if isinstance(cfg.get(key), str):
            cfg[key] = _local(cfg[key])
    for ds in cfg.get("datasets") or []:
        if isinstance(ds, dict) and isinstance(ds.get("path"), str):
            ds["path"] = _local(ds["path"])
    if not cfg.get("output_dir"):
        raise SystemExit("the config sets no output_dir (add output_dir=<dir>)")
    cfg["output_dir"] = str(Path(cfg["output_dir"]).resolve())
    prepared = cfg.get("dataset_prepared_path") or Path(cfg["output_dir"]) / "prepared"
    cfg["dataset_prepared_path"] = str(Path(prepared).resolve())
    return cfg


def check_local_data(cfg: dict) -> list[str]:
    """Problems in local SFT JSONL files (messages layout of formats/sft.py)."""
    problems = []
    for ds in cfg.get("datasets") or []:
        path = Path(str(ds.get("path", ""))) if isinstance(ds, dict) else Path()
        if (path.is_file() and ds.get("type") == "chat_template" and ds.get("field_messages", "messages") == "messages"
                and path.suffix in (".jsonl", ".json")):
            try:
                n = sum(1 for _ in sft_format.read(path))
            except FormatError as exc:
                problems.append(str(exc))
                continue
            if n == 0:
                problems.append(f"{path}: no records")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="axolotl YAML config (SFT/configs/...)")
    ap.add_argument("overrides", nargs="*", help="key=value, dotted paths into lists: datasets.0.path=x")
    ap.add_argument("--gpus", type=int, default=1, help="processes the run will be launched with")
    args = ap.parse_args(argv)
    # The plan goes to the real stdout; everything else printed here (axolotl logs to stdout) to stderr.
    plan = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        cfg, lines = load(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {args.config}: {exc}", file=sys.stderr)
        return 1
    cfg = resolve_paths(cfg)
    out = Path(cfg["output_dir"])
    if (out / MARKER).exists():
        print(f"done\t{out}", file=plan)
        return 0
    caps, env = this_machine()
    caps["n_gpu"] = args.gpus
    problems = check_local_data(cfg) + check(cfg, args.config, lines, (caps, env))
    if problems:
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    resolved = out / RESOLVED_NAME
    resolved.write_text(f"# resolved from {Path(args.config).resolve()} {' '.join(args.overrides)}\n"
                        + yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    print(f"train\t{resolved}\t{out}", file=plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
