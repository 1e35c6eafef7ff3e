#!/usr/bin/env bash
# Installs what release builds need to build the plugins for every
# platform they ship for (linux/amd64, linux/arm64) from this machine, fully
# static (musl): each target's Rust standard library (rustup), and zig as the
# C compiler and linker for the crates that build C (ring, zstd), with
# cargo-zigbuild to drive it (both from PyPI, through the machine's own pip
# configuration). Idempotent. Prints cargo-zigbuild's path as its last line.
set -euo pipefail
export LC_ALL=C
targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$installed" || { echo "rustup target add $t" >&2; rustup target add "$t" >&2; }
done
scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
zb="$scripts/cargo-zigbuild"
if [ ! -x "$zb" ] || ! python3 -m ziglang version >/dev/null 2>&1; then
  echo "pip install ziglang cargo-zigbuild" >&2
  python3 -m pip install -q --disable-pip-version-check ziglang cargo-zigbuild >&2
fi
[ -x "$zb" ] || { echo "install-cross.sh: pip installed no $zb" >&2; exit 1; }
echo "cross toolchain: zig $(python3 -m ziglang version), $("$zb" --version 2>/dev/null | head -1), targets ${targets[*]}" >&2
echo "$zb"
