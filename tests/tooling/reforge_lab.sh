#!/usr/bin/env bash
# A CPU-only, offline lab of the `ldm_patched` Forge line: reForge (Panchovix/stable-diffusion-webui-reForge
# `main`, Gradio 3.41) or, with LINE=classic, Forge Classic (Haoming02/sd-webui-forge-classic `classic`),
# with a tiny random-weight SD1.5 (and SDXL) checkpoint, for trying InitEdit end to end.
# Idempotent: re-running only redoes what is missing or out of date.
#
#   tests/tooling/reforge_lab.sh setup          sources, venv, tiny checkpoints (default)
#   tests/tooling/reforge_lab.sh run [PORT]     start it headless on 127.0.0.1 (pid/log in $REFORGE_LAB/logs)
#   tests/tooling/reforge_lab.sh wait [PORT]    until the API answers and start-up is finished
#   tests/tooling/reforge_lab.sh stop [PORT]    stop the server started by `run`
#   tests/tooling/reforge_lab.sh smoke [PORT]   setup, run, plain txt2img twice (same seed: identical), stop
#   tests/tooling/reforge_lab.sh link           symlink this checkout into the lab's extensions folder
#   tests/tooling/reforge_lab.sh unlink         remove that symlink
#
# Inputs (no internet beyond the package registry): bare git repositories (the `fetch` tool's snapshots)
# under $MIRRORS/<owner>+<name>/repo of the WebUI, Stability-AI/stablediffusion, Stability-AI/generative-models,
# AUTOMATIC1111/stable-diffusion-webui-assets, salesforce/BLIP (reForge); torch==2.13.0 (CPU) from the index.
# The tiny checkpoints are the Forge lab's (tests/tooling/make_tiny_forge_checkpoint.py: original ldm key
# layout, full-shape CLIP-L / CLIP-G / VAE, shallow UNet): linked from $FORGE_LAB/models when present,
# else built there by `forge_lab.sh setup` (which needs the Forge 2 snapshot).
# Env: LINE=reforge|classic, REFORGE_LAB (default $HOME/reforge-lab, $HOME/classic-lab for LINE=classic),
#      MIRRORS, WEBUI_MIRROR / WEBUI_COMMIT (another commit), FORGE_LAB (default $HOME/forge-lab), PYTHON,
#      SKIP_SDXL=1, WEBUI_LAB_TOOLS (the A1111 lab's tools/ folder).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
LINE="${LINE:-reforge}"
case "$LINE" in
  reforge)
    REFORGE_LAB="${REFORGE_LAB:-$HOME/reforge-lab}"
    WEBUI_MIRROR="${WEBUI_MIRROR:-Panchovix+stable-diffusion-webui-reForge}"
    WEBUI_COMMIT="${WEBUI_COMMIT:-3b56b268ad9158ee8b30900973b6ccda4ec22241}"   # main, 2026-03-11
    REQS_FILE=requirements_versions.txt
    # repositories/<dir>  mirror  commit: modules/launch_utils.py pins joypaul162/Stability-AI-stablediffusion
    # @ f16630a9 (a copy of the deleted Stability-AI repository). No snapshot of that fork can be had here and
    # f16630a9 is not in the Stability-AI snapshot, so: Stability-AI's last commit cf1d67a6 (A1111's pin).
    # reForge imports `ldm` (modules/sd_models_types.py, processing.py, forge_loader.py ...): it is needed.
    REPOS=(
      "stable-diffusion-webui-assets AUTOMATIC1111+stable-diffusion-webui-assets 6f7db241d2f8ba7457bac5ca9753331f0c266917"
      "stable-diffusion-stability-ai Stability-AI+stablediffusion ${SD_REPO_COMMIT:-cf1d67a6fd5ea1aa600c4df58e5b47da45f6bdbf}"
      "generative-models Stability-AI+generative-models 45c443b316737a4ab6e40413d7794a7f5657c19f"
      "BLIP salesforce+BLIP 48211a1594f1321b00f14c9f7a5b4813144b2fb9"
    )  # k-diffusion (ab527a9a) is cloned by the launcher but reForge imports its own k_diff/ or ldm_patched.k_diffusion
    ;;
  classic)
    REFORGE_LAB="${REFORGE_LAB:-$HOME/classic-lab}"
    WEBUI_MIRROR="${WEBUI_MIRROR:-Haoming02+sd-webui-forge-classic}"
    WEBUI_COMMIT="${WEBUI_COMMIT:-1f95d7170189cf93952aca122c1ee2f306a07e4c}"   # classic, 2025-02-21
    REQS_FILE=requirements.txt
    REPOS=(
      "stable-diffusion-webui-assets AUTOMATIC1111+stable-diffusion-webui-assets 6f7db241d2f8ba7457bac5ca9753331f0c266917"
      "stable-diffusion-stability-ai Stability-AI+stablediffusion cf1d67a6fd5ea1aa600c4df58e5b47da45f6bdbf"
      "generative-models Stability-AI+generative-models 45c443b316737a4ab6e40413d7794a7f5657c19f"
    )
    ;;
  *) echo "LINE must be reforge or classic" >&2; exit 2 ;;
esac
if [[ -z "${MIRRORS:-}" ]]; then
  d="$HERE"; while [[ "$d" != "/" && ! -d "$d/.mirror" ]]; do d=$(dirname "$d"); done
  MIRRORS="$d/.mirror"; [[ -d "$MIRRORS" ]] || MIRRORS=/work/.mirror
fi
PYTHON="${PYTHON:-python3}"
TORCH_VER="2.13.0+cpu"
TV_VER="0.28.0"
WEBUI="$REFORGE_LAB/webui"
FORGE_LAB="${FORGE_LAB:-$HOME/forge-lab}"
LOGS="$REFORGE_LAB/logs"
VPY="$REFORGE_LAB/venv/bin/python"
CKPT="$REFORGE_LAB/models/Stable-diffusion/tiny-forge-sd15.safetensors"
CKPT_XL="$REFORGE_LAB/models/Stable-diffusion/tiny-forge-sdxl.safetensors"
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
  if ! git --git-dir="$m" archive "$c" 2>/dev/null | tar -x -C "$dest" 2>/dev/null; then
    [[ -n "${WEBUI_LAB_TOOLS:-}" ]] || { echo "ERROR: git archive failed for $m $c" >&2; exit 2; }
    rm -rf "$dest"; mkdir -p "$dest"
    "$PYTHON" "$WEBUI_LAB_TOOLS/extract_tree.py" "$m" "$c" "$dest" | sed 's/^/   /'
  fi
}

setup() {
  mkdir -p "$REFORGE_LAB" "$LOGS"
  # ------------------------------------------------------------------------- 1. WebUI source
  say "$LINE: $WEBUI_MIRROR @ ${WEBUI_COMMIT:0:10}"
  if [[ "$(cat "$WEBUI/.reforge-lab-commit" 2>/dev/null || true)" != "$WEBUI_COMMIT" ]]; then
    local M; M=$(mirror "$WEBUI_MIRROR")
    git --git-dir="$M" cat-file -e "$WEBUI_COMMIT^{commit}" || { echo "ERROR: $WEBUI_COMMIT not in $M" >&2; exit 2; }
    # a tree extraction, not a clone: the snapshot misses a blob (reForge: a llama tokenizer.json, unused
    # here) and checkout would fail on it; repositories/ of an earlier setup is kept
    local keep=""; [[ -d "$WEBUI/repositories" ]] && { keep="$REFORGE_LAB/.repositories.keep"; rm -rf "$keep"; mv "$WEBUI/repositories" "$keep"; }
    extract "$M" "$WEBUI_COMMIT" "$WEBUI"
    [[ -n "$keep" ]] && mv "$keep" "$WEBUI/repositories"
    # the WebUI reads its version from git: a one-commit repository of the tree, with the real hash noted
    git -C "$WEBUI" init -q && git -C "$WEBUI" add -A >/dev/null 2>&1 \
      && git -C "$WEBUI" -c user.name=lab -c user.email=lab@localhost commit -q -m "$LINE @ $WEBUI_COMMIT (tree of the snapshot)" || true
    echo "$WEBUI_COMMIT" > "$WEBUI/.reforge-lab-commit"
  fi
  echo "   $(cat "$WEBUI/.reforge-lab-commit") ($(git --git-dir="$(mirror "$WEBUI_MIRROR")" log -1 --format='%cd %s' "$WEBUI_COMMIT"))"

  # ------------------------------------------------------------------------- 2. repositories/
  say "repositories/ at the commits pinned in modules/launch_utils.py"
  for spec in "${REPOS[@]}"; do
    read -r dir mir commit <<<"$spec"
    local dest="$WEBUI/repositories/$dir"
    if [[ "$(cat "$dest/.reforge-lab-commit" 2>/dev/null || true)" == "$commit" ]]; then
      echo "   $dir @ ${commit:0:10} (present)"; continue
    fi
    extract "$(mirror "$mir")" "$commit" "$dest"
    echo "$commit" > "$dest/.reforge-lab-commit"
    echo "   $dir @ ${commit:0:10}"
  done

  # ------------------------------------------------------------------------- 3. venv + CPU torch
  say "venv + CPU torch $TORCH_VER"
  [[ -x "$VPY" ]] || "$PYTHON" -m venv "$REFORGE_LAB/venv"
  if [[ "$(tv torch)" != "$TORCH_VER" ]]; then
    pipq install "torch==2.13.0"          # the local CPU build; never a CUDA one
  fi
  cat > "$REFORGE_LAB/constraints.txt" <<EOF
# keep the CPU torch and the (patched) torchvision: never let pip replace them
torch==$TORCH_VER
torchvision==$TV_VER
EOF
  if [[ "$(tv torchvision)" != "$TV_VER" ]]; then
    pipq install --no-deps "torchvision==$TV_VER"
  fi
  local SP; SP=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if [[ -n "${WEBUI_LAB_TOOLS:-}" ]]; then
    "$VPY" "$WEBUI_LAB_TOOLS/patch_torchvision.py" "$SP" | sed 's/^/   /'
  fi

  # ------------------------------------------------------------------------- 4. requirements
  say "$REQS_FILE (adjusted -> requirements_lab.txt)"
  # setuptools: 69.5.1 is too old for torch 2.13; pydantic: reForge pins a wheel from a GitHub release
  # (Panchovix/pydantic-fixreforge), the registry's 1.10.15 instead
  sed -e 's/^setuptools==69.5.1.*/setuptools==80.9.0  # [reforge-lab] was 69.5.1; torch 2.13 needs >=77.0.3/' \
      -e 's|^https://github.com/Panchovix/pydantic-fixreforge/.*|pydantic==1.10.15  # [reforge-lab] was a GitHub release wheel|' \
      -e 's/^torch$/torch==2.13.0  # [reforge-lab] the CPU build/' \
      -e 's/^torch[<>=].*/torch==2.13.0  # [reforge-lab] the CPU build/' \
      "$WEBUI/$REQS_FILE" > "$REFORGE_LAB/requirements_lab.txt"
  # Forge Classic pins no setuptools: torch's (84) has no pkg_resources, which pytorch_lightning imports
  grep -q "^setuptools" "$REFORGE_LAB/requirements_lab.txt" \
    || echo "setuptools==80.9.0  # [reforge-lab] added: pkg_resources for pytorch_lightning; torch 2.13 needs >=77.0.3" >> "$REFORGE_LAB/requirements_lab.txt"
  diff "$WEBUI/$REQS_FILE" "$REFORGE_LAB/requirements_lab.txt" | sed 's/^/   /' || true
  local STAMP="$REFORGE_LAB/venv/.reforge-lab-reqs" HASH
  HASH=$(cat "$REFORGE_LAB/requirements_lab.txt" "$REFORGE_LAB/constraints.txt" | sha256sum | cut -c1-16)
  if [[ "$(cat "$STAMP" 2>/dev/null || true)" != "$HASH" ]]; then
    pipq install -r "$REFORGE_LAB/requirements_lab.txt" -c "$REFORGE_LAB/constraints.txt" | grep -E "^(Successfully|ERROR)" || true
    echo "$HASH" > "$STAMP"
  else
    echo "   already installed (stamp $HASH)"
  fi
  # openai CLIP: the launcher pip-installs it from a GitHub archive; the same code is on the registry
  "$VPY" -c "import clip" >/dev/null 2>&1 || pipq install --no-deps --no-build-isolation "openai-clip==1.0.1" -c "$REFORGE_LAB/constraints.txt"
  "$VPY" -c "import open_clip" >/dev/null 2>&1 || pipq install "open-clip-torch==2.30.0" -c "$REFORGE_LAB/constraints.txt"
  "$VPY" -c "import joblib, pytest" >/dev/null 2>&1 || pipq install joblib pytest -c "$REFORGE_LAB/constraints.txt"

  say "environment check"
  [[ "$(tv torch)" == "$TORCH_VER" && "$(tv torchvision)" == "$TV_VER" ]] || { echo "ERROR: torch/torchvision replaced: $(tv torch) $(tv torchvision)" >&2; exit 1; }
  "$VPY" -m pip check 2>&1 | grep -v "^WARNING: Location" | sed 's/^/   /' || true
  "$VPY" -c "
import torch, torchvision, transformers, gradio, numpy, pydantic
print(f'   torch {torch.__version__} (cuda {torch.cuda.is_available()}), torchvision {torchvision.__version__}, '
      f'transformers {transformers.__version__}, gradio {gradio.__version__}, numpy {numpy.__version__}, pydantic {pydantic.VERSION}')
" 2>&1 | grep -v -i "warn"
  "$VPY" -m pip freeze 2>/dev/null > "$REFORGE_LAB/pip-freeze.txt"

  # ------------------------------------------------------------------------- 5. tiny checkpoints
  say "tiny checkpoints (the Forge lab's: original ldm key layout)"
  mkdir -p "$REFORGE_LAB/models/Stable-diffusion" "$REFORGE_LAB/models/VAE-approx"
  local names=(tiny-forge-sd15.safetensors); [[ -z "${SKIP_SDXL:-}" ]] && names+=(tiny-forge-sdxl.safetensors)
  for name in "${names[@]}"; do
    local src="$FORGE_LAB/models/Stable-diffusion/$name" dst="$REFORGE_LAB/models/Stable-diffusion/$name"
    if [[ ! -f "$src" ]]; then
      echo "   $src missing: building the Forge lab's checkpoints (tests/tooling/forge_lab.sh setup)"
      FORGE_LAB="$FORGE_LAB" "$HERE/forge_lab.sh" setup
    fi
    # a hard link where possible (same file system), else a symlink: 0.5-2 GB each, read only
    [[ -e "$dst" ]] || ln "$src" "$dst" 2>/dev/null || ln -s "$src" "$dst"
    echo "   $dst ($(sha256sum "$dst" | cut -c1-12))"
  done
  # reForge's live preview loads models/VAE-approx/model.pt (SD1/SD2) or vaeapprox-sdxl.pt during every
  # generation and downloads it when absent: offline the generation fails (URLError). Random ones of the
  # shape modules/sd_vae_approx.py builds (the same for both: 4 latent channels)
  (cd "$REFORGE_LAB/models/VAE-approx" && "$VPY" - <<'EOF'
import os, torch
shapes = [(8, 4, 7), (16, 8, 5), (32, 16, 3), (64, 32, 3), (32, 64, 3), (16, 32, 3), (8, 16, 3), (3, 8, 3)]
for seed, name in ((7, "model.pt"), (8, "vaeapprox-sdxl.pt")):
    if os.path.exists(name):
        print(f"   VAE-approx/{name} (present)"); continue
    g, sd = torch.Generator().manual_seed(seed), {}
    for i, (out, inp, k) in enumerate(shapes, start=1):
        sd[f"conv{i}.weight"] = torch.randn(out, inp, k, k, generator=g) * (inp * k * k) ** -0.5
        sd[f"conv{i}.bias"] = torch.zeros(out)
    torch.save(sd, name); print(f"   VAE-approx/{name} (random)")
EOF
  )
  say "done.  Start it with: LINE=$LINE REFORGE_LAB=$REFORGE_LAB $0 run 7890"
}

run() {  # run [port] [extra launch args...]
  local PORT=${1:-7890}; shift $(( $# > 0 ? 1 : 0 )) || true
  mkdir -p "$LOGS" "$REFORGE_LAB/data"
  export GRADIO_SERVER_NAME=127.0.0.1
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 DIFFUSERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False \
         DO_NOT_TRACK=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  local allow=(--gradio-allowed-path "$WEBUI")
  for ext in "$REFORGE_LAB/data/extensions"/*; do
    [[ -L "$ext" ]] && allow+=(--gradio-allowed-path "$(readlink -f "$ext")")
  done
  cd "$WEBUI"
  # the models folder: reForge has A1111 1.10's --models-dir, Forge Classic calls it --model-ref
  local models_flag=--models-dir
  grep -q -- '"--models-dir"' modules/cmd_args.py || models_flag=--model-ref
  "$VPY" launch.py --skip-prepare-environment --skip-install --skip-python-version-check \
      --skip-torch-cuda-test --skip-version-check --always-cpu --api --port "$PORT" \
      --ckpt "$CKPT" --no-download-sd-model --data-dir "$REFORGE_LAB/data" "$models_flag" "$REFORGE_LAB/models" \
      --disable-console-progressbars "${allow[@]}" "$@" > "$LOGS/webui-$PORT.log" 2>&1 &
  echo $! > "$LOGS/webui-$PORT.pid"
  echo "started pid $(cat "$LOGS/webui-$PORT.pid"), log $LOGS/webui-$PORT.log"
}

wait_ready() {  # wait_ready <port> [seconds]
  local PORT=$1 limit=${2:-600} pid; pid=$(cat "$LOGS/webui-$PORT.pid")
  for _ in $(seq 1 "$limit"); do
    curl -s -m 2 -o /dev/null "http://127.0.0.1:$PORT/sdapi/v1/options" \
      && grep -q "Startup time" "$LOGS/webui-$PORT.log" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "ERROR: server exited; tail of the log:" >&2; tail -40 "$LOGS/webui-$PORT.log" >&2; return 1; }
    sleep 1
  done
  echo "ERROR: no answer on port $PORT after ${limit}s" >&2; return 1
}

stop() {
  local PORT=${1:-7890} pid
  pid=$(cat "$LOGS/webui-$PORT.pid" 2>/dev/null || true)
  [[ -n "$pid" ]] || { echo "no pid file"; return 0; }
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" || true
  rm -f "$LOGS/webui-$PORT.pid"; echo "stopped $pid"
}

smoke() {
  local PORT=${1:-7890}
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
    image = Image.open(io.BytesIO(base64.b64decode(out["images"][0]))).convert("RGB")
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
  mkdir -p "$REFORGE_LAB/data/extensions"
  ln -sfn "$REPO_ROOT" "$REFORGE_LAB/data/extensions/sd-webui-initedit"
  echo "   $REFORGE_LAB/data/extensions/sd-webui-initedit -> $REPO_ROOT"
}

unlink_ext() { rm -f "$REFORGE_LAB/data/extensions/sd-webui-initedit"; }

cmd=${1:-setup}; shift || true
case "$cmd" in
  setup) setup ;;
  run) run "$@" ;;
  wait) wait_ready "${1:-7890}" "${2:-600}" ;;
  stop) stop "$@" ;;
  smoke) smoke "$@" ;;
  link) link ;;
  unlink) unlink_ext ;;
  *) echo "usage: [LINE=reforge|classic] $0 setup|run [port]|wait [port]|stop [port]|smoke [port]|link|unlink" >&2; exit 2 ;;
esac
