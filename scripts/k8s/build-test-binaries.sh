#!/usr/bin/env bash
# Builds the binaries that tests/k8s runs a real Kubernetes control plane with, from the Go
# module proxy, into a cache folder outside the repository, skipping what is already built:
#
#   kube-apiserver, kube-scheduler, kube-controller-manager
#       a wrapper module requiring k8s.io/kubernetes at $K8S_VERSION, with a `replace` line
#       pinning every k8s.io/* staging module (as listed by that version's own go.mod) to the
#       matching v0.X.Y
#   etcd       go.etcd.io/etcd/server/v3 at the version k8s.io/kubernetes' go.mod requires
#              (Debian 12's etcd-server is 3.4, older than this API server supports)
#   kwok       sigs.k8s.io/kwok/cmd/kwok (fake nodes and pod lifecycle)
#   helm       helm.sh/helm/v3/cmd/helm
#
# Output: ${XDG_CACHE_HOME:-$HOME/.cache}/osmo-test/k8s-bin/$K8S_VERSION/{...} and a `done`
# stamp once every binary is there. Prints that folder on stdout when finished.
# Needs: Go >= 1.26 (PATH or /usr/local/go/bin) and the Go module proxy. Builds with
# GOFLAGS=-trimpath and at most $OSMO_K8S_BUILD_JOBS (default 2) parallel compile jobs.
# A lock makes concurrent runs (a fixture and a developer) wait for each other.
#
#   scripts/k8s/build-test-binaries.sh            build what is missing, print the bin folder
#   scripts/k8s/build-test-binaries.sh --dir      only print the bin folder
#   scripts/k8s/build-test-binaries.sh --check    exit 0 when everything is built, else 1
set -euo pipefail

K8S_VERSION=${OSMO_K8S_VERSION:-v1.36.3}
KWOK_VERSION=${OSMO_KWOK_VERSION:-v0.8.0}
HELM_VERSION=${OSMO_HELM_VERSION:-v3.21.4}
JOBS=${OSMO_K8S_BUILD_JOBS:-2}

CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/osmo-test
BIN=$CACHE_ROOT/k8s-bin/$K8S_VERSION
WORK=$CACHE_ROOT/k8s-build/$K8S_VERSION
BINARIES=(kube-apiserver kube-scheduler kube-controller-manager etcd kwok helm)

# kwok's own pod and node lifecycle stages are read from its module (nothing of kwok is
# committed to this repo); the tests combine them with osmo's stage in tests/k8s/kwok/.
KWOK_STAGES=(node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  pod/fast/pod-ready.yaml pod/fast/pod-delete.yaml)

all_built() {
  local b
  for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
  [ -f "$BIN/kwok-stages/done" ] || return 1
  return 0
}

fetch_kwok_stages() {
  [ -f "$BIN/kwok-stages/done" ] && return 0
  local dir s
  dir=$(cd "$WORK" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { echo "build-test-binaries: cannot download sigs.k8s.io/kwok@$KWOK_VERSION" >&2; return 1; }
  mkdir -p "$BIN/kwok-stages"
  for s in "${KWOK_STAGES[@]}"; do cp "$dir/kustomize/stage/$s" "$BIN/kwok-stages/"; done
  touch "$BIN/kwok-stages/done"
}

case "${1:-}" in
  --dir) echo "$BIN"; exit 0 ;;
  --check) all_built && exit 0 || exit 1 ;;
  "") ;;
  *) echo "usage: $0 [--dir|--check]" >&2; exit 2 ;;
esac

if all_built; then echo "$BIN"; exit 0; fi

if ! command -v go >/dev/null 2>&1; then
  export PATH=$PATH:/usr/local/go/bin
fi
command -v go >/dev/null 2>&1 || { echo "build-test-binaries: no Go toolchain" >&2; exit 1; }

mkdir -p "$BIN" "$WORK"
exec 9>"$CACHE_ROOT/k8s-build.lock"
flock 9
fetch_kwok_stages || exit 1
if all_built; then echo "$BIN"; exit 0; fi

export GOFLAGS=-trimpath
export CGO_ENABLED=0
export GOTOOLCHAIN=local
log() { echo "build-test-binaries: $(date +%H:%M:%S) $*" >&2; }

# k8s.io/kubernetes' go.mod: the staging modules (its `=> ./staging/...` replaces) and the
# etcd version it requires.
K8S_MOD=$WORK/kubernetes.mod
if [ ! -s "$K8S_MOD" ]; then
  log "fetching k8s.io/kubernetes@$K8S_VERSION go.mod"
  mod_json=$(cd "$WORK" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION")
  gomod=$(printf '%s\n' "$mod_json" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  cp "$gomod" "$K8S_MOD.tmp" && mv "$K8S_MOD.tmp" "$K8S_MOD"
fi
STAGING_VERSION=v0.${K8S_VERSION#v1.}
mapfile -t STAGING < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/.*#\1#p' "$K8S_MOD")
[ ${#STAGING[@]} -gt 0 ] || { echo "build-test-binaries: no staging modules in $K8S_MOD" >&2; exit 1; }
ETCD_VERSION=${OSMO_ETCD_VERSION:-$(sed -n 's#^[[:space:]]*go\.etcd\.io/etcd/client/v3 \(v[0-9.]*\).*#\1#p' "$K8S_MOD" | head -1)}
GO_LINE=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$K8S_MOD" | head -1)

# build_wrapper NAME GO_MOD_BODY MAIN_GO_OR_EMPTY LDFLAGS PKG=OUT...
# Makes $WORK/NAME a module, resolves it (go mod tidy), builds each package to $BIN/OUT.
build_wrapper() {
  local name=$1 body=$2 main=$3 ldflags=$4
  shift 4
  local dir=$WORK/$name pkgs=() outs=() spec missing=0
  for spec in "$@"; do
    pkgs+=("${spec%%=*}")
    outs+=("${spec#*=}")
    [ -x "$BIN/${spec#*=}" ] || missing=1
  done
  [ "$missing" = 1 ] || { log "$name: already built"; return 0; }
  mkdir -p "$dir"
  printf '%s\n' "$body" >"$dir/go.mod"
  if [ -n "$main" ]; then
    printf '%s\n' "$main" >"$dir/main.go"
  else
    {
      echo '//go:build tools'
      echo
      echo 'package tools'
      echo
      echo 'import ('
      for spec in "${pkgs[@]}"; do echo "	_ \"$spec\""; done
      echo ')'
    } >"$dir/tools.go"
  fi
  log "$name: resolving modules"
  (cd "$dir" && go mod tidy)
  local i start
  for i in "${!pkgs[@]}"; do
    [ -x "$BIN/${outs[$i]}" ] && continue
    start=$(date +%s)
    log "$name: building ${pkgs[$i]}"
    (cd "$dir" && go build -p "$JOBS" -ldflags "-s -w $ldflags" -o "$BIN/${outs[$i]}.tmp" "${pkgs[$i]}")
    mv "$BIN/${outs[$i]}.tmp" "$BIN/${outs[$i]}"
    log "$name: built ${outs[$i]} in $(($(date +%s) - start))s"
  done
}

# --- kube-apiserver, kube-scheduler, kube-controller-manager ---------------------------------
major=${K8S_VERSION#v}
major=${major%%.*}
minor=${K8S_VERSION#v*.}
minor=${minor%%.*}
k8s_body="module osmo.test/k8s-binaries

go $GO_LINE

require k8s.io/kubernetes $K8S_VERSION

replace ("
for m in "${STAGING[@]}"; do
  k8s_body+=$'\n'"	$m => $m $STAGING_VERSION"
done
k8s_body+=$'\n)'
vpkg=k8s.io/component-base/version
k8s_ldflags="-X $vpkg.gitVersion=$K8S_VERSION -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor"
k8s_ldflags+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
k8s_ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
build_wrapper kubernetes "$k8s_body" "" "$k8s_ldflags" \
  k8s.io/kubernetes/cmd/kube-apiserver=kube-apiserver \
  k8s.io/kubernetes/cmd/kube-scheduler=kube-scheduler \
  k8s.io/kubernetes/cmd/kube-controller-manager=kube-controller-manager

# --- etcd -------------------------------------------------------------------------------------
etcd_body="module osmo.test/etcd

go $GO_LINE

require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
etcd_main='package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }'
build_wrapper etcd "$etcd_body" "$etcd_main" \
  "-X go.etcd.io/etcd/api/v3/version.GitSHA=osmo-test" \
  osmo.test/etcd=etcd

# --- kwok ---------------------------------------------------------------------------------------
kwok_body="module osmo.test/kwok

go $GO_LINE

require sigs.k8s.io/kwok $KWOK_VERSION"
build_wrapper kwok "$kwok_body" "" \
  "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$K8S_VERSION" \
  sigs.k8s.io/kwok/cmd/kwok=kwok

# --- helm ---------------------------------------------------------------------------------------
helm_body="module osmo.test/helm

go $GO_LINE

require helm.sh/helm/v3 $HELM_VERSION"
build_wrapper helm "$helm_body" "" \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  helm.sh/helm/v3/cmd/helm=helm

all_built || { echo "build-test-binaries: some binaries are missing in $BIN" >&2; exit 1; }
{
  echo "kubernetes $K8S_VERSION (staging $STAGING_VERSION)"
  echo "etcd $ETCD_VERSION"
  echo "kwok $KWOK_VERSION"
  echo "helm $HELM_VERSION"
} >"$BIN/versions.txt"
touch "$BIN/done"
log "all binaries in $BIN"
echo "$BIN"
