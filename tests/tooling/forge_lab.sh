#!/usr/bin/env bash
# One CPU-only, offline lab for the Forge lines, with tiny random-weight SD1.5 / SDXL checkpoints, for trying
# InitEdit end to end. LINE picks the WebUI:
#   LINE=forge    (default) Forge 2: lllyasviel/stable-diffusion-webui-forge `main`, the `backend/` line, Gradio 4
#   LINE=neo      Forge Neo 2.26 (`backend/`, Gradio 4) as vendored under webui/ of the launcher bundle
#                 exo101/sd-webui-forge-neo-v3: only Neo's own tree is used. The bundle's third-party extensions
#                 (webui/extensions/*) and stray files are left out, and the files of the bundle's remote-API
#                 "generation mode" commit are taken as they were before it (NEO_BASE_COMMIT): see docs/forge.md
#   LINE=reforge  reForge: Panchovix/stable-diffusion-webui-reForge `main` (`ldm_patched`, Gradio 3.41)
#   LINE=classic  Forge Classic: Haoming02/sd-webui-forge-classic `classic` (`ldm_patched`, Gradio 3.41)
# Idempotent: re-running only redoes what is missing or out of date. tests/tooling/reforge_lab.sh is this
# script with LINE=reforge as its default.
#
#   tests/tooling/forge_lab.sh setup          sources, venv, tiny checkpoints (default)
#   tests/tooling/forge_lab.sh run [PORT]     start it headless on 127.0.0.1 (pid/log in $LAB/logs)
#   tests/tooling/forge_lab.sh wait [PORT]    until the API answers and start-up is finished
#   tests/tooling/forge_lab.sh stop [PORT]    stop the server started by `run`
#   tests/tooling/forge_lab.sh smoke [PORT]   setup, run, plain txt2img twice (same seed: identical), stop
#   tests/tooling/forge_lab.sh link           symlink this checkout into the lab's extensions folder
#   tests/tooling/forge_lab.sh unlink         remove that symlink
#
# Inputs (no internet beyond the package registry): bare git repositories (snapshots of the repositories)
# under $MIRRORS/<owner>+<name>/repo: the WebUI's, plus what its launcher would clone into repositories/
# (Forge: lllyasviel/huggingface_guess, AUTOMATIC1111/stable-diffusion-webui-assets, salesforce/BLIP; reForge
# and Classic: Stability-AI/stablediffusion and generative-models too; Neo: none); torch==2.13.0 (CPU).
# Env: LINE; the lab folder: FORGE_LAB (forge, default $HOME/forge-lab), NEO_LAB (neo, $HOME/neo-lab),
#      REFORGE_LAB (reforge / classic, $HOME/reforge-lab / $HOME/classic-lab); MIRRORS (default: the nearest
#      .mirror folder above this file); another commit: FORGE_MIRROR / FORGE_BRANCH /
#      FORGE_COMMIT (forge), NEO_MIRROR / NEO_COMMIT (neo), WEBUI_MIRROR / WEBUI_COMMIT (reforge / classic);
#      PYTHON, FORCE_MODELS=1, SKIP_SDXL=1, NEO_FAMILIES="lumina2 anima" (non-UNet checkpoints, Neo only),
#      WEBUI_LAB_TOOLS (the A1111 lab's tools/ folder).
# reForge and Classic use the Forge lab's checkpoints (linked from $FORGE_LAB/models, built there when absent);
# Forge and Neo build their own with their own network classes (make_tiny_forge_checkpoint.py).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
LINE="${LINE:-forge}"
FORGE_LAB="${FORGE_LAB:-$HOME/forge-lab}"
SUBDIR=""              # the WebUI's folder inside the snapshot
EXCLUDE=()             # paths (relative to SUBDIR) left out of the lab
REVERT_FROM=""; REVERT=()   # files taken as they were at an earlier commit of the snapshot
CKPT_MODE=build        # build: make_tiny_forge_checkpoint.py with the WebUI's classes; link: from $FORGE_LAB
case "$LINE" in
  forge)
    LAB="$FORGE_LAB"
    WEBUI_MIRROR="${FORGE_MIRROR:-lllyasviel+stable-diffusion-webui-forge}"
    WEBUI_BRANCH="${FORGE_BRANCH:-main}"
    WEBUI_COMMIT="${FORGE_COMMIT:-dfdcbab685e57677014f05a3309b48cc87383167}"   # main, 2025-06-26
    SOURCE=clone; REQS_FILE=requirements_versions.txt; LOGNAME=forge; DEFAULT_PORT=7870; OMP_DEFAULT=2
    # repositories/<dir>  mirror  commit (the hashes pinned in Forge's modules/launch_utils.py)
    REPOS=(
      "stable-diffusion-webui-assets AUTOMATIC1111+stable-diffusion-webui-assets 6f7db241d2f8ba7457bac5ca9753331f0c266917"
      "huggingface_guess lllyasviel+huggingface_guess 84826248b49bb7ca754c73293299c4d4e23a548d"
      "BLIP salesforce+BLIP 48211a1594f1321b00f14c9f7a5b4813144b2fb9"
    )
    ;;
  neo)
    LAB="${NEO_LAB:-$HOME/neo-lab}"
    WEBUI_MIRROR="${NEO_MIRROR:-exo101+sd-webui-forge-neo-v3}"
    WEBUI_BRANCH=master
    WEBUI_COMMIT="${NEO_COMMIT:-5692d2d1e6c293faf5486f7cb18c27c9a3faa758}"   # master, 2026-08-17: Neo 2.26
    SOURCE=extract; SUBDIR=webui; REQS_FILE=requirements.txt; LOGNAME=webui; DEFAULT_PORT=7870; OMP_DEFAULT=2
    # not Neo's: the bundle's extensions (third-party; one has a blob the snapshot lacks), pip output files
    # that a typo left in the tree (0.22.0, 1.14.0, ...), the bundle's Windows launcher scripts
    EXCLUDE=(extensions/ 0.22.0 1.14.0 2.31.0 9.0.0 expanded_mask.png original_mask.png)
    # the bundle's last commit adds a remote-API "generation mode" to Neo's own files: take them as before it
    REVERT_FROM="${NEO_BASE_COMMIT:-f95f632a107b64337b053f3e7719ac86165aa290}"
    REVERT=(modules/gradio_extensions.py modules/processing.py modules/ui.py modules_forge/main_entry.py
            modules_forge/shared_options.py style.css extensions-builtin/sd_forge_image_stitch/scripts/image_stitch.py
            "-modules_forge/api_providers.py")
    REPOS=()   # Neo vendors huggingface_guess, k_diffusion, ... under modules_forge/packages
    ;;
  reforge)
    LAB="${REFORGE_LAB:-$HOME/reforge-lab}"
    WEBUI_MIRROR="${WEBUI_MIRROR:-Panchovix+stable-diffusion-webui-reForge}"
    WEBUI_BRANCH=main
    WEBUI_COMMIT="${WEBUI_COMMIT:-3b56b268ad9158ee8b30900973b6ccda4ec22241}"   # main, 2026-03-11
    SOURCE=extract; REQS_FILE=requirements_versions.txt; LOGNAME=webui; DEFAULT_PORT=7890; OMP_DEFAULT=1; CKPT_MODE=link
    # modules/launch_utils.py pins joypaul162/Stability-AI-stablediffusion @ f16630a9 (a copy of the deleted
    # Stability-AI repository). No snapshot of that fork can be had here and f16630a9 is not in the Stability-AI
    # snapshot, so: Stability-AI's last commit cf1d67a6 (A1111's pin). reForge imports `ldm`: it is needed.
    REPOS=(
      "stable-diffusion-webui-assets AUTOMATIC1111+stable-diffusion-webui-assets 6f7db241d2f8ba7457bac5ca9753331f0c266917"
      "stable-diffusion-stability-ai Stability-AI+stablediffusion ${SD_REPO_COMMIT:-cf1d67a6fd5ea1aa600c4df58e5b47da45f6bdbf}"
      "generative-models Stability-AI+generative-models 45c443b316737a4ab6e40413d7794a7f5657c19f"
      "BLIP salesforce+BLIP 48211a1594f1321b00f14c9f7a5b4813144b2fb9"
    )  # k-diffusion (ab527a9a) is cloned by the launcher but reForge imports its own k_diff/ or ldm_patched.k_diffusion
    ;;
  classic)
    LAB="${REFORGE_LAB:-$HOME/classic-lab}"
    WEBUI_MIRROR="${WEBUI_MIRROR:-Haoming02+sd-webui-forge-classic}"
    WEBUI_BRANCH=classic
    WEBUI_COMMIT="${WEBUI_COMMIT:-1f95d7170189cf93952aca122c1ee2f306a07e4c}"   # classic, 2025-02-21
    SOURCE=extract; REQS_FILE=requirements.txt; LOGNAME=webui; DEFAULT_PORT=7890; OMP_DEFAULT=1; CKPT_MODE=link
    REPOS=(
      "stable-diffusion-webui-assets AUTOMATIC1111+stable-diffusion-webui-assets 6f7db241d2f8ba7457bac5ca9753331f0c266917"
      "stable-diffusion-stability-ai Stability-AI+stablediffusion cf1d67a6fd5ea1aa600c4df58e5b47da45f6bdbf"
      "generative-models Stability-AI+generative-models 45c443b316737a4ab6e40413d7794a7f5657c19f"
    )
    ;;
  *) echo "LINE must be forge, neo, reforge or classic" >&2; exit 2 ;;
esac
if [[ -z "${MIRRORS:-}" ]]; then
  d="$HERE"; while [[ "$d" != "/" && ! -d "$d/.mirror" ]]; do d=$(dirname "$d"); done
  MIRRORS="$d/.mirror"
fi
PYTHON="${PYTHON:-python3}"
TORCH_VER="2.13.0+cpu"
TV_VER="0.28.0"                       # the torchvision release that pins torch==2.13.0
WEBUI="$LAB/webui"
LOGS="$LAB/logs"
VPY="$LAB/venv/bin/python"
CKPT="$LAB/models/Stable-diffusion/tiny-forge-sd15.safetensors"
CKPT_XL="$LAB/models/Stable-diffusion/tiny-forge-sdxl.safetensors"
STAMP_NAME=".forge-lab-commit"
if [[ -z "${WEBUI_LAB_TOOLS:-}" ]]; then
  for t in "$REPO_ROOT/../shared/webui-lab/tools"; do
    [[ -d "$t" ]] && { WEBUI_LAB_TOOLS="$t"; break; }
  done
fi

say() { printf '\n== %s\n' "$*"; }
mirror() {
  local d="$MIRRORS/$1/repo"
  [[ -d "$d" ]] || { echo "ERROR: missing bare repository $d (a bare snapshot of github:${1/+//})" >&2; exit 2; }
  echo "$d"
}
pipq() { "$VPY" -m pip "$@" 2>&1 | grep -v "^WARNING: Location 'file://" || true; }
tv() { "$VPY" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true; }

extract() {  # extract <bare git dir> <tree-ish> <dest> [excluded path prefix ...]: blobs absent from a snapshot tolerated
  local m=$1 c=$2 dest=$3; shift 3
  rm -rf "$dest"; mkdir -p "$dest"
  "$PYTHON" - "$m" "$c" "$dest" "$@" <<'PY'
import os, subprocess, sys
git_dir, treeish, dest, *exclude = sys.argv[1:]
out = subprocess.run(["git", "--git-dir", git_dir, "ls-tree", "-r", "-z", treeish], check=True, capture_output=True).stdout
entries = []
for e in filter(None, out.split(b"\0")):
    meta, path = e.split(b"\t", 1)
    mode, typ, sha = meta.decode().split(" ")
    path = path.decode()
    if any(path == x.rstrip("/") or path.startswith(x if x.endswith("/") else x + "/") for x in exclude):
        continue
    entries.append((mode, typ, sha, path))
cat = subprocess.Popen(["git", "--git-dir", git_dir, "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
missing = []
for mode, typ, sha, path in entries:
    if typ != "blob":
        missing.append(path + " (submodule)"); continue
    cat.stdin.write((sha + "\n").encode()); cat.stdin.flush()
    header = cat.stdout.readline().decode().split()
    if len(header) < 3 or header[1] == "missing":
        missing.append(path); continue
    data = cat.stdout.read(int(header[2])); cat.stdout.read(1)
    full = os.path.join(dest, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    if mode == "120000":
        os.symlink(data.decode(), full)
    else:
        with open(full, "wb") as f:
            f.write(data)
        if mode == "100755":
            os.chmod(full, 0o755)
cat.stdin.close(); cat.wait()
print(f"   {len(entries) - len(missing)} files" + (f"; absent from the snapshot: {', '.join(missing)}" if missing else ""))
PY
}

source_tree() {
  say "$LINE: $WEBUI_MIRROR $WEBUI_BRANCH @ ${WEBUI_COMMIT:0:10}${SUBDIR:+ (folder $SUBDIR/)}"
  local M; M=$(mirror "$WEBUI_MIRROR")
  if [[ "$SOURCE" == clone ]]; then
    if [[ "$(git -C "$WEBUI" rev-parse HEAD 2>/dev/null || true)" != "$WEBUI_COMMIT" ]]; then
      git --git-dir="$M" cat-file -e "$WEBUI_COMMIT^{commit}" || { echo "ERROR: $WEBUI_COMMIT not in $M" >&2; exit 2; }
      rm -rf "$WEBUI.clone"
      # a local-path clone copies the object store (a file:// clone repacks, and snapshots miss some old objects)
      git -c advice.detachedHead=false clone -q --no-checkout "$M" "$WEBUI.clone"
      git -C "$WEBUI.clone" -c advice.detachedHead=false checkout -q "$WEBUI_COMMIT"
      if [[ -d "$WEBUI" ]]; then   # keep repositories/ of an earlier setup
        rm -rf "$WEBUI/.git"; mv "$WEBUI.clone/.git" "$WEBUI/.git"; rm -rf "$WEBUI.clone"
        git -C "$WEBUI" checkout -q -f "$WEBUI_COMMIT" -- .
      else
        mv "$WEBUI.clone" "$WEBUI"
      fi
    fi
    git -C "$WEBUI" log -1 --format='   %H %cd %s'
    git -C "$WEBUI" status --porcelain --untracked-files=no | sed 's/^/   MODIFIED: /'
    return
  fi
  # a tree extraction, not a clone: snapshots lack some blobs (reForge: a llama tokenizer.json these models never
  # use; the Neo bundle: a binary of one of its extensions); repositories/ of an earlier setup is kept
  local want="$WEBUI_COMMIT${SUBDIR:+:$SUBDIR}${REVERT_FROM:+ revert@$REVERT_FROM}"
  if [[ "$(cat "$WEBUI/$STAMP_NAME" 2>/dev/null || cat "$WEBUI/.reforge-lab-commit" 2>/dev/null || true)" != "$want" ]]; then
    git --git-dir="$M" cat-file -e "$WEBUI_COMMIT^{commit}" || { echo "ERROR: $WEBUI_COMMIT not in $M" >&2; exit 2; }
    local keep=""; [[ -d "$WEBUI/repositories" ]] && { keep="$LAB/.repositories.keep"; rm -rf "$keep"; mv "$WEBUI/repositories" "$keep"; }
    extract "$M" "$WEBUI_COMMIT${SUBDIR:+:$SUBDIR}" "$WEBUI" "${EXCLUDE[@]}"
    [[ -n "$keep" ]] && mv "$keep" "$WEBUI/repositories"
    ((${#EXCLUDE[@]})) && echo "   left out: ${EXCLUDE[*]}"
    [[ " ${EXCLUDE[*]} " == *" extensions/ "* ]] && mkdir -p "$WEBUI/extensions"
    local f
    for f in "${REVERT[@]}"; do
      if [[ "$f" == -* ]]; then rm -f "$WEBUI/${f#-}"; echo "   removed ${f#-} (not in ${REVERT_FROM:0:7})"
      else git --git-dir="$M" show "$REVERT_FROM:${SUBDIR:+$SUBDIR/}$f" > "$WEBUI/$f"; echo "   $f as at ${REVERT_FROM:0:7}"; fi
    done
    # the WebUI reads its version from git: a one-commit repository of the tree, with the real hash noted
    rm -rf "$WEBUI/.git"
    git -C "$WEBUI" init -q && git -C "$WEBUI" add -A >/dev/null 2>&1 \
      && git -C "$WEBUI" -c user.name=lab -c user.email=lab@localhost commit -q -m "$LINE @ $want (tree of the snapshot)" || true
    echo "$want" > "$WEBUI/$STAMP_NAME"
  fi
  echo "   $want ($(git --git-dir="$M" log -1 --format='%cd %s' "$WEBUI_COMMIT"))"
  [[ -f "$WEBUI/modules_forge/forge_version.py" ]] && sed 's/^/   forge_version: /' "$WEBUI/modules_forge/forge_version.py"
  return 0
}

repositories() {
  ((${#REPOS[@]})) || return 0
  say "repositories/ at the commits pinned in modules/launch_utils.py"
  local spec dir mir commit dest
  for spec in "${REPOS[@]}"; do
    read -r dir mir commit <<<"$spec"
    dest="$WEBUI/repositories/$dir"
    if [[ "$(cat "$dest/$STAMP_NAME" 2>/dev/null || cat "$dest/.reforge-lab-commit" 2>/dev/null || true)" == "$commit" ]]; then
      echo "   $dir @ ${commit:0:10} (present)"; continue
    fi
    extract "$(mirror "$mir")" "$commit" "$dest"
    echo "$commit" > "$dest/$STAMP_NAME"
    echo "   $dir @ ${commit:0:10}"
  done
}

venv_and_requirements() {
  say "venv + CPU torch $TORCH_VER"
  [[ -x "$VPY" ]] || "$PYTHON" -m venv "$LAB/venv"
  if [[ "$(tv torch)" != "$TORCH_VER" ]]; then
    pipq install "torch==2.13.0"          # the local CPU build; never a CUDA one
  fi
  cat > "$LAB/constraints.txt" <<EOC
# keep the CPU torch and the (patched) torchvision: never let pip replace them
torch==$TORCH_VER
torchvision==$TV_VER
EOC
  if [[ "$(tv torchvision)" != "$TV_VER" ]]; then
    pipq install --no-deps "torchvision==$TV_VER"
  fi
  local SP; SP=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if [[ -n "${WEBUI_LAB_TOOLS:-}" ]]; then
    # the registry's torchvision is CUDA-built: guard its two unguarded fake-op registrations
    "$VPY" "$WEBUI_LAB_TOOLS/patch_torchvision.py" "$SP" | sed 's/^/   /'
  fi

  say "$REQS_FILE (adjusted -> requirements_lab.txt)"
  # setuptools: 69.5.1 is too old for torch 2.13; pydantic: reForge pins a wheel from a GitHub release
  # (Panchovix/pydantic-fixreforge), the registry's 1.10.15 instead
  sed -e 's/^setuptools==69.5.1.*/setuptools==80.9.0  # [lab] was 69.5.1; torch 2.13 needs >=77.0.3/' \
      -e 's|^https://github.com/Panchovix/pydantic-fixreforge/.*|pydantic==1.10.15  # [lab] was a GitHub release wheel|' \
      -e 's/^torch$/torch==2.13.0  # [lab] the CPU build/' \
      -e 's/^torch[<>=].*/torch==2.13.0  # [lab] the CPU build/' \
      "$WEBUI/$REQS_FILE" > "$LAB/requirements_lab.txt"
  # Forge Classic pins no setuptools: torch's (84) has no pkg_resources, which pytorch_lightning imports
  grep -q "^setuptools" "$LAB/requirements_lab.txt" \
    || echo "setuptools==80.9.0  # [lab] added: pkg_resources for pytorch_lightning; torch 2.13 needs >=77.0.3" >> "$LAB/requirements_lab.txt"
  diff "$WEBUI/$REQS_FILE" "$LAB/requirements_lab.txt" | sed 's/^/   /' || true
  local STAMP="$LAB/venv/.forge-lab-reqs" HASH
  HASH=$(cat "$LAB/requirements_lab.txt" "$LAB/constraints.txt" | sha256sum | cut -c1-16)
  if [[ "$(cat "$STAMP" 2>/dev/null || cat "$LAB/venv/.reforge-lab-reqs" 2>/dev/null || true)" != "$HASH" ]]; then
    if [[ "$LINE" == neo ]]; then
      # Neo's launcher installs gradio on its own first (GRADIO_PACKAGE in modules/launch_utils.py), then
      # requirements.txt, whose Pillow 12.2.0 replaces the Pillow < 11 gradio 4.40 asks for (one resolver run
      # refuses the pair: ResolutionImpossible); the lab does the same, in the same order
      pipq install "gradio==4.40.0" "gradio_rangeslider==0.0.8" -c "$LAB/constraints.txt" | grep -E "^(Successfully|ERROR)" || true
    fi
    pipq install -r "$LAB/requirements_lab.txt" -c "$LAB/constraints.txt" | grep -E "^(Successfully|ERROR)" || true
    echo "$HASH" > "$STAMP"
  else
    echo "   already installed (stamp $HASH)"
  fi
  if [[ "$LINE" != neo ]]; then
    # openai CLIP: the launcher pip-installs it from a GitHub archive; the same code is on the registry
    "$VPY" -c "import clip" >/dev/null 2>&1 || pipq install --no-deps --no-build-isolation "openai-clip==1.0.1" -c "$LAB/constraints.txt"
  fi
  if [[ "$LINE" == reforge || "$LINE" == classic ]]; then
    "$VPY" -c "import open_clip" >/dev/null 2>&1 || pipq install "open-clip-torch==2.30.0" -c "$LAB/constraints.txt"
  fi
  # joblib: Forge's built-in soft-inpainting script imports it (Forge does not pin it); pytest for the e2e tests
  "$VPY" -c "import joblib, pytest" >/dev/null 2>&1 || pipq install joblib pytest -c "$LAB/constraints.txt"

  say "environment check"
  [[ "$(tv torch)" == "$TORCH_VER" && "$(tv torchvision)" == "$TV_VER" ]] || { echo "ERROR: torch/torchvision replaced: $(tv torch) $(tv torchvision)" >&2; exit 1; }
  "$VPY" -m pip check 2>&1 | grep -v "^WARNING: Location" | sed 's/^/   /' || true
  "$VPY" -c "
import sys, torch, torchvision, transformers, gradio, numpy, pydantic
print(f'   python {sys.version.split()[0]}, torch {torch.__version__} (cuda {torch.cuda.is_available()}), torchvision {torchvision.__version__}, '
      f'transformers {transformers.__version__}, gradio {gradio.__version__}, numpy {numpy.__version__}, pydantic {pydantic.VERSION}')
" 2>&1 | grep -v -i "warn"
  "$VPY" -m pip freeze 2>/dev/null > "$LAB/pip-freeze.txt"
}

vae_approx() {  # random VAE-approx models: the live preview loads them during every generation and downloads
  # them when absent, so offline a generation fails (URLError); the shape modules/sd_vae_approx.py builds
  mkdir -p "$LAB/models/VAE-approx"
  (cd "$LAB/models/VAE-approx" && "$VPY" - <<'PY'
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
PY
  )
}

checkpoints() {
  mkdir -p "$LAB/models/Stable-diffusion"
  if [[ "$CKPT_MODE" == link ]]; then
    say "tiny checkpoints (the Forge lab's: original ldm key layout)"
    local names=(tiny-forge-sd15.safetensors) name src dst; [[ -z "${SKIP_SDXL:-}" ]] && names+=(tiny-forge-sdxl.safetensors)
    for name in "${names[@]}"; do
      src="$FORGE_LAB/models/Stable-diffusion/$name"; dst="$LAB/models/Stable-diffusion/$name"
      if [[ ! -f "$src" ]]; then
        echo "   $src missing: building the Forge lab's checkpoints (LINE=forge $0 setup)"
        env -u REFORGE_LAB LINE=forge FORGE_LAB="$FORGE_LAB" "$HERE/forge_lab.sh" setup
      fi
      # a hard link where possible (same file system), else a symlink: 0.5-2 GB each, read only
      [[ -e "$dst" ]] || ln "$src" "$dst" 2>/dev/null || ln -s "$src" "$dst"
      echo "   $dst ($(sha256sum "$dst" | cut -c1-12))"
    done
  else
    say "tiny checkpoints (built with this WebUI's own network classes)"
    if [[ -n "${FORCE_MODELS:-}" || ! -f "$CKPT" ]]; then
      (cd "$WEBUI" && "$VPY" "$HERE/make_tiny_forge_checkpoint.py" --forge "$WEBUI" --out "$CKPT")
    else
      echo "   $CKPT (present)"
    fi
    sha256sum "$CKPT" | sed 's/^/   /'
    # SDXL (SKIP_SDXL=1 to skip): 2.1 GB, ~1.5 min; full-shape CLIP-G (695 M parameters) and CLIP-L
    if [[ -z "${SKIP_SDXL:-}" ]]; then
      if [[ -n "${FORCE_MODELS:-}" || ! -f "$CKPT_XL" ]]; then
        (cd "$WEBUI" && "$VPY" "$HERE/make_tiny_forge_checkpoint.py" --kind sdxl --forge "$WEBUI" --out "$CKPT_XL")
      else
        echo "   $CKPT_XL (present)"
      fi
      sha256sum "$CKPT_XL" | sed 's/^/   /'
    fi
    # non-UNet families (Neo), NEO_FAMILIES="lumina2 anima": lumina2: a 2-layer Lumina 2 DiT with a full-shape
    # random Gemma 2 2B text encoder and the 16-channel Flux VAE in Neta-Lumina's all-in-one layout (6.4 GB, ~5 min
    # here); anima: the full-size Anima DiT (2 B), Qwen3 0.6B with its LLM adapter, the 3-D Wan VAE (5.5 GB)
    local fam
    for fam in ${NEO_FAMILIES:-}; do
      [[ "$LINE" == neo ]] || { echo "   NEO_FAMILIES: only for LINE=neo"; break; }
      local out="$LAB/models/Stable-diffusion/tiny-neo-$fam.safetensors"
      if [[ -n "${FORCE_MODELS:-}" || ! -f "$out" ]]; then
        (cd "$WEBUI" && "$VPY" "$HERE/make_tiny_forge_checkpoint.py" --kind "$fam" --forge "$WEBUI" --out "$out")
      else
        echo "   $out (present)"
      fi
    done
  fi
  vae_approx
}

setup() {
  mkdir -p "$LAB" "$LOGS"
  source_tree
  repositories
  venv_and_requirements
  checkpoints
  say "done.  Start it with: LINE=$LINE $0 run $DEFAULT_PORT   (lab: $LAB)"
}

launch_flags() {  # the flags of this WebUI's launcher for: CPU, models folder, initial checkpoint
  cd "$WEBUI"
  local cpu=--always-cpu models=--models-dir   # --always-cpu: Forge's CPU switch (A1111's --use-cpu all crashes)
  [[ "$LINE" == neo ]] && cpu=--cpu
  grep -q -- '"--models-dir"' modules/cmd_args.py modules/paths_internal.py 2>/dev/null || models=--model-ref  # Classic, Neo
  FLAGS=("$cpu" "$models" "$LAB/models")
  if grep -q -- '"--ckpt"' modules/cmd_args.py; then
    FLAGS+=(--ckpt "$CKPT" --no-download-sd-model)
  fi   # Neo has neither: it loads the checkpoint its settings name, else the first one found
}

run() {  # run [port] [extra launch args...]
  local PORT=${1:-$DEFAULT_PORT}; shift $(( $# > 0 ? 1 : 0 )) || true
  # data/tmp: Forge Neo's default temp_dir, which it never creates (gallery images fail without it)
  mkdir -p "$LOGS" "$LAB/data/tmp"
  # loopback only; no --listen/--server-name (they mark the UI non-local)
  export GRADIO_SERVER_NAME=127.0.0.1
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 DIFFUSERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False \
         DO_NOT_TRACK=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-$OMP_DEFAULT}
  # gradio 4 serves file= URLs only under allowed paths (Forge's default: the data dir alone): add the
  # WebUI folder (its own javascript/, style.css) and the real folders of linked extensions
  local allow=(--gradio-allowed-path "$WEBUI") ext
  for ext in "$LAB/data/extensions"/*; do
    [[ -L "$ext" ]] && allow+=(--gradio-allowed-path "$(readlink -f "$ext")")
  done
  launch_flags
  "$VPY" launch.py --skip-prepare-environment --skip-install --skip-python-version-check \
      --skip-torch-cuda-test --skip-version-check --api --port "$PORT" "${FLAGS[@]}" \
      --data-dir "$LAB/data" --disable-console-progressbars "${allow[@]}" "$@" > "$LOGS/$LOGNAME-$PORT.log" 2>&1 &
  echo $! > "$LOGS/$LOGNAME-$PORT.pid"
  echo "started pid $(cat "$LOGS/$LOGNAME-$PORT.pid"), log $LOGS/$LOGNAME-$PORT.log"
}

wait_ready() {  # wait_ready <port> [seconds]
  local PORT=$1 limit=${2:-600} pid; pid=$(cat "$LOGS/$LOGNAME-$PORT.pid")
  for _ in $(seq 1 "$limit"); do
    # the API answers before the UI (and so the scripts' argument slots) is built: also wait for the log's
    # "Startup time" line, or the first txt2img with alwayson_scripts fails in init_script_args (IndexError)
    curl -s -m 2 -o /dev/null "http://127.0.0.1:$PORT/sdapi/v1/options" \
      && grep -q "Startup time" "$LOGS/$LOGNAME-$PORT.log" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "ERROR: server exited; tail of the log:" >&2; tail -40 "$LOGS/$LOGNAME-$PORT.log" >&2; return 1; }
    sleep 1
  done
  echo "ERROR: no answer on port $PORT after ${limit}s" >&2; return 1
}

stop() {
  local PORT=${1:-$DEFAULT_PORT} pid
  pid=$(cat "$LOGS/$LOGNAME-$PORT.pid" 2>/dev/null || true)
  [[ -n "$pid" ]] || { echo "no pid file"; return 0; }
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" || true
  rm -f "$LOGS/$LOGNAME-$PORT.pid"; echo "stopped $pid"
}

smoke() {
  local PORT=${1:-$DEFAULT_PORT}
  setup
  say "smoke test on port $PORT"
  run "$PORT"
  wait_ready "$PORT"
  local rc=0
  "$VPY" - "$PORT" <<'PY' || rc=1
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
PY
  stop "$PORT"
  return $rc
}

link() {
  mkdir -p "$LAB/data/extensions"
  ln -sfn "$REPO_ROOT" "$LAB/data/extensions/sd-webui-initedit"
  echo "   $LAB/data/extensions/sd-webui-initedit -> $REPO_ROOT"
}

unlink_ext() { rm -f "$LAB/data/extensions/sd-webui-initedit"; }

cmd=${1:-setup}; shift || true
case "$cmd" in
  setup) setup ;;
  run) run "$@" ;;
  wait) wait_ready "${1:-$DEFAULT_PORT}" "${2:-600}" ;;
  stop) stop "$@" ;;
  smoke) smoke "$@" ;;
  link) link ;;
  unlink) unlink_ext ;;
  *) echo "usage: [LINE=forge|neo|reforge|classic] $0 setup|run [port]|wait [port]|stop [port]|smoke [port]|link|unlink" >&2; exit 2 ;;
esac
