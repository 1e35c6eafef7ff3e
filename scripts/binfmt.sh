#!/usr/bin/env bash
# Lets this machine run ARCH's binaries: installs Debian's qemu-user-static
# and registers its interpreter in binfmt_misc with the fix-binary flag (F:
# the interpreter is opened now, so it works inside containers and chroots
# that do not have it). Mounts binfmt_misc first if it is absent (this
# machine's PID 1 is not systemd: nothing else registers it). Idempotent.
#
#   binfmt.sh ARCH      ARCH: arm64
set -euo pipefail
export LC_ALL=C
arch=${1:?usage: binfmt.sh ARCH}
case "$arch" in
  arm64) q=aarch64 ;;
  *) echo "binfmt.sh: no emulation for $arch here (arm64 only)" >&2; exit 2 ;;
esac
if ! dpkg-query -W -f='${Status}' qemu-user-static 2>/dev/null | grep -q "install ok installed"; then
  echo "installing qemu-user-static" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
fi
dir=/proc/sys/fs/binfmt_misc
if [ ! -e "$dir/register" ]; then
  mount -t binfmt_misc binfmt_misc "$dir"
fi
entry="$dir/qemu-$q"
if [ -e "$entry" ] && grep -q '^flags: .*F' "$entry" && grep -qx enabled "$entry"; then
  echo "binfmt: qemu-$q registered" >&2
  exit 0
fi
[ -e "$entry" ] && echo -1 >"$entry"
# Debian's own registration line for the static interpreter.
conf=$(ls /usr/lib/binfmt.d/qemu-"$q"*.conf 2>/dev/null | head -1)
if [ -z "$conf" ]; then
  echo "binfmt.sh: qemu-user-static installed no binfmt.d entry for $q" >&2
  exit 1
fi
line=$(grep -v '^#' "$conf" | grep . | head -1)
case "${line##*:}" in *F*) ;; *) line="${line}F" ;; esac
printf '%s' "$line" >"$dir/register"
grep -q '^flags: .*F' "$entry" || { echo "binfmt.sh: qemu-$q registered without the fix-binary flag" >&2; exit 1; }
echo "binfmt: qemu-$q registered ($(sed -n 's/^interpreter //p' "$entry"))" >&2
