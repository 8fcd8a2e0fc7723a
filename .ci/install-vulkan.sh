#!/bin/sh
# Installs Mesa's software Vulkan driver (llvmpipe) from bookworm-backports, so that the `webgpu` npm package
# (Dawn) finds an adapter on a machine without a GPU and `npm test` runs the webgpu conformance rows.
# Bookworm's own Mesa 22.3 gives no adapter ("Vulkan shaderUniform*ArrayDynamicIndexing required").
# Idempotent: does nothing when the backports driver is already there. Needs root (or run it under sudo).
set -eu
if dpkg-query -W -f '${Version}' mesa-vulkan-drivers 2>/dev/null | grep -q bpo; then
  echo "vulkan already installed: mesa-vulkan-drivers $(dpkg-query -W -f '${Version}' mesa-vulkan-drivers)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "installing the Vulkan driver needs root: run .ci/install-vulkan.sh under sudo" >&2
  exit 1
fi
list=/etc/apt/sources.list.d/cnnf-backports.sources
# the same mirror as the system's bookworm suite (deb822 or one-line sources); comment lines are skipped
# (Debian's images name a snapshot.debian.org URL in a comment, which need not resolve), and so is a list
# this script wrote before
mirror=$(for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do [ -f "$f" ] && [ "$f" != "$list" ] && cat "$f"; done 2>/dev/null \
  | grep -v -E '^[[:space:]]*#' | grep -o -E 'https?://[^ ]+/debian/?' | grep -v security | head -n 1)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
rm -f "$list"
if ! grep -rqs --exclude="$(basename "$list")" -E '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" > "$list"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends -t bookworm-backports libvulkan1 mesa-vulkan-drivers >/dev/null
echo "vulkan installed: mesa-vulkan-drivers $(dpkg-query -W -f '${Version}' mesa-vulkan-drivers)"
