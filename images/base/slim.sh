#!/bin/sh
# Makes a fresh `debootstrap --variant=minbase bookworm` root filesystem match the
# debian:bookworm-slim image the Dockerfiles start FROM, so that each image's setup.sh runs on the
# same base in both recipes. dfr-images only; runs as root inside the root filesystem (chroot).
set -eu
export DEBIAN_FRONTEND=noninteractive

# As in Debian's image: there is no init, so no package may start a service.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d

# Debian's slim image keeps no documentation, manuals or translations, from any later install
# either (debuerreotype's slimify lists).
cat >/etc/dpkg/dpkg.cfg.d/docker <<'LIST'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
LIST
# debootstrap installed its packages before that list existed.
find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
rm -rf /usr/share/groff/* /usr/share/info/* /usr/share/linda/* /usr/share/lintian/overrides/* \
    /usr/share/man/*
echo 'Acquire::Languages "none";' >/etc/apt/apt.conf.d/docker-no-languages

# Debian's image also takes point-release and security updates; debootstrap set up neither.
rm -f /etc/apt/sources.list
cat >/etc/apt/sources.list.d/debian.sources <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
apt-get update
apt-get upgrade -y
apt-get clean
rm -rf /var/lib/apt/lists/*
