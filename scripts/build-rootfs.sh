#!/usr/bin/env bash
# Builds a test-bed server's root file system once per machine: Debian minbase
# with systemd as init, sshd, etcd, sudo and the locales package (de_DE.UTF-8
# generated, not the default: a bed that asks sets it).
#
#   build-rootfs.sh [SUITE [ARCH]]     SUITE: bookworm (default) or bullseye
#                                      ARCH:  amd64 (default) or arm64
#
# Cached outside the checkout under $KCP_CACHE/rootfs/<suite>-<arch>-<key>,
# where key is a hash of the package list and of the setup below: an edit
# elsewhere in this script does not rebuild it. Every bed boots an overlay
# of it, so runs never see each other's leftovers. Prints the root's path
# as its last line.
set -euo pipefail
export LC_ALL=C
suite=${1:-bookworm}
arch=${2:-amd64}
case "$suite" in bookworm|bullseye) ;; *) echo "build-rootfs.sh: suite $suite: bookworm or bullseye" >&2; exit 2 ;; esac
case "$arch" in amd64|arm64) ;; *) echo "build-rootfs.sh: arch $arch: amd64 or arm64" >&2; exit 2 ;; esac
cache=${KCP_CACHE:-/var/cache/kubectl-plugins}
pkgs=systemd,systemd-sysv,dbus,openssh-server,iproute2,etcd-server,sudo,ca-certificates,procps,netcat-openbsd,openssl,zstd,locales

# What the root holds besides the packages: change SETUP_VERSION when the
# setup below changes what ends up in the root.
SETUP_VERSION=2
key=$(printf '%s\n' "$pkgs" "$SETUP_VERSION" | sha256sum | cut -c1-12)
root="$cache/rootfs/$suite-$arch-$key"
if [ -f "$root/.complete" ]; then echo "rootfs: cached in $root" >&2; echo "$root"; exit 0; fi

mkdir -p "$cache/rootfs"
exec 9>"$root.lock"
flock -n 9 || { echo "another build of $root is running; waiting..." >&2; flock 9; }
if [ -f "$root/.complete" ]; then echo "$root"; exit 0; fi

mirror=$(bash "$(dirname "$0")/debian-archive.sh")
start=$(date +%s)
tmp="$root.tmp"
rm -rf "$tmp"
log="$cache/rootfs/debootstrap-$suite-$arch.log"
foreign=()
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
  # The second stage runs the target's binaries: under qemu-user, registered
  # in binfmt_misc (scripts/binfmt.sh).
  bash "$(dirname "$0")/binfmt.sh" "$arch" >&2
  foreign=(--foreign)
fi
echo "[rootfs] debootstrap $suite/$arch (minbase + $pkgs)" >&2
debootstrap "${foreign[@]}" --arch="$arch" --variant=minbase --include="$pkgs" "$suite" "$tmp" "$mirror" >"$log" 2>&1 || {
  echo "[rootfs] debootstrap failed; last lines of $log:" >&2
  tail -20 "$log" >&2; exit 1; }
if [ "${#foreign[@]}" -gt 0 ]; then
  echo "[rootfs] second stage, emulated (several minutes)" >&2
  chroot "$tmp" /debootstrap/debootstrap --second-stage >>"$log" 2>&1 || {
    echo "[rootfs] second stage failed; last lines of $log:" >&2; tail -20 "$log" >&2; exit 1; }
fi

# Key-only sshd; host keys are made per bed at boot time, never baked in.
rm -f "$tmp"/etc/ssh/ssh_host_*
cat >"$tmp/etc/ssh/sshd_config.d/bed.conf" <<'CONF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
CONF
# A non-root account with passwordless sudo, for the plugins' sudo path.
chroot "$tmp" useradd -m -s /bin/bash deploy
echo 'deploy ALL=(ALL) NOPASSWD: ALL' >"$tmp/etc/sudoers.d/deploy"
chmod 0440 "$tmp/etc/sudoers.d/deploy"
# And one without sudo: the "no privilege" preflight path, and the local
# user who tries to block, mislead or redirect a run.
chroot "$tmp" useradd -m -s /bin/bash nosudo
# A second locale, for beds whose system locale is not English.
sed -i 's/^# *de_DE.UTF-8 UTF-8/de_DE.UTF-8 UTF-8/' "$tmp/etc/locale.gen"
chroot "$tmp" locale-gen >>"$log" 2>&1
# Nothing in the container may need the network to boot.
chroot "$tmp" systemctl mask systemd-networkd-wait-online.service systemd-timesyncd.service >/dev/null 2>&1 || true
chroot "$tmp" systemctl enable etcd ssh >/dev/null 2>&1
rm -f "$tmp/etc/machine-id" && : >"$tmp/etc/machine-id"
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
touch "$tmp/.complete"
mv "$tmp" "$root"
echo "[rootfs] $suite/$arch built in $(( $(date +%s) - start ))s" >&2
echo "$root"
