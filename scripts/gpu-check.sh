#!/usr/bin/env bash
# QuantLens GPU check: chat and a small GPTQ job on WebGPU (and CUDA when its provider is present) against
# this machine's CPU, from the self-contained bundle scripts/make-gpu-bundle.sh makes (Node, the built CLI,
# onnxruntime-node's native library, the Vulkan loader, the example model's generator). Nothing is
# downloaded and nothing outside the bundle's folder is written except a temporary runtime folder.
#
#   tar -xf quantlens-gpu-check.tar && bash quantlens-gpu-check/gpu-check.sh [--allow-software]
#       [--tokens N] [--samples N] [--seq-len N]
#
# The NVIDIA Vulkan driver is found by searching the usual ICD folders (also /usr/local/nvidia, where
# container runtimes mount the driver) unless VK_ICD_FILENAMES / VK_DRIVER_FILES is already set. A WebGPU
# adapter that is a CPU emulation (SwiftShader, lavapipe) fails the check unless --allow-software is given.
# Exit status: 0 ok; 1 a device or step failed; 2 the bundle is broken; 3 the adapter is not a GPU;
# 4 greedy tokens differ from the CPU's. The table is also in WORK/gpu-check.json (WORK below).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
payload="$here/payload"
work="${QUANTLENS_GPU_CHECK_WORK:-$here/work}"

die() { echo "gpu-check: $*" >&2; exit 2; }

# 1. Unpack the payload once (xz; Python's lzma module where the xz tool is missing).
if [[ ! -x "$payload/node" ]]; then
  [[ -f "$here/payload.tar.xz" ]] || die "payload.tar.xz is missing beside gpu-check.sh: unpack the whole bundle"
  rm -rf "$payload.partial" && mkdir -p "$payload.partial"
  if command -v xz >/dev/null; then
    xz -dc "$here/payload.tar.xz" | tar -x -C "$payload.partial"
  elif command -v python3 >/dev/null; then
    python3 -c 'import lzma, sys, tarfile; tarfile.open(fileobj=lzma.open(sys.argv[1])).extractall(sys.argv[2])' "$here/payload.tar.xz" "$payload.partial"
  else
    die "neither xz nor python3 is installed: cannot unpack payload.tar.xz"
  fi
  mv "$payload.partial" "$payload"
fi
node="$payload/node"
"$node" -e 0 2>/dev/null || die "the bundled Node does not run on this machine: $("$node" -e 0 2>&1 | head -1)"

# 2. The Vulkan driver: keep what the caller chose, else the NVIDIA ICD manifests found on this machine.
if [[ -z "${VK_ICD_FILENAMES:-}" && -z "${VK_DRIVER_FILES:-}" ]]; then
  icds=()
  for dir in /usr/local/nvidia/share/vulkan/icd.d /usr/local/nvidia/etc/vulkan/icd.d /usr/share/vulkan/icd.d \
             /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d /usr/local/etc/vulkan/icd.d; do
    for f in "$dir"/*.json; do
      [[ -f "$f" ]] && grep -qi nvidia "$f" && icds+=("$f")
    done
  done
  if [[ ${#icds[@]} -eq 0 ]]; then
    while IFS= read -r f; do icds+=("$f"); done < <(find /usr /etc /opt -name '*nvidia*icd*.json' 2>/dev/null | head -4)
  fi
  if [[ ${#icds[@]} -gt 0 ]]; then
    export VK_ICD_FILENAMES=$(IFS=:; echo "${icds[*]}")
    echo "NVIDIA Vulkan ICD: $VK_ICD_FILENAMES"
  else
    echo "no NVIDIA Vulkan ICD found (searched /usr/local/nvidia, /usr/share, /etc, /usr/local vulkan/icd.d and /usr /etc /opt by name);"
    echo "  in a container the driver's graphics part is needed (NVIDIA_DRIVER_CAPABILITIES including graphics, or all)"
  fi
else
  echo "Vulkan drivers from the environment: ${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}"
fi
# The bundled loader first; the driver's own libraries where container runtimes mount them.
ld="$payload/lib"
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [[ -d "$d" ]] && ld="$ld:$d"; done
export LD_LIBRARY_PATH="$ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [[ -z "${XDG_RUNTIME_DIR:-}" ]]; then
  XDG_RUNTIME_DIR=$(mktemp -d)
  export XDG_RUNTIME_DIR
fi

# 3. The example model (the bytes `npm run example` writes), generated here and checked against the manifest.
model="$work/tiny-llama"
mkdir -p "$work"
if [[ ! -f "$model/config.json" ]]; then
  echo "writing the example model (the bytes npm run example writes)…"
  (cd "$payload" && "$node" out/scripts/make-example.js "$model")
fi
(cd "$model" && sha256sum -c --quiet "$payload/example.sha256") || die "the example model written here differs from the one the bundle was made with"

# 4. The check itself.
args=(--cli "$payload/bin/quantlens.js" --model "$model" --work "$work")
[[ -x "$payload/vulkan-devices" ]] && args+=(--vulkan-devices "$payload/vulkan-devices")
echo "node $("$node" --version), onnxruntime-node $(cd "$payload" && "$node" -p 'require("onnxruntime-node/package.json").version')"
exec "$node" "$payload/out/scripts/gpu-check.js" "${args[@]}" "$@"
