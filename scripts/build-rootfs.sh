#!/usr/bin/env bash
# Builds the test bed's server root file system once per machine: Debian bookworm
# minbase with systemd as init, sshd, etcd and sudo. Cached outside the checkout
# under $KCP_CACHE/rootfs/<hash of this script>; every bed boots an overlay of it,
# so runs never see each other's leftovers. Prints the root's path as its last line.
set -euo pipefail
cache=${KCP_CACHE:-/var/cache/kubectl-plugins}
mirror=$(bash "$(dirname "$0")/debian-archive.sh")
hash=$(sha256sum "$0" | cut -c1-12)
root="$cache/rootfs/bookworm-$hash"
if [ -f "$root/.complete" ]; then echo "rootfs: cached in $root" >&2; echo "$root"; exit 0; fi

mkdir -p "$cache/rootfs"
exec 9>"$cache/rootfs/bookworm-$hash.lock"
flock -n 9 || { echo "another rootfs build is running; waiting..." >&2; flock 9; }
if [ -f "$root/.complete" ]; then echo "$root"; exit 0; fi

start=$(date +%s)
tmp="$root.tmp"
rm -rf "$tmp"
pkgs=systemd,systemd-sysv,dbus,openssh-server,iproute2,etcd-server,sudo,ca-certificates,procps,netcat-openbsd,openssl,zstd
echo "[rootfs] debootstrap bookworm (minbase + $pkgs)" >&2
debootstrap --variant=minbase --include="$pkgs" bookworm "$tmp" "$mirror" >"$cache/rootfs/debootstrap.log" 2>&1 || {
  echo "[rootfs] debootstrap failed; last lines of $cache/rootfs/debootstrap.log:" >&2
  tail -20 "$cache/rootfs/debootstrap.log" >&2; exit 1; }

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
# And one without sudo, for the "no privilege" preflight path.
chroot "$tmp" useradd -m -s /bin/bash nosudo
# Nothing in the container may need the network to boot.
chroot "$tmp" systemctl mask systemd-networkd-wait-online.service systemd-timesyncd.service >/dev/null 2>&1 || true
chroot "$tmp" systemctl enable etcd ssh >/dev/null 2>&1
rm -f "$tmp/etc/machine-id" && : >"$tmp/etc/machine-id"
apt_clean() { rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*; }
apt_clean
touch "$tmp/.complete"
mv "$tmp" "$root"
echo "[rootfs] built in $(( $(date +%s) - start ))s" >&2
echo "$root"
