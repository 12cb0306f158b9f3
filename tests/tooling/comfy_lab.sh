#!/usr/bin/env bash
# A CPU-only, offline ComfyUI lab for trying InitEdit's node pack end to end, with a tiny random-weight
# SD1.5-like checkpoint. Idempotent: re-running only redoes what is missing or out of date.
#
#   tests/tooling/comfy_lab.sh setup          sources, venv, tiny checkpoint, links (default)
#   tests/tooling/comfy_lab.sh run [PORT]     start it headless on 127.0.0.1 (default 8188; pid/log in $COMFY_LAB/logs)
#   tests/tooling/comfy_lab.sh stop [PORT]    stop the server started by `run`
#   tests/tooling/comfy_lab.sh smoke [PORT]   setup, run, one plain KSampler prompt through /prompt, stop
#   tests/tooling/comfy_lab.sh link           symlink this checkout and the test-only pack into custom_nodes
#   tests/tooling/comfy_lab.sh unlink         remove those symlinks
#
# Inputs (no internet beyond the package registry): a bare git repository of ComfyUI (a
# snapshot) under $MIRRORS/<owner>+<name>/repo (default Haoming02+ComfyUI @ 3086026 = ComfyUI v0.19.3);
# torch==2.13.0 (CPU) and ComfyUI's requirements from the index.
# Env: COMFY_LAB (default $HOME/comfy-lab), MIRRORS (default: the nearest .mirror folder above this file),
#      COMFY_MIRROR / COMFY_COMMIT (another ComfyUI tree), PYTHON, FORCE_MODELS=1.
# Then: INITEDIT_COMFY_DIR=$COMFY_LAB/ComfyUI python3 -m pytest -q tests/comfy
#
# The checkpoint: ComfyUI's model detection recognises SD1.5 only at full width (model_channels 320,
# context_dim 768, CLIP ViT-L), about 2 GB and seconds per step here. The lab instead links a test-only pack
# (tests/tooling/comfy_tiny_model) that registers a tiny SD1.5-like config (same block layout, width 32, a
# 2-layer CLIP, TAESD as the VAE) and builds a checkpoint of it with fixed-seed random weights
# (tests/tooling/comfy_make_tiny.py): a few MB, loaded by the stock CheckpointLoaderSimple.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
COMFY_LAB="${COMFY_LAB:-$HOME/comfy-lab}"
if [[ -z "${MIRRORS:-}" ]]; then
  d="$HERE"; while [[ "$d" != "/" && ! -d "$d/.mirror" ]]; do d=$(dirname "$d"); done
  MIRRORS="$d/.mirror"
fi
PYTHON="${PYTHON:-python3}"
TORCH_VER="2.13.0"
TV_VER="0.28.0"                       # the torchvision release that pins torch==2.13.0
COMFY_MIRROR="${COMFY_MIRROR:-Haoming02+ComfyUI}"
COMFY_COMMIT="${COMFY_COMMIT:-3086026401180c9216bcb6ace442a4e3587d2c66}"   # ComfyUI v0.19.3, 2026-04-17
COMFY="$COMFY_LAB/ComfyUI"
LOGS="$COMFY_LAB/logs"
VPY="$COMFY_LAB/venv/bin/python"
CKPT="$COMFY/models/checkpoints/tiny-comfy-sd15.safetensors"
PACK_NAME="sd-webui-initedit"

say() { printf '\n== %s\n' "$*"; }
pipq() { "$VPY" -m pip "$@" 2>&1 | grep -v "^WARNING: Location 'file://" || true; }
ver() { "$VPY" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true; }

extract() {  # extract <bare git dir> <commit> <dest>: the tree, tolerating blobs absent from a snapshot
  local m=$1 c=$2 dest=$3
  rm -rf "$dest"; mkdir -p "$dest"
  if ! git --git-dir="$m" archive "$c" 2>/dev/null | tar -x -C "$dest" 2>/dev/null; then
    rm -rf "$dest"; mkdir -p "$dest"
    # blob by blob; snapshots may lack a few large tokenizer files that SD1 never reads
    git --git-dir="$m" ls-tree -r -z --full-tree "$c" | while IFS= read -r -d '' entry; do
      local meta=${entry%%$'\t'*} path=${entry#*$'\t'}
      local type sha; type=$(cut -d' ' -f2 <<<"$meta"); sha=$(cut -d' ' -f3 <<<"$meta")
      [[ "$type" == blob ]] || continue
      mkdir -p "$dest/$(dirname "$path")"
      git --git-dir="$m" cat-file blob "$sha" > "$dest/$path" 2>/dev/null || { rm -f "$dest/$path"; echo "   missing: $path"; }
    done
  fi
}

setup() {
  mkdir -p "$COMFY_LAB" "$LOGS"
  # ------------------------------------------------------------------------- 1. ComfyUI source
  say "ComfyUI $COMFY_MIRROR @ ${COMFY_COMMIT:0:10}"
  if [[ "$(cat "$COMFY/.lab-commit" 2>/dev/null || true)" != "$COMFY_COMMIT" ]]; then
    local M="$MIRRORS/$COMFY_MIRROR/repo"
    [[ -d "$M" ]] || { echo "ERROR: missing bare repository $M (a bare snapshot of github:${COMFY_MIRROR/+//})" >&2; exit 2; }
    git --git-dir="$M" cat-file -e "$COMFY_COMMIT^{commit}" || { echo "ERROR: $COMFY_COMMIT not in $M" >&2; exit 2; }
    local keep=""
    [[ -d "$COMFY/models/checkpoints" ]] && { keep="$COMFY_LAB/.checkpoints"; rm -rf "$keep"; mv "$COMFY/models/checkpoints" "$keep"; }
    extract "$M" "$COMFY_COMMIT" "$COMFY"
    [[ -n "$keep" ]] && { rm -rf "$COMFY/models/checkpoints"; mv "$keep" "$COMFY/models/checkpoints"; }
    echo "$COMFY_COMMIT" > "$COMFY/.lab-commit"
  else
    echo "   up to date"
  fi
  # ------------------------------------------------------------------------- 2. venv
  say "venv (system site packages: the CPU torch $TORCH_VER)"
  [[ -x "$VPY" ]] || "$PYTHON" -m venv --system-site-packages "$COMFY_LAB/venv"
  if [[ "$(ver torch)" != ${TORCH_VER}* ]]; then
    pipq install "torch==$TORCH_VER"          # the local CPU build; never a CUDA one
  fi
  # ComfyUI's requirements less torch* (kept as they are) and what --cpu never imports (OpenGL nodes)
  grep -v -E "^(torch|torchvision|torchaudio|PyOpenGL|glfw)\b|^#|^$" "$COMFY/requirements.txt" > "$COMFY_LAB/requirements_lab.txt"
  printf 'torch==%s\n' "$TORCH_VER" > "$COMFY_LAB/constraints.txt"
  if ! cmp -s "$COMFY_LAB/requirements_lab.txt" "$COMFY_LAB/.requirements_installed" 2>/dev/null; then
    pipq install -r "$COMFY_LAB/requirements_lab.txt" -c "$COMFY_LAB/constraints.txt" | grep -E "^(Successfully|ERROR)" || true
    cp "$COMFY_LAB/requirements_lab.txt" "$COMFY_LAB/.requirements_installed"
  fi
  if [[ "$(ver torchvision)" != "$TV_VER" ]]; then
    pipq install --no-deps "torchvision==$TV_VER"
  fi
  # the registry's torchvision is CUDA-built: its compiled ops do not load beside the CPU torch, and two
  # unguarded fake-op registrations fail on import; guard them (the Python-level parts ComfyUI uses then work)
  "$VPY" - <<'PY'
import os, sysconfig
path = os.path.join(sysconfig.get_paths()["purelib"], "torchvision", "_meta_registrations.py")
src = open(path).read()
mark = "# [initedit comfy lab] register_fake only where the compiled ops loaded"
if mark not in src:
    guard = (f"{mark}\ndef _initedit_register_fake(name):\n    def wrap(fn):\n"
             "        return torch.library.register_fake(name)(fn) if torchvision.extension._has_ops() else fn\n"
             "    return wrap\n\n\n")
    src = src.replace("@torch.library.register_fake(", "@_initedit_register_fake(")
    src = src.replace("def register_meta(", guard + "def register_meta(", 1)
    open(path, "w").write(src)
    print("   torchvision: fake-op registrations guarded")
PY
  [[ "$(ver torch)" == ${TORCH_VER}* ]] || { echo "ERROR: torch replaced: $(ver torch)" >&2; exit 1; }
  "$VPY" -c "import torch, torchvision; print('   torch', torch.__version__, 'torchvision', torchvision.__version__)"
  # ------------------------------------------------------------------------- 3. links and the tiny checkpoint
  link
  say "tiny checkpoint"
  if [[ ! -s "$CKPT" || -n "${FORCE_MODELS:-}" || "$HERE/comfy_make_tiny.py" -nt "$CKPT" || "$HERE/comfy_tiny_model/__init__.py" -nt "$CKPT" ]]; then
    (cd "$COMFY" && "$VPY" "$HERE/comfy_make_tiny.py" "$COMFY" "$CKPT" 2>&1 | grep -v -i "torchaudio" | tail -3)
  else
    echo "   up to date: $CKPT"
  fi
}

link() {
  mkdir -p "$COMFY/custom_nodes"
  ln -sfn "$REPO_ROOT" "$COMFY/custom_nodes/$PACK_NAME"
  ln -sfn "$HERE/comfy_tiny_model" "$COMFY/custom_nodes/comfy_tiny_model"
  echo "   linked $REPO_ROOT and the test-only pack into $COMFY/custom_nodes"
}

unlink_() {
  rm -f "$COMFY/custom_nodes/$PACK_NAME" "$COMFY/custom_nodes/comfy_tiny_model"
}

run() {
  local port=${1:-8188}
  mkdir -p "$LOGS"
  if curl -fsS "http://127.0.0.1:$port/system_stats" >/dev/null 2>&1; then echo "   already running on $port"; return; fi
  (cd "$COMFY" && OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" nohup "$VPY" main.py --cpu --listen 127.0.0.1 --port "$port" > "$LOGS/comfy-$port.log" 2>&1 &
   echo $! > "$LOGS/comfy-$port.pid")
  for _ in $(seq 1 240); do
    curl -fsS "http://127.0.0.1:$port/system_stats" >/dev/null 2>&1 && { echo "   up on http://127.0.0.1:$port"; return; }
    kill -0 "$(cat "$LOGS/comfy-$port.pid")" 2>/dev/null || { tail -20 "$LOGS/comfy-$port.log"; exit 1; }
    sleep 1
  done
  echo "ERROR: ComfyUI did not answer within 240 s (log: $LOGS/comfy-$port.log)" >&2; exit 1
}

stop() {
  local port=${1:-8188} pidfile="$LOGS/comfy-${1:-8188}.pid"
  [[ -f "$pidfile" ]] || { echo "   not started by this script on $port"; return; }
  kill "$(cat "$pidfile")" 2>/dev/null || true
  rm -f "$pidfile"
}

smoke() {
  local port=${1:-8188}
  setup; run "$port"
  "$PYTHON" - "$port" <<'PY'
import json, sys, time, urllib.request
port = sys.argv[1]
g = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-comfy-sd15.safetensors"}},
     "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
     "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
     "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}},
     "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
           "latent_image": ["4", 0], "seed": 1, "steps": 4, "cfg": 5, "sampler_name": "euler",
           "scheduler": "normal", "denoise": 1}},
     "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
     "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "lab_smoke"}}}
req = urllib.request.Request(f"http://127.0.0.1:{port}/prompt", data=json.dumps({"prompt": g}).encode(),
                             headers={"Content-Type": "application/json"})
pid = json.loads(urllib.request.urlopen(req).read())["prompt_id"]
for _ in range(600):
    h = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/history/{pid}").read())
    if pid in h:
        print("   smoke:", h[pid]["status"]["status_str"], h[pid]["outputs"]["7"]["images"][0]["filename"])
        break
    time.sleep(1)
else:
    sys.exit("smoke: no result in 600 s")
PY
  stop "$port"
}

case "${1:-setup}" in
  setup) setup ;;
  run) run "${2:-8188}" ;;
  stop) stop "${2:-8188}" ;;
  smoke) smoke "${2:-8188}" ;;
  link) link ;;
  unlink) unlink_ ;;
  *) echo "usage: $0 [setup|run [PORT]|stop [PORT]|smoke [PORT]|link|unlink]" >&2; exit 2 ;;
esac
