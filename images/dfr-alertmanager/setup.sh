#!/bin/sh
# Turns a Debian bookworm root filesystem into dfr-alertmanager. Runs as root inside that filesystem,
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

# The Prometheus Operator runs the pod with its own configuration and data volume and gives the
# binary only arguments (Debian's name for it is prometheus-alertmanager): the image's
# entrypoint must be the binary.
# Fail the build rather than ship an image the operator cannot run.
/usr/bin/prometheus-alertmanager --version
