#!/bin/sh
# Installs Debian's PyTorch (CPU) for the side-by-side speed baseline of `npm run bench`
# (bench/torch_reference_bench.py runs under /usr/bin/python3). Idempotent: does nothing when
# /usr/bin/python3 can already import torch. Needs root (or run it under sudo).
set -eu

if /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; then
  echo "torch already installed: $(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-torch.sh: must run as root (try: sudo $0)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update && apt-get install -y --no-install-recommends python3-torch

/usr/bin/python3 -c 'import torch; print("torch", torch.__version__)'
