#!/usr/bin/env bash
# Installs every host package the test bed, the demo and the test suite need.
# Idempotent: a second run on a prepared machine is a no-op apart from apt's checks.
set -euo pipefail
need=(debootstrap systemd-container iproute2 openssh-client rsync golang-go dpkg-dev
      make gcc ca-certificates xz-utils util-linux procps)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# deb-src entry for the kubernetes source package, in a file of its own,
# from the archive apt already uses for bookworm.
src=/etc/apt/sources.list.d/kubectl-plugins-src.sources
if [ ! -f "$src" ]; then
  archive=$(bash "$(dirname "$0")/debian-archive.sh")
  cat >"$src" <<SRC
Types: deb-src
URIs: $archive
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  updated=no
fi
if [ "${#missing[@]}" -gt 0 ] || [ "${updated:-yes}" = no ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
echo "prerequisites present"
