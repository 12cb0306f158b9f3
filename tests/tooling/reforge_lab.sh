#!/usr/bin/env bash
# The lab of the `ldm_patched` Forge line: reForge (default) or, with LINE=classic, Forge Classic. It is
# tests/tooling/forge_lab.sh (one lab script for every Forge line) with LINE=reforge as the default; same
# commands (setup, run, wait, stop, smoke, link, unlink), same environment: REFORGE_LAB (default
# $HOME/reforge-lab, $HOME/classic-lab for LINE=classic), WEBUI_MIRROR / WEBUI_COMMIT, FORGE_LAB (whose tiny
# checkpoints are linked), MIRRORS, PYTHON, SKIP_SDXL=1, WEBUI_LAB_TOOLS. Default port 7890.
set -euo pipefail
LINE="${LINE:-reforge}"
case "$LINE" in
  reforge|classic) ;;
  *) echo "reforge_lab.sh: LINE must be reforge or classic (forge_lab.sh serves LINE=forge|neo)" >&2; exit 2 ;;
esac
LINE="$LINE" exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/forge_lab.sh" "$@"
