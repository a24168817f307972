#!/bin/sh
# Turns a Debian bookworm root filesystem into dfr-prometheus. Runs as root inside that filesystem,
# from a directory holding this script and `packages`: the Dockerfile runs it with RUN,
# dfr-images (registry-free) with chroot, so the two recipes cannot drift apart.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export DEBIAN_FRONTEND=noninteractive

apt-get update
grep -v '^[[:space:]]*\(#\|$\)' "$here/packages" |
    xargs apt-get install -y --no-install-recommends
apt-get clean
rm -rf /var/lib/apt/lists/*

# The Prometheus Operator runs the pod as uid 1000 with its own configuration, rules and data
# volume, and gives the binary only arguments: the image's entrypoint must be the binary. The
# package's default configuration is never read.
# Fail the build rather than ship an image the operator cannot run.
/usr/bin/prometheus --version
/usr/bin/promtool --version
