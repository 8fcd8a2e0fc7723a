#!/bin/sh
# Installs Debian's Chromium for the headless report test (test/report.test.ts). Idempotent: does
# nothing when /usr/bin/chromium already exists. Needs root (or run it under sudo).
exec "$(dirname "$0")/apt-install.sh" chromium 'test -x /usr/bin/chromium' chromium '/usr/bin/chromium --version'
