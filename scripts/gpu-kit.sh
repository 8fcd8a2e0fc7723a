#!/usr/bin/env bash
# `npm run gpu-kit` (or scripts/gpu-kit.sh): one archive to copy to a machine that has no Node.js (a GPU
# node of a cluster): the portable bundle (scripts/bundle.mjs: cnnf.mjs + cnnf-assets/), an xz-compressed
# Node.js binary (node.xz) and run.sh, which unpacks node on first use and runs `node cnnf.mjs "$@"`.
# Prints the archive's size and fails when it is over the limit (64 MB; --max-mb). Options:
#   --out FILE        the archive (default dist/cnnf-gpu-kit.tar.xz)
#   --node FILE       the Node.js binary to ship (default: the node on PATH that runs the bundler); it must
#                     match the target machine (an official Linux x64 build needs glibc >= 2.28)
#   --max-mb N        size limit in MB of 10^6 bytes (default 64)
#   anything else     passed to scripts/bundle.mjs (--platform LIST, --models demo|all)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/dist/cnnf-gpu-kit.tar.xz"
node_bin=""
max_mb=64
bundle_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a file}; shift 2 ;;
    --node) node_bin=${2:?--node needs a file}; shift 2 ;;
    --max-mb) max_mb=${2:?--max-mb needs a number}; shift 2 ;;
    *) bundle_args+=("$1"); shift ;;
  esac
done
command -v xz >/dev/null || { echo "gpu-kit: xz is needed (apt-get install xz-utils)" >&2; exit 2; }
[ -n "$node_bin" ] || node_bin=$(node -p 'process.execPath')
[ -f "$node_bin" ] || { echo "gpu-kit: no Node.js binary at $node_bin" >&2; exit 2; }
case "$max_mb" in '' | *[!0-9]*) echo "gpu-kit: --max-mb must be a whole number, got $max_mb" >&2; exit 2 ;; esac
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/cnnf-gpu-kit.XXXXXX")
trap 'rm -rf "$work"' EXIT
kit="$work/cnnf-kit"
node "$root/scripts/bundle.mjs" --outdir "$kit" ${bundle_args[@]+"${bundle_args[@]}"}

echo "gpu-kit: compressing $node_bin ($("$node_bin" --version))"
xz -T0 -6 -c "$node_bin" > "$kit/node.xz"

cat > "$kit/run.sh" <<'EOF'
#!/bin/sh
# cnnf portable kit: runs cnnf (cnnf.mjs, assets in cnnf-assets/) with the Node.js binary shipped beside it,
# unpacked from node.xz on first use (beside this script, or in $TMPDIR when this folder is read-only).
set -e
here=$(cd "$(dirname "$0")" && pwd)
node="$here/node"
if [ ! -x "$node" ]; then
  [ -w "$here" ] || node="${TMPDIR:-/tmp}/cnnf-kit-node-$(id -u)-$(cksum < "$here/node.xz" | cut -d' ' -f1)"
fi
if [ ! -x "$node" ]; then
  command -v xz >/dev/null 2>&1 || { echo "cnnf kit: xz is needed to unpack node.xz once (or: xz -dc node.xz > node && chmod +x node, elsewhere)" >&2; exit 2; }
  xz -dc "$here/node.xz" > "$node.tmp.$$"
  chmod +x "$node.tmp.$$"
  mv -f "$node.tmp.$$" "$node"
fi
exec "$node" "$here/cnnf.mjs" "$@"
EOF
chmod +x "$kit/run.sh"

mkdir -p "$(dirname "$out")"
# node.xz is compressed already: -6 is for the rest (the bundle, dawn.node, libvips; the weights barely shrink)
tar -C "$work" -cf - cnnf-kit | xz -T0 -6 > "$out.tmp"
mv -f "$out.tmp" "$out"
bytes=$(wc -c < "$out" | tr -d ' ')
echo "gpu-kit: $out: $bytes bytes ($(( bytes / 1000000 )).$(( bytes % 1000000 / 100000 )) MB; unpacked $(du -sm "$kit" | cut -f1) MiB, node.xz $(( $(wc -c < "$kit/node.xz") / 1000000 )) MB)"
if [ "$bytes" -gt $(( max_mb * 1000000 )) ]; then
  rm -f "$out"
  echo "gpu-kit: the archive is over the limit of $max_mb MB (removed; --max-mb N to allow more)" >&2
  exit 1
fi
