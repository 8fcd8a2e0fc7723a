#!/bin/sh
# Installs one Debian package unless a probe command already succeeds (idempotent). Needs root; the
# install scripts and .ci/run call it (under sudo when they are not root).
#   apt-install.sh NAME 'PROBE COMMAND' PACKAGE 'VERSION COMMAND'
set -eu
name=$1 probe=$2 package=$3 version=$4

if sh -c "$probe" >/dev/null 2>&1; then
  echo "$name already installed: $(sh -c "$version" 2>/dev/null || echo yes)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "installing $name needs root: run the install script under sudo" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq --no-install-recommends "$package" >/dev/null
sh -c "$version"
