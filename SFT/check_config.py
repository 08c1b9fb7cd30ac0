"""Check an axolotl config before a long run: axolotl's own schema, plus the keys it would drop.

axolotl validates a config with pydantic and silently drops every key that is not a schema field,
so a typo (`learning_rat: 1e-5`, or `field_mesages` inside a dataset) trains with the default.
Here every key is compared, recursively through the nested schema models (each `datasets` entry,
`special_tokens`, ...), with the fields and aliases of the model that reads it; then the config
goes through axolotl's `validate_config`, the function training itself calls.

    python SFT/check_config.py SFT/configs/gemma-1.1-7b-it.yaml --gpus 8
    python SFT/check_config.py SFT/configs/tiny_cpu.yaml output_dir=/tmp/x

Exit status 0 when the config is fine, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from formats.config import ConfigError, KeyPath, Where, apply_overrides, dotted, locate, read_yaml, unknown_key


def gpu_node(n_gpu: int) -> tuple[dict, dict]:
    """The capabilities axolotl would probe on a node of `n_gpu` A100s (sm_80: bf16 and tf32)."""
    import torch

    return ({"bf16": True, "fp8": False, "tf32": True, "n_gpu": n_gpu, "compute_capability": "sm_80"},
            {"torch_version": torch.__version__.split("+")[0]})


def this_machine() -> tuple[dict, dict]:
    """The capabilities axolotl probes here, as `axolotl.cli.config.load_cfg` does."""
    from axolotl.cli.config import gpu_capabilities

    return gpu_capabilities()


def _field_names(model: type[BaseModel]) -> dict[str, str]:
    """Every spelling the model accepts for a key (name and aliases) -> the field name."""
    names = {}
    for name, info in model.model_fields.items():
        names[name] = name
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                names[alias] = name
            elif alias is not None and hasattr(alias, "choices"):
                names.update({c: name for c in alias.choices if isinstance(c, str)})
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field annotation can hold, in declaration order (list[A | B] -> A, B)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += [m for m in _models_in(arg) if m not in found]
    return found


def _best_model(candidates: list[type[BaseModel]], keys: set[str]) -> type[BaseModel]:
    """The candidate knowing most of `keys` (the first on ties: axolotl's own order, SFT first)."""
    return max(candidates, key=lambda m: (len(keys & set(_field_names(m))), -candidates.index(m)))


def unknown_keys(value: Any, model: type[BaseModel], path: KeyPath = ()) -> list[tuple[KeyPath, list[str]]]:
    """(key path, the keys known there) for every key of `value` that `model` and its sub-models do not know."""
    if not isinstance(value, dict):
        return []
    names = _field_names(model)
    found: list[tuple[KeyPath, list[str]]] = []
    for key, sub in value.items():
        if key not in names:
            found.append(((*path, key), list(names)))
            continue
        candidates = _models_in(model.model_fields[names[key]].annotation)
        if not candidates:
            continue
        items = list(enumerate(sub)) if isinstance(sub, list) else [(None, sub)]
        for index, item in items:
            if isinstance(item, dict):
                where = (*path, key) if index is None else (*path, key, index)
                found += unknown_keys(item, _best_model(candidates, set(item)), where)
    return found


def deprecated_keys(cfg: dict) -> list[tuple[str, str]]:
    """(key, what to use instead) for top-level keys the schema marks deprecated."""
    from axolotl.utils.schemas.config import AxolotlInputConfig

    fields = AxolotlInputConfig.model_fields
    return [(k, str(fields[k].deprecated)) for k in cfg if k in fields and fields[k].deprecated]


def check(cfg: dict, source: str = "<config>", lines: Where | None = None,
          capabilities: tuple[dict, dict] | None = None) -> list[str]:
    """Problems with `cfg` (empty when it is fine), each naming the file, the line and the key.

    `lines`: where each key path comes from: "FILE, line N" or "override 'k=v'" (formats/config.py)."
    `capabilities`: what the training machine offers (`gpu_node(8)`, `this_machine()`); None
    checks against the schema without the hardware rules."""
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault
    from axolotl.utils.schemas.config import AxolotlInputConfig
    from axolotl.utils.schemas.datasets import SFTDataset

    lines = lines or {}

    def where(path: KeyPath) -> str:
        return locate(lines, path, source)

    def schema_errors(exc: ValidationError, prefix: KeyPath = ()) -> list[str]:
        found = []
        for err in exc.errors():
            loc = (*prefix, *(p for p in err["loc"] if not (isinstance(p, str) and "[" in p)))
            got = f" (got {err['input']!r})" if isinstance(err.get("input"), str | int | float) else ""
            found.append(f"{where(loc)}: {f'key {dotted(loc)!r}: ' if loc else ''}{err['msg']}{got}")
        return found

    problems = []
    for path, known in unknown_keys(cfg, AxolotlInputConfig):  # axolotl would silently ignore them
        problems.append(unknown_key(where(path), path, known))
    for key, instead in deprecated_keys(cfg):
        problems.append(f"{where((key,))}: key '{key}' is deprecated: {instead}")
    deepspeed = cfg.get("deepspeed")
    if isinstance(deepspeed, str):
        try:
            json.loads(Path(deepspeed).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{where(('deepspeed',))}: key 'deepspeed': cannot read {deepspeed}: {exc}")
    if not cfg.get("rl"):  # axolotl reads each entry as an SFTDataset before the rest: locate its errors
        dataset_problems = []
        for i, ds in enumerate(cfg.get("datasets") or []):
            try:
                SFTDataset.model_validate(json.loads(json.dumps(ds)))  # its validators edit their input
            except ValidationError as exc:
                dataset_problems += schema_errors(exc, ("datasets", i))
        if dataset_problems:
            return problems + dataset_problems
    try:
        caps, env = capabilities if capabilities else (None, None)
        validate_config(DictDefault(json.loads(json.dumps(cfg))), capabilities=caps, env_capabilities=env)
    except ValidationError as exc:
        problems += schema_errors(exc)
    except ValueError as exc:
        problems.append(f"{source}: {exc}")
    return problems


def load(path: str | Path, overrides: list[str] = ()) -> tuple[dict, Where]:
    """The YAML at `path` with `key=value` overrides applied (the loader every CLI here shares), and
    where each key comes from. axolotl's schema is pydantic, not a dataclass: `check` does the rest."""
    cfg, where = read_yaml(path)
    return apply_overrides(cfg, overrides, where), where


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="axolotl YAML config")
    ap.add_argument("overrides", nargs="*", help="key=value overrides, dotted paths: datasets.0.path=x")
    ap.add_argument("--gpus", type=int, default=None,
                    help="check as on a node of this many A100s (default: the machine running this)")
    args = ap.parse_args(argv)
    try:
        cfg, lines = load(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {args.config}: {exc}", file=sys.stderr)
        return 1
    caps = gpu_node(args.gpus) if args.gpus else this_machine()
    problems = check(cfg, args.config, lines, caps)
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"{args.config}: OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
