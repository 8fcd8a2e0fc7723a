#!/bin/sh
# Installs Debian's Chromium for the headless report test (test/report.test.ts). Idempotent: does
# nothing when /usr/bin/chromium already exists. Needs root (or run it under sudo).
set -eu

if [ -x /usr/bin/chromium ]; then
  echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-chromium.sh: must run as root (try: sudo $0)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update && apt-get install -y --no-install-recommends chromium

/usr/bin/chromium --version
