#!/bin/sh
# Turns a Debian bookworm root filesystem into dfr-postgres. Runs as root inside that filesystem,
# from a directory holding this script, `packages` and `requirements.txt`: the Dockerfile runs it
# with RUN, dfr-images (registry-free) with chroot, so the two recipes cannot drift apart.
# dfr-images also puts the Patroni wheel in ./wheels, so that the chroot needs no PyPI access.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export DEBIAN_FRONTEND=noninteractive

# Exactly 999:999, which the operator's pod spec runs as; postgresql-common would otherwise take
# the next free system id.
groupadd --system --gid 999 postgres
useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --no-create-home \
    --shell /bin/bash --comment "PostgreSQL administrator" postgres

# Patroni runs initdb on the data volume; a cluster in the image would only be dead weight.
mkdir -p /etc/postgresql-common
echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf

apt-get update
# confold keeps the createcluster.conf written above.
grep -v '^[[:space:]]*\(#\|$\)' "$here/packages" |
    UCF_FORCE_CONFFOLD=1 xargs apt-get install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confold

python3 -m venv --system-site-packages /opt/patroni
if [ -d "$here/wheels" ]; then
    set -- --no-index --find-links "$here/wheels"
fi
/opt/patroni/bin/pip install --no-cache-dir --no-deps --require-hashes "$@" \
    -r "$here/requirements.txt"
# pip is only needed to install; the running image has no use for it.
/opt/patroni/bin/pip uninstall --yes pip setuptools
ln -s /opt/patroni/bin/patroni /usr/local/bin/patroni
ln -s /opt/patroni/bin/patronictl /usr/local/bin/patronictl

# dfr-images writes the layer with every mtime at 0, which would make timestamp-checked .pyc
# files stale and every Patroni start recompile its modules.
python3 -m compileall -q -f --invalidation-mode unchecked-hash \
    /usr/lib/python3.11 /usr/lib/python3/dist-packages /opt/patroni/lib

# The socket directory, which postgresql-common only makes at boot; the operator mounts a
# volume here, a plain `docker run` gets a working default.
install -d -o postgres -g postgres -m 2775 /var/run/postgresql

# ssl-cert made a key pair at install time, which every copy of the image would share; the
# operator gives each server its own certificate.
rm -f /etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem

apt-get clean
rm -rf /var/lib/apt/lists/*

# Fail the build rather than ship an image the operator cannot run.
test "$(id -u postgres):$(id -g postgres)" = "999:999"
grep -qx "create_main_cluster = false" /etc/postgresql-common/createcluster.conf
test ! -e /etc/postgresql/15/main
/usr/lib/postgresql/15/bin/postgres --version
patroni --version
prometheus-postgres-exporter --version
