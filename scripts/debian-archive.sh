#!/usr/bin/env bash
# Prints the Debian archive this machine's apt already uses for bookworm's
# main component (its URI, as `apt-cache policy` reports it), so no script of
# this project names an archive's address. KCP_DEBIAN_MIRROR overrides it.
set -euo pipefail
if [ -n "${KCP_DEBIAN_MIRROR:-}" ]; then echo "$KCP_DEBIAN_MIRROR"; exit 0; fi
uri=$(apt-cache policy 2>/dev/null | awk '$3 == "bookworm/main" && /Packages/ {print $2; exit}')
if [ -z "$uri" ]; then
  echo "no apt source for bookworm main is configured: add one to /etc/apt/sources.list.d, or set KCP_DEBIAN_MIRROR" >&2
  exit 1
fi
echo "$uri"
