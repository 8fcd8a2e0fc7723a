#!/bin/sh
# Installs Debian's PyTorch (CPU) for the side-by-side speed baseline of `npm run bench`
# (bench/torch_reference_bench.py runs under /usr/bin/python3). Idempotent: does nothing when
# /usr/bin/python3 can already import torch. Needs root (or run it under sudo).
exec "$(dirname "$0")/apt-install.sh" torch "/usr/bin/python3 -c 'import torch'" python3-torch \
  "/usr/bin/python3 -c 'import torch; print(\"torch\", torch.__version__)'"
