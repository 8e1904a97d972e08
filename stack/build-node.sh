#!/usr/bin/env bash
# Builds what a node of the local stack runs, from Go modules, into the cache folder:
# containerd, containerd-shim-runc-v2 and ctr (github.com/containerd/containerd/v2), the CNI
# plugins bridge, host-local and loopback (github.com/containernetworking/plugins), the
# image tool (stack/imagetool, on github.com/google/go-containerregistry) and the pause
# binary (stack/imagetool/pause). Installs runc and iptables (one NAT rule for the pod
# network) from the Debian packages when they are missing.
# kubelet and kube-scheduler come from stack/build-kube.sh (the k8s.io/kubernetes wrapper).
# A second run finds the binaries and returns at once.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -x "$NODE_BIN_DIR/containerd" && -x "$NODE_BIN_DIR/containerd-shim-runc-v2" && -x "$NODE_BIN_DIR/ctr" &&
  -x "$CNI_BIN_DIR/bridge" && -x "$CNI_BIN_DIR/host-local" && -x "$CNI_BIN_DIR/loopback" &&
  -x "$NODE_BIN_DIR/imagetool" && -x "$NODE_BIN_DIR/pause" ]] && command -v runc >/dev/null && command -v iptables >/dev/null; then
  exit 0
fi

need go "install Go (https://go.dev/doc/install); it builds containerd and the CNI plugins"
for pkg in runc iptables; do
  command -v "$pkg" >/dev/null && continue
  log "installing $pkg from the Debian packages"
  need apt-get "install $pkg (a Debian or Ubuntu machine has it in its packages)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg"; } >/dev/null ||
    die "apt-get install $pkg failed"
done

mkdir -p "$NODE_BIN_DIR" "$CNI_BIN_DIR"
BUILD_LOG="$CACHE_DIR/go/build-node-$CONTAINERD_VERSION-$CNI_VERSION.log"
: >"$BUILD_LOG"
build_failed() { die "$1 build failed; see $BUILD_LOG (last lines: $(tail -3 "$BUILD_LOG" | tr '\n' ' '))"; }

# containerd: its go.mod has no replace directives, so `go install module/cmd@version` works.
# Static (no cgo): the btrfs snapshotter (cgo) is left out; overlayfs is what the node uses.
for cmd in containerd containerd-shim-runc-v2 ctr; do
  [[ -x "$NODE_BIN_DIR/$cmd" ]] && continue
  log "building $cmd $CONTAINERD_VERSION (first time only)"
  (
    CGO_ENABLED=0 GOBIN="$NODE_BIN_DIR/tmp" go install -trimpath -tags no_btrfs \
      -ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
      "github.com/containerd/containerd/v2/cmd/$cmd@$CONTAINERD_VERSION"
    mv "$NODE_BIN_DIR/tmp/$cmd" "$NODE_BIN_DIR/$cmd"
  ) >>"$BUILD_LOG" 2>&1 || build_failed "$cmd"
done

# CNI plugins: the three a one-node pod network needs.
for plugin in main/bridge ipam/host-local main/loopback; do
  [[ -x "$CNI_BIN_DIR/${plugin#*/}" ]] && continue
  log "building CNI plugin ${plugin#*/} $CNI_VERSION (first time only)"
  (
    CGO_ENABLED=0 GOBIN="$CNI_BIN_DIR/tmp" go install -trimpath -ldflags="-s -w" \
      "github.com/containernetworking/plugins/plugins/$plugin@$CNI_VERSION"
    mv "$CNI_BIN_DIR/tmp/${plugin#*/}" "$CNI_BIN_DIR/${plugin#*/}"
  ) >>"$BUILD_LOG" 2>&1 || build_failed "CNI ${plugin#*/}"
done

# The image tool and the pause binary (sources in stack/imagetool, pinned by its go.mod/go.sum).
if [[ ! -x "$NODE_BIN_DIR/imagetool" || ! -x "$NODE_BIN_DIR/pause" ]]; then
  log "building imagetool (go-containerregistry $GGCR_VERSION) and pause"
  (
    cd "$STACK_DIR/imagetool"
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$NODE_BIN_DIR/imagetool" .
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$NODE_BIN_DIR/pause" ./pause
  ) >>"$BUILD_LOG" 2>&1 || build_failed imagetool
fi
rmdir "$NODE_BIN_DIR/tmp" "$CNI_BIN_DIR/tmp" 2>/dev/null || true
log "built: $(cd "$NODE_BIN_DIR" && du -h containerd containerd-shim-runc-v2 ctr imagetool pause | awk '{print $2 " " $1}' | tr '\n' ' ')"
