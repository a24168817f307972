#!/bin/sh
# Installs `packages` into a Debian bookworm root filesystem. Runs as root inside it, from a
# directory holding this script and `packages`: the Dockerfile runs it with RUN, dfr-images
# (registry-free) with chroot, so the two recipes cannot drift apart.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export DEBIAN_FRONTEND=noninteractive

apt-get update
grep -v '^[[:space:]]*\(#\|$\)' "$here/packages" |
    xargs apt-get install -y --no-install-recommends
apt-get clean
rm -rf /var/lib/apt/lists/*
