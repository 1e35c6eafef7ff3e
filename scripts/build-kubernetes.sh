#!/usr/bin/env bash
# Builds the real control-plane binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) from Debian bookworm's `kubernetes` source package,
# for this machine or cross-built for another architecture (Go cross-compiles
# them: they are static, no C toolchain for the target is needed).
#
#   build-kubernetes.sh [ARCH]      ARCH: amd64 or arm64 (default: this machine's)
#
# Cache: $KCP_CACHE (default /var/cache/kubectl-plugins), outside any checkout,
# keyed by the source package version. A finished build is reused instantly; a
# lock keeps two builds from running at once. Prints the directory holding the
# binaries as its last line.
set -euo pipefail
export LC_ALL=C
native=$(dpkg --print-architecture)
arch=${1:-$native}
case "$arch" in amd64|arm64) ;; *) echo "build-kubernetes.sh: arch $arch: amd64 or arm64" >&2; exit 2 ;; esac
cache=${KCP_CACHE:-/var/cache/kubectl-plugins}
# The source package version apt offers (bookworm: 1.20.5+really1.20.2-1.1+deb12u1).
version=${KCP_K8S_SRC_VERSION:-$(apt-cache showsrc kubernetes 2>/dev/null | awk '/^Version:/{print $2; exit}')}
if [ -z "$version" ]; then
  echo "no source package 'kubernetes' known to apt: run scripts/install-prereqs.sh (adds the deb-src entry)" >&2
  exit 1
fi
gitver=${KCP_K8S_GIT_VERSION:-v1.20.2}
key=$(printf '%s' "$version" | tr '+~:' '___')
# The native build keeps its historical place; another architecture's beside it.
if [ "$arch" = "$native" ]; then out="$cache/kubernetes/$key/bin"; else out="$cache/kubernetes/$key/bin-$arch"; fi
bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

have_all() { for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if have_all; then echo "kubernetes $gitver linux/$arch: cached in $out" >&2; echo "$out"; exit 0; fi

mkdir -p "$cache/kubernetes/$key"
exec 9>"$cache/kubernetes/$key.lock"
if ! flock -n 9; then
  echo "another build of kubernetes $version is running; waiting for its lock..." >&2
  flock 9
fi
if have_all; then echo "$out"; exit 0; fi

work="$cache/kubernetes/$key/src"
start=$(date +%s)
if [ ! -f "$work/Makefile" ]; then
  dl="$cache/kubernetes/$key/download"
  rm -rf "$dl" "$work"; mkdir -p "$dl"
  echo "[k8s] downloading source package kubernetes=$version" >&2
  (cd "$dl" && apt-get source --download-only -qq "kubernetes=$version" >/dev/null)
  echo "[k8s] unpacking" >&2
  (cd "$dl" && dpkg-source --no-check -x ./*.dsc "$work" >/dev/null)
fi
minor=${gitver#v1.}; minor=${minor%%.*}
log="$cache/kubernetes/$key/build-$arch.log"
echo "[k8s] building ${bins[*]} for linux/$arch (about 12 minutes on 2 cores; log: $log)" >&2
# (GOFLAGS must stay unset: hack/lib/golang.sh turns it into a -tags list.)
unset GOFLAGS
export GOCACHE="$cache/go-build" GOTOOLCHAIN=local
what=$(printf 'cmd/%s ' "${bins[@]}")
(
  cd "$work"
  KUBE_GIT_VERSION=$gitver KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=$minor KUBE_GIT_TREE_STATE=clean \
    KUBE_BUILD_PLATFORMS=linux/$arch make WHAT="$what" >"$log" 2>&1
) &
pid=$!
# Progress: one line per build stage the Makefile reports, and a heartbeat.
last=""
while kill -0 "$pid" 2>/dev/null; do
  sleep 20
  line=$(grep -E '^\+\+\+ |Building go targets|Generating' "$log" 2>/dev/null | tail -1 || true)
  el=$(( $(date +%s) - start ))
  if [ "$line" != "$last" ] && [ -n "$line" ]; then echo "[k8s] ${el}s: $line" >&2; last=$line
  else echo "[k8s] ${el}s: still building" >&2; fi
done
if ! wait "$pid"; then
  echo "[k8s] build failed; last lines of $log:" >&2; tail -30 "$log" >&2; exit 1
fi
mkdir -p "$out.tmp"
for b in "${bins[@]}"; do cp "$work/_output/local/bin/linux/$arch/$b" "$out.tmp/$b"; done
rm -rf "$out"; mv "$out.tmp" "$out"
echo "[k8s] built in $(( $(date +%s) - start ))s" >&2
echo "$out"
