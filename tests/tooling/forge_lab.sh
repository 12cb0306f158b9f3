#!/usr/bin/env bash
# A CPU-only, offline Forge lab (lllyasviel/stable-diffusion-webui-forge main, the `backend/` line that
# Forge Neo shares) with a tiny random-weight SD1.5 checkpoint, for trying InitEdit end to end.
# Idempotent: re-running only redoes what is missing or out of date.
#
#   tests/tooling/forge_lab.sh setup          sources, venv, tiny checkpoint (default)
#   tests/tooling/forge_lab.sh run [PORT]     start it headless on 127.0.0.1 (pid/log in $FORGE_LAB/logs)
#   tests/tooling/forge_lab.sh stop [PORT]    stop the server started by `run`
#   tests/tooling/forge_lab.sh smoke [PORT]   setup, run, plain txt2img twice (same seed: identical), stop
#   tests/tooling/forge_lab.sh link           symlink this checkout into the lab's extensions folder
#   tests/tooling/forge_lab.sh unlink         remove that symlink
#
# Inputs (no internet beyond the package registry): bare git repositories (the `fetch` tool's snapshots)
# under $MIRRORS/<owner>+<name>/repo of lllyasviel/stable-diffusion-webui-forge, lllyasviel/huggingface_guess,
# AUTOMATIC1111/stable-diffusion-webui-assets and salesforce/BLIP; torch==2.13.0 (CPU) from the index.
# Env: FORGE_LAB (default $HOME/forge-lab), MIRRORS (default: the nearest .mirror folder above this file,
#      else /work/.mirror), FORGE_MIRROR / FORGE_BRANCH / FORGE_COMMIT (another Forge line, e.g. Neo, when a
#      snapshot holds it), PYTHON, FORCE_MODELS=1, SKIP_SDXL=1, WEBUI_LAB_TOOLS (the A1111 lab's tools/ folder).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
FORGE_LAB="${FORGE_LAB:-$HOME/forge-lab}"
if [[ -z "${MIRRORS:-}" ]]; then
  d="$HERE"; while [[ "$d" != "/" && ! -d "$d/.mirror" ]]; do d=$(dirname "$d"); done
  MIRRORS="$d/.mirror"; [[ -d "$MIRRORS" ]] || MIRRORS=/work/.mirror
fi
PYTHON="${PYTHON:-python3}"
TORCH_VER="2.13.0+cpu"
TV_VER="0.28.0"                       # the torchvision release that pins torch==2.13.0
FORGE="$FORGE_LAB/webui"
FORGE_MIRROR="${FORGE_MIRROR:-lllyasviel+stable-diffusion-webui-forge}"
FORGE_BRANCH="${FORGE_BRANCH:-main}"
FORGE_COMMIT="${FORGE_COMMIT:-dfdcbab685e57677014f05a3309b48cc87383167}"   # main, 2025-06-26
# repositories/<dir>  mirror  commit (the hashes pinned in Forge's modules/launch_utils.py)
REPOS=(
  "stable-diffusion-webui-assets AUTOMATIC1111+stable-diffusion-webui-assets 6f7db241d2f8ba7457bac5ca9753331f0c266917"
  "huggingface_guess lllyasviel+huggingface_guess 84826248b49bb7ca754c73293299c4d4e23a548d"
  "BLIP salesforce+BLIP 48211a1594f1321b00f14c9f7a5b4813144b2fb9"
)
LOGS="$FORGE_LAB/logs"
VPY="$FORGE_LAB/venv/bin/python"
CKPT="$FORGE_LAB/models/Stable-diffusion/tiny-forge-sd15.safetensors"
CKPT_XL="$FORGE_LAB/models/Stable-diffusion/tiny-forge-sdxl.safetensors"
if [[ -z "${WEBUI_LAB_TOOLS:-}" ]]; then
  for t in "$REPO_ROOT/../shared/webui-lab/tools" /work/shared/webui-lab/tools; do
    [[ -d "$t" ]] && { WEBUI_LAB_TOOLS="$t"; break; }
  done
fi

say() { printf '\n== %s\n' "$*"; }
mirror() {
  local d="$MIRRORS/$1/repo"
  [[ -d "$d" ]] || { echo "ERROR: missing bare repository $d (fetch github:${1/+//})" >&2; exit 2; }
  echo "$d"
}
pipq() { "$VPY" -m pip "$@" 2>&1 | grep -v "^WARNING: Location 'file://" || true; }
tv() { "$VPY" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true; }

extract() {  # extract <bare git dir> <commit> <dest>: the tree, tolerating blobs absent from a snapshot
  local m=$1 c=$2 dest=$3
  rm -rf "$dest"; mkdir -p "$dest"
  if ! git --git-dir="$m" archive "$c" | tar -x -C "$dest" 2>/dev/null; then
    [[ -n "${WEBUI_LAB_TOOLS:-}" ]] || { echo "ERROR: git archive failed for $m $c" >&2; exit 2; }
    rm -rf "$dest"; mkdir -p "$dest"
    "$PYTHON" "$WEBUI_LAB_TOOLS/extract_tree.py" "$m" "$c" "$dest"
  fi
}

setup() {
  mkdir -p "$FORGE_LAB" "$LOGS"
  # ------------------------------------------------------------------------- 1. Forge source
  say "Forge $FORGE_MIRROR $FORGE_BRANCH @ ${FORGE_COMMIT:0:10}"
  if [[ "$(git -C "$FORGE" rev-parse HEAD 2>/dev/null || true)" != "$FORGE_COMMIT" ]]; then
    local M; M=$(mirror "$FORGE_MIRROR")
    git --git-dir="$M" cat-file -e "$FORGE_COMMIT^{commit}" || { echo "ERROR: $FORGE_COMMIT not in $M" >&2; exit 2; }
    rm -rf "$FORGE.clone"
    # a local-path clone copies the object store (a file:// clone repacks, and snapshots miss some old objects)
    git -c advice.detachedHead=false clone -q --no-checkout "$M" "$FORGE.clone"
    git -C "$FORGE.clone" -c advice.detachedHead=false checkout -q "$FORGE_COMMIT"
    if [[ -d "$FORGE" ]]; then   # keep repositories/, venv-independent state of an earlier setup
      rm -rf "$FORGE/.git"; mv "$FORGE.clone/.git" "$FORGE/.git"; rm -rf "$FORGE.clone"
      git -C "$FORGE" checkout -q -f "$FORGE_COMMIT" -- .
    else
      mv "$FORGE.clone" "$FORGE"
    fi
  fi
  git -C "$FORGE" log -1 --format='   %H %cd %s'
  git -C "$FORGE" status --porcelain --untracked-files=no | sed 's/^/   MODIFIED: /'

  # ------------------------------------------------------------------------- 2. repositories/
  say "repositories/ at the commits pinned in modules/launch_utils.py"
  for spec in "${REPOS[@]}"; do
    read -r dir mir commit <<<"$spec"
    local dest="$FORGE/repositories/$dir"
    if [[ "$(cat "$dest/.forge-lab-commit" 2>/dev/null || true)" == "$commit" ]]; then
      echo "   $dir @ ${commit:0:10} (present)"; continue
    fi
    extract "$(mirror "$mir")" "$commit" "$dest"
    echo "$commit" > "$dest/.forge-lab-commit"
    echo "   $dir @ ${commit:0:10}"
  done

  # ------------------------------------------------------------------------- 3. venv + CPU torch
  say "venv + CPU torch $TORCH_VER"
  [[ -x "$VPY" ]] || "$PYTHON" -m venv "$FORGE_LAB/venv"
  if [[ "$(tv torch)" != "$TORCH_VER" ]]; then
    pipq install "torch==2.13.0"          # the local CPU build; never a CUDA one
  fi
  cat > "$FORGE_LAB/constraints.txt" <<EOF
# keep the CPU torch and the (patched) torchvision: never let pip replace them
torch==$TORCH_VER
torchvision==$TV_VER
EOF
  if [[ "$(tv torchvision)" != "$TV_VER" ]]; then
    pipq install --no-deps "torchvision==$TV_VER"
  fi
  local SP; SP=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if [[ -n "${WEBUI_LAB_TOOLS:-}" ]]; then
    # the registry's torchvision is CUDA-built: guard its two unguarded fake-op registrations
    "$VPY" "$WEBUI_LAB_TOOLS/patch_torchvision.py" "$SP" | sed 's/^/   /'
  fi

  # ------------------------------------------------------------------------- 4. requirements
  say "requirements_versions.txt (adjusted -> requirements_lab.txt)"
  sed -e 's/^setuptools==69.5.1.*/setuptools==80.9.0  # [forge-lab] was 69.5.1; torch 2.13 needs >=77.0.3/' \
      -e 's/^torch$/torch==2.13.0  # [forge-lab] the CPU build/' \
      "$FORGE/requirements_versions.txt" > "$FORGE_LAB/requirements_lab.txt"
  diff "$FORGE/requirements_versions.txt" "$FORGE_LAB/requirements_lab.txt" | sed 's/^/   /' || true
  local STAMP="$FORGE_LAB/venv/.forge-lab-reqs" HASH
  HASH=$(cat "$FORGE_LAB/requirements_lab.txt" "$FORGE_LAB/constraints.txt" | sha256sum | cut -c1-16)
  if [[ "$(cat "$STAMP" 2>/dev/null || true)" != "$HASH" ]]; then
    pipq install -r "$FORGE_LAB/requirements_lab.txt" -c "$FORGE_LAB/constraints.txt" | grep -E "^(Successfully|ERROR)" || true
    echo "$HASH" > "$STAMP"
  else
    echo "   already installed (stamp $HASH)"
  fi
  # openai CLIP: the launcher pip-installs it from a GitHub archive; the same code is on the registry
  "$VPY" -c "import clip" >/dev/null 2>&1 || pipq install --no-deps --no-build-isolation "openai-clip==1.0.1" -c "$FORGE_LAB/constraints.txt"
  # joblib: the built-in soft-inpainting script imports it (not pinned by Forge); pytest for the e2e tests
  "$VPY" -c "import joblib, pytest" >/dev/null 2>&1 || pipq install joblib pytest -c "$FORGE_LAB/constraints.txt"

  say "environment check"
  [[ "$(tv torch)" == "$TORCH_VER" && "$(tv torchvision)" == "$TV_VER" ]] || { echo "ERROR: torch/torchvision replaced: $(tv torch) $(tv torchvision)" >&2; exit 1; }
  "$VPY" -m pip check 2>&1 | grep -v "^WARNING: Location" | sed 's/^/   /' || true
  "$VPY" -c "
import torch, torchvision, transformers, gradio, diffusers, numpy
print(f'   torch {torch.__version__} (cuda {torch.cuda.is_available()}), torchvision {torchvision.__version__}, '
      f'transformers {transformers.__version__}, gradio {gradio.__version__}, diffusers {diffusers.__version__}, numpy {numpy.__version__}')
" 2>&1 | grep -v -i "warn"
  "$VPY" -m pip freeze 2>/dev/null > "$FORGE_LAB/pip-freeze.txt"

  # ------------------------------------------------------------------------- 5. tiny checkpoint
  say "tiny checkpoint"
  if [[ -n "${FORCE_MODELS:-}" || ! -f "$CKPT" ]]; then
    mkdir -p "$(dirname "$CKPT")"
    (cd "$FORGE" && "$VPY" "$HERE/make_tiny_forge_checkpoint.py" --forge "$FORGE" --out "$CKPT")
  else
    echo "   $CKPT (present)"
  fi
  sha256sum "$CKPT" | sed 's/^/   /'
  # SDXL (SKIP_SDXL=1 to skip): 2.1 GB, ~1.5 min; full-shape CLIP-G (695 M parameters) and CLIP-L, and a
  # random VAE-approx for the live preview (Forge would download it)
  if [[ -z "${SKIP_SDXL:-}" ]]; then
    if [[ -n "${FORCE_MODELS:-}" || ! -f "$CKPT_XL" || ! -f "$FORGE_LAB/models/VAE-approx/vaeapprox-sdxl.pt" ]]; then
      (cd "$FORGE" && "$VPY" "$HERE/make_tiny_forge_checkpoint.py" --kind sdxl --forge "$FORGE" --out "$CKPT_XL")
    else
      echo "   $CKPT_XL (present)"
    fi
  fi
  say "done.  Start it with: FORGE_LAB=$FORGE_LAB $0 run 7870"
}

run() {  # run [port] [extra launch args...]
  local PORT=${1:-7870}; shift $(( $# > 0 ? 1 : 0 )) || true
  mkdir -p "$LOGS" "$FORGE_LAB/data"
  # loopback only; no --listen/--server-name (they mark the UI non-local)
  export GRADIO_SERVER_NAME=127.0.0.1
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 DIFFUSERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False \
         DO_NOT_TRACK=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
  # gradio 4 serves file= URLs only under allowed paths (Forge's default: the data dir alone): add the
  # Forge folder (its own javascript/, style.css) and the real folders of linked extensions
  local allow=(--gradio-allowed-path "$FORGE")
  for ext in "$FORGE_LAB/data/extensions"/*; do
    [[ -L "$ext" ]] && allow+=(--gradio-allowed-path "$(readlink -f "$ext")")
  done
  cd "$FORGE"
  "$VPY" launch.py --skip-prepare-environment --skip-install --skip-python-version-check \
      --skip-torch-cuda-test --skip-version-check --always-cpu --api --port "$PORT" \
      --ckpt "$CKPT" --no-download-sd-model --data-dir "$FORGE_LAB/data" --models-dir "$FORGE_LAB/models" \
      --disable-console-progressbars "${allow[@]}" "$@" > "$LOGS/forge-$PORT.log" 2>&1 &
  echo $! > "$LOGS/forge-$PORT.pid"
  echo "started pid $(cat "$LOGS/forge-$PORT.pid"), log $LOGS/forge-$PORT.log"
}

wait_ready() {  # wait_ready <port> [seconds]
  local PORT=$1 limit=${2:-600} pid; pid=$(cat "$LOGS/forge-$PORT.pid")
  for _ in $(seq 1 "$limit"); do
    # the API answers before the UI (and so the scripts' argument slots) is built: also wait for the log's
    # "Startup time" line, or the first txt2img with alwayson_scripts fails in init_script_args (IndexError)
    curl -s -m 2 -o /dev/null "http://127.0.0.1:$PORT/sdapi/v1/options" \
      && grep -q "Startup time" "$LOGS/forge-$PORT.log" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "ERROR: server exited; tail of the log:" >&2; tail -40 "$LOGS/forge-$PORT.log" >&2; return 1; }
    sleep 1
  done
  echo "ERROR: no answer on port $PORT after ${limit}s" >&2; return 1
}

stop() {
  local PORT=${1:-7870} pid
  pid=$(cat "$LOGS/forge-$PORT.pid" 2>/dev/null || true)
  [[ -n "$pid" ]] || { echo "no pid file"; return 0; }
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" || true
  rm -f "$LOGS/forge-$PORT.pid"; echo "stopped $pid"
}

smoke() {
  local PORT=${1:-7870}
  setup
  say "smoke test on port $PORT"
  run "$PORT"
  wait_ready "$PORT"
  local rc=0
  "$VPY" - "$PORT" <<'EOF' || rc=1
import base64, hashlib, io, json, sys, urllib.request
from PIL import Image
port = sys.argv[1]
def txt2img(seed):
    body = {"prompt": "a cat and a dog", "seed": seed, "steps": 4, "width": 64, "height": 64,
            "sampler_name": "Euler", "cfg_scale": 5}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/sdapi/v1/txt2img", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    out = json.loads(urllib.request.urlopen(req, timeout=600).read())
    image = Image.open(io.BytesIO(base64.b64decode(out["images"][0]))).convert("RGB")  # pixels: the PNG has the infotext
    return hashlib.sha256(image.tobytes()).hexdigest()[:16], json.loads(out["info"])
a, info = txt2img(1234); b, _ = txt2img(1234); c, _ = txt2img(99)
print(f"   pixels sha256  seed 1234: {a}  again: {b}  seed 99: {c}   model {info.get('sd_model_name')}, {info.get('version')}")
assert a == b, "same seed, different image"
assert a != c, "different seeds, same image"
print("   smoke OK: generates; same seed pixel-identical")
EOF
  stop "$PORT"
  return $rc
}

link() {
  mkdir -p "$FORGE_LAB/data/extensions"
  ln -sfn "$REPO_ROOT" "$FORGE_LAB/data/extensions/sd-webui-initedit"
  echo "   $FORGE_LAB/data/extensions/sd-webui-initedit -> $REPO_ROOT"
}

unlink_ext() { rm -f "$FORGE_LAB/data/extensions/sd-webui-initedit"; }

cmd=${1:-setup}; shift || true
case "$cmd" in
  setup) setup ;;
  run) run "$@" ;;
  wait) wait_ready "${1:-7870}" "${2:-600}" ;;
  stop) stop "$@" ;;
  smoke) smoke "$@" ;;
  link) link ;;
  unlink) unlink_ext ;;
  *) echo "usage: $0 setup|run [port]|wait [port]|stop [port]|smoke [port]|link|unlink" >&2; exit 2 ;;
esac
