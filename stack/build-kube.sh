#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from their Go modules
# into the cache folder; with NODE=1 also kubelet and kube-scheduler (same wrapper module and
# Go build cache, so that part is incremental).
# A second run finds the binaries and returns at once.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBE_CMDS=(kube-apiserver kube-controller-manager kubectl)
[[ "$NODE" == 1 ]] && KUBE_CMDS+=(kubelet kube-scheduler)
missing=0
for cmd in etcd "${KUBE_CMDS[@]}"; do [[ -x "$BIN_DIR/$cmd" ]] || missing=1; done
((missing)) || exit 0

need go "install Go (https://go.dev/doc/install); it builds kube-apiserver and etcd"

WORK="$CACHE_DIR/go/wrapper-$KUBE_VERSION-$ETCD_VERSION"
mkdir -p "$WORK/kube" "$WORK/etcd" "$BIN_DIR"
BUILD_LOG="$CACHE_DIR/go/build-$KUBE_VERSION-$ETCD_VERSION.log"
: >"$BUILD_LOG"

build_failed() { die "$1 build failed; see $BUILD_LOG (last lines: $(tail -3 "$BUILD_LOG" | tr '\n' ' '))"; }

# etcd: a wrapper module that requires the server module; its main package is the binary.
if [[ ! -x "$BIN_DIR/etcd" ]]; then
  log "building etcd $ETCD_VERSION (first time only)"
  (
    cd "$WORK/etcd"
    cat >go.mod <<MOD
module local/etcdbuild

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
    printf 'package tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
    go mod tidy
    go build -trimpath -ldflags='-s -w' -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
  ) >>"$BUILD_LOG" 2>&1 || build_failed etcd
fi

# kube-apiserver, kube-controller-manager and kubectl: k8s.io/kubernetes replaces its staging
# modules with local paths, so the wrapper replaces each with the published v0.Y.Z of the
# same module.
missing=()
for cmd in "${KUBE_CMDS[@]}"; do [[ -x "$BIN_DIR/$cmd" ]] || missing+=("$cmd"); done
if ((${#missing[@]})); then
  log "building ${missing[*]} $KUBE_VERSION (first time only; long on 2 cores)"
  (
    cd "$WORK/kube"
    modinfo="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION")"
    gomod="$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' <<<"$modinfo")"
    staging_version="v0.${KUBE_VERSION#v1.}"
    {
      echo "module local/kubebuild"
      echo
      echo "go 1.24"
      echo
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      echo
      echo "replace ("
      grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
      echo ")"
    } >go.mod
    { printf 'package tools\n\nimport (\n'; printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "${KUBE_CMDS[@]}"; printf ')\n'; } >tools.go
    go mod tidy
    minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    for cmd in "${KUBE_CMDS[@]}"; do
      [[ -x "$BIN_DIR/$cmd" ]] && continue
      go build -trimpath -ldflags="$ldflags" -o "$BIN_DIR/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
      mv "$BIN_DIR/$cmd.tmp" "$BIN_DIR/$cmd"
    done
  ) >>"$BUILD_LOG" 2>&1 || build_failed "${KUBE_CMDS[*]}"
fi
log "built: $(cd "$BIN_DIR" && du -h etcd "${KUBE_CMDS[@]}" | awk '{print $2 " " $1}' | tr '\n' ' ')"
